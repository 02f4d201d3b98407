/**
 * --quantize int8: the float graph run on ONNX Runtime with every value as an output, over
 * a sample of training images, gives each value's range; ./../graph/quantize.ts turns the
 * ranges into TFLite's int8 parameters.
 */
import { activationParams, type ValueRange } from '../graph/quantize.js';
import type { Graph } from '../graph/ir.js';
import type { TfliteQuantization } from '../graph/to_tflite.js';
import { toOnnxWithValues } from '../graph/to_onnx.js';
import { plainImageBatches } from '../image/batches.js';
import type { InputSpec } from '../image/index.js';
import { encodeModel } from '../module/onnx/builder.js';
import { loadOnnxRuntime } from '../module/onnx/runtime.js';

export async function calibrateInt8(graph: Graph, files: string[], spec: InputSpec, inputRange: [number, number]): Promise<TfliteQuantization> {
  const { model, onnxNames } = toOnnxWithValues(graph, { outputName: 'calibration_output' });
  const outputs = [...new Set(onnxNames.values())];
  const declared = new Set((model.graph!.output ?? []).map((o) => o.name));
  for (const name of outputs) if (!declared.has(name)) model.graph!.output!.push({ name, type: { tensorType: { elemType: 1 } } });
  // Through the one loader, so a missing engine is the usual one line with its restore command.
  const ort = await loadOnnxRuntime();
  const session = await ort.InferenceSession.create(encodeModel(model), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  const ranges = new Map<string, ValueRange>();
  const images = plainImageBatches(spec);
  try {
    for (const file of files) {
      const x = await images([file], 0);
      const data = x.dataSync() as Float32Array;
      x.dispose();
      const result = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', data, [1, spec.height, spec.width, 3]) }, outputs);
      for (const [value, onnx] of onnxNames) {
        const t = result[onnx]!;
        const d = t.data as Float32Array;
        let lo = Infinity;
        let hi = -Infinity;
        for (const v of d) {
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const r = ranges.get(value);
        ranges.set(value, r ? [Math.min(r[0], lo), Math.max(r[1], hi)] : [lo, hi]);
      }
      for (const t of Object.values(result)) t.dispose();
    }
  } finally {
    await session.release();
  }
  return { activations: activationParams(graph, ranges, inputRange), io: 'uint8' };
}
