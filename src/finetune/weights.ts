/**
 * The fine-tuned weights go back into the module in one place: its files' weights
 * (by name; the Graph readers name weights after the model's own weights), and for a
 * layers module its loaded variables too. Every export reads the module from there
 * (TF.js folder, .pb, SavedModel, ONNX and TFLite conversions), and the module id
 * changes with the weights so no cached conversion of the original is reused. An .onnx
 * module is written anew from its Graph instead (withFineTunedOnnx).
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { RetrainError } from '../errors.js';
import type { Graph } from '../graph/ir.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor, GraphExtractor, LayersExtractor, OnnxExtractor } from '../module/index.js';
import { concatBytes, weightSlices } from '../module/io.js';

export function withFineTunedWeights<E extends GraphExtractor | LayersExtractor>(ex: E, values: Map<string, Float32Array>): E {
  const left = new Set(values.keys());
  const specs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  for (const { spec, bytes } of weightSlices(ex.files.artifacts)) {
    const v = values.get(spec.name);
    if (v) {
      left.delete(spec.name);
      // A quantized module's updated weights are stored as float32.
      const { quantization: _q, ...plain } = spec;
      specs.push({ ...plain, dtype: 'float32' });
      parts.push(new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer));
    } else {
      specs.push(spec);
      parts.push(bytes);
    }
  }
  if (left.size) throw new RetrainError(`fine-tuning: weight${left.size === 1 ? '' : 's'} ${[...left].join(', ')} not found in the module's weights manifest; cannot export the fine-tuned module`);
  const id = tunedId(ex.info.id, values);
  if (ex.kind === 'layers') {
    for (const w of ex.model.weights) {
      const v = values.get(w.originalName ?? w.name);
      if (!v) continue;
      const t = tf.tensor(v, w.shape as number[]);
      w.write(t);
      t.dispose();
    }
  }
  const artifacts: tf.io.ModelArtifacts = { ...ex.files.artifacts, weightSpecs: specs, weightData: concatBytes(parts) };
  return { ...ex, info: { ...ex.info, id, name: `${ex.info.name.replace(/-[0-9a-f]{8}$/, '')}-${id.slice(0, 8)}` }, files: { ...ex.files, artifacts } };
}

/**
 * An .onnx module's fine-tuned weights: the module is written anew from its Graph with
 * them (the shared ONNX writer, NHWC input `input`, output `bottleneck`), so every
 * export (.onnx with the head appended, .tflite) reads the new weights as it reads a
 * module file. Its normalisation is unchanged; its layout is now NHWC.
 */
export async function withFineTunedOnnx(ex: OnnxExtractor, graph: Graph, values: Map<string, Float32Array>, o: { threads?: number; log: Logger }): Promise<OnnxExtractor> {
  const weights = new Map(graph.weights);
  for (const [k, v] of values) {
    const w = weights.get(k);
    if (!w) throw new RetrainError(`fine-tuning: weight ${k} is not in the module's graph; cannot export the fine-tuned module`);
    weights.set(k, { data: v, shape: w.shape });
  }
  const [{ toOnnx }, { encodeModel }, { readSignature }, { onnxModuleForward }] = await Promise.all([
    import('../graph/to_onnx.js'),
    import('../module/onnx/builder.js'),
    import('../module/onnx/signature.js'),
    import('../module/onnx_module.js'),
  ]);
  const bytes = encodeModel(toOnnx({ ...graph, weights }));
  const signature = readSignature(bytes);
  const id = tunedId(ex.info.id, values);
  const onnx = onnxModuleForward(ex.info.spec, bytes, signature, o.threads, o.log);
  return {
    ...ex,
    info: { ...ex.info, id, name: `${ex.info.name.replace(/-[0-9a-f]{8}$/, '')}-${id.slice(0, 8)}`, inputLayout: signature.layout, bottleneckTensor: signature.outputName },
    bytes,
    signature,
    onnx,
    dispose: () => onnx.dispose(),
  };
}

function tunedId(base: string, values: Map<string, Float32Array>): string {
  const h = createHash('sha256').update(base);
  for (const [k, v] of [...values].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(k).update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return h.digest('hex');
}

/** Whether a module's kind can carry fine-tuned weights. */
export function carriesWeights(ex: FeatureExtractor): ex is GraphExtractor | LayersExtractor {
  return ex.kind === 'graph' || ex.kind === 'layers';
}
