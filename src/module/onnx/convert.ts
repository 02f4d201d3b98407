/**
 * TF.js modules → ONNX model bytes: input `input` [N, H, W, 3] float NHWC (as the
 * image stage makes it), output `bottleneck` [N, D]. Throws UnsupportedOpsError
 * naming every op the module uses outside the covered set.
 */
import * as tf from '@tensorflow/tfjs';
import { modelFormat, type LoadedModelFiles } from '../io.js';
import { encodeModel } from './builder.js';
import { convertGraphArtifacts } from './graph.js';
import { convertLayersModel } from './layers.js';

export { UnsupportedOpsError } from './errors.js';
export { INPUT_NAME, BOTTLENECK_NAME } from './builder.js';
export { convertGraphArtifacts, convertLayersModel };

/** Bumped whenever the converter's output changes, so cached conversions are redone. */
export const CONVERTER_VERSION = 1;

export interface ConvertOptions {
  /** The bottleneck: a top-level layer (layers model) or node (graph model); ModuleInfo.bottleneckTensor. */
  bottleneck: string;
  height: number;
  width: number;
}

/** Converts a module's files; a layers model is loaded with tfjs first (no inference runs). */
export async function convertModule(files: LoadedModelFiles, opts: ConvertOptions): Promise<Uint8Array> {
  if (modelFormat(files.json) === 'graph-model') {
    return encodeModel(convertGraphArtifacts(files.artifacts, { outputNode: opts.bottleneck, height: opts.height, width: opts.width }));
  }
  const model = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
  try {
    return encodeModel(convertLayersModel(model, { outputLayer: opts.bottleneck, height: opts.height, width: opts.width }));
  } finally {
    model.dispose();
  }
}
