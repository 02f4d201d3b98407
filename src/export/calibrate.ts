/**
 * --quantize int8: the float graph run on ONNX Runtime with every value as an output, over
 * a sample of training images, gives each value's range; ./../graph/quantize.ts turns the
 * ranges into TFLite's int8 parameters.
 *
 * Then bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight
 * Equalization and Bias Correction", its empirical form): rounding shifts the int8 model's
 * logits by an amount that is nearly the same for every image (MobileNet V2 on flowers:
 * +0.25 for one class, -0.4 for another, against a per-image spread of 0.25), and a shift
 * between two classes moves every photo near their boundary. The int8 model, as written,
 * is run on the same images; the mean difference of its logits from the float ones is
 * taken off the final layer's bias.
 */
import { activationParams, type ValueRange } from '../graph/quantize.js';
import { fromTflite } from '../graph/from_tflite.js';
import type { DenseNode, Graph, Weight } from '../graph/ir.js';
import { toTflite, type TfliteQuantization } from '../graph/to_tflite.js';
import { toOnnxWithValues } from '../graph/to_onnx.js';
import { plainImageBatches } from '../image/batches.js';
import type { InputSpec } from '../image/index.js';
import { encodeModel } from '../module/onnx/builder.js';
import { loadOnnxRuntime } from '../module/onnx/runtime.js';

export interface Int8Calibration {
  quantization: TfliteQuantization;
  /** The int8 model's mean logit shift on the calibration images, per class, taken off the final layer's bias (empty when the graph does not end in dense → softmax). */
  logitShift: number[];
}

type Ort = Awaited<ReturnType<typeof loadOnnxRuntime>>;

/** A session over `graph` that returns the named values (ONNX names) for one image; the arrays are ONNX Runtime's, so copy what you keep. */
async function valueSession(ort: Ort, graph: Graph, values: (onnxNames: Map<string, string>) => string[]) {
  const { model, onnxNames } = toOnnxWithValues(graph, { outputName: 'calibration_output' });
  const outputs = [...new Set(values(onnxNames))];
  const declared = new Set((model.graph!.output ?? []).map((o) => o.name));
  for (const name of outputs) if (!declared.has(name)) model.graph!.output!.push({ name, type: { tensorType: { elemType: 1 } } });
  const session = await ort.InferenceSession.create(encodeModel(model), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  return {
    onnxNames,
    run: async (x: Float32Array, shape: number[]) => {
      const result = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, shape) }, outputs);
      return new Map(Object.entries(result).map(([name, t]) => [name, t.data as Float32Array]));
    },
    release: () => session.release(),
  };
}

/** The dense layer whose output the final softmax reads, if the graph ends that way. */
function logitsLayer(graph: Graph): DenseNode | undefined {
  const out = graph.nodes.find((n) => n.name === graph.output);
  if (out?.op !== 'activation' || out.activation !== 'softmax') return undefined;
  const logits = graph.nodes.find((n) => n.name === out.x);
  return logits?.op === 'dense' && logits.activation === 'linear' && logits.bias ? logits : undefined;
}

export async function calibrateInt8(graph: Graph, files: string[], spec: InputSpec, inputRange: [number, number]): Promise<Int8Calibration> {
  // Through the one loader, so a missing engine is the usual one line with its restore command.
  const ort = await loadOnnxRuntime();
  const shape = [1, spec.height, spec.width, 3];
  const images = plainImageBatches(spec);
  const pixels = async (file: string) => {
    const x = await images([file], 0);
    const data = x.dataSync() as Float32Array;
    x.dispose();
    return data;
  };
  const head = logitsLayer(graph);
  const ranges = new Map<string, ValueRange>();
  const floatLogits: Float32Array[] = [];
  const float = await valueSession(ort, graph, (names) => [...names.values()]);
  try {
    for (const file of files) {
      const result = await float.run(await pixels(file), shape);
      for (const [value, onnx] of float.onnxNames) {
        const d = result.get(onnx)!;
        let lo = Infinity;
        let hi = -Infinity;
        for (const v of d) {
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const r = ranges.get(value);
        ranges.set(value, r ? [Math.min(r[0], lo), Math.max(r[1], hi)] : [lo, hi]);
      }
      if (head) floatLogits.push(Float32Array.from(result.get(float.onnxNames.get(head.name)!)!));
    }
  } finally {
    await float.release();
  }
  const quantization: TfliteQuantization = { activations: activationParams(graph, ranges, inputRange), io: 'uint8' };
  if (!head || files.length === 0) return { quantization, logitShift: [] };

  // The int8 model as label-image reads it back: every activation rounded where an integer runtime rounds it.
  const int8 = fromTflite(toTflite(graph, { weights: 'int8', int8: quantization }));
  const readBack = (names: Map<string, string>) => {
    const name = names.get(`${head.name}/quantized`);
    if (!name) throw new Error(`the int8 model has no quantized ${head.name}`);
    return name;
  };
  const q = await valueSession(ort, int8, (names) => [readBack(names)]);
  const logits = readBack(q.onnxNames);
  const shift = new Float64Array(head.shape[head.shape.length - 1]!);
  try {
    for (const [i, file] of files.entries()) {
      const z = (await q.run(await pixels(file), shape)).get(logits)!;
      for (let c = 0; c < shift.length; c++) shift[c]! += (z[c]! - floatLogits[i]![c]!) / files.length;
    }
  } finally {
    await q.release();
  }
  const bias = graph.weights.get(head.bias!)!;
  const corrected: Weight = { data: Float32Array.from(bias.data, (b, c) => b - shift[c]!), shape: bias.shape };
  return { quantization: { ...quantization, weights: new Map([[head.bias!, corrected]]) }, logitShift: Array.from(shift) };
}
