/**
 * TF.js modules → ONNX model bytes: input `input` [N, H, W, 3] float NHWC (as the
 * image stage makes it), output `bottleneck` [N, D]. Each module format is read into
 * the shared Graph (src/graph/), which the ONNX writer replays. Throws
 * UnsupportedOpsError naming every op the module uses outside the covered set.
 */
import * as tf from '@tensorflow/tfjs';
import { fromLayersModel, type LayersReadOptions } from '../../graph/from_layers.js';
import { fromOnnx } from '../../graph/from_onnx.js';
import { fromTfjsGraph, type TfjsGraphReadOptions } from '../../graph/from_tfjs_graph.js';
import type { Graph } from '../../graph/ir.js';
import { toOnnx } from '../../graph/to_onnx.js';
import { modelFormat, type LoadedModelFiles } from '../io.js';
import { decodeModel, encodeModel, type ModelProto } from './builder.js';

export { UnsupportedOpsError } from './errors.js';
export { INPUT_NAME, BOTTLENECK_NAME } from './builder.js';

/** Bumped whenever the converter's output changes, so cached conversions are redone. */
export const CONVERTER_VERSION = 2;

export interface GraphConvertOptions extends TfjsGraphReadOptions {}
export interface LayersConvertOptions extends LayersReadOptions {}

export function convertGraphArtifacts(artifacts: tf.io.ModelArtifacts, opts: GraphConvertOptions): ModelProto {
  return toOnnx(fromTfjsGraph(artifacts, opts), { metadata: { 'retrain.bottleneck_tensor': opts.outputNode.replace(/:0$/, '') } });
}

/** A layers model → ONNX ModelProto: input `input` [N, H, W, 3] NHWC, output `bottleneck` [N, D]. */
export function convertLayersModel(model: tf.LayersModel, opts: LayersConvertOptions): ModelProto {
  const target = opts.outputLayer ?? (model.outputs[0]!.sourceLayer as tf.layers.Layer).name;
  return toOnnx(fromLayersModel(model, opts), { metadata: { 'retrain.bottleneck_tensor': target } });
}

export interface ConvertOptions {
  /** The bottleneck: a top-level layer (layers model) or node (graph model); ModuleInfo.bottleneckTensor. */
  bottleneck: string;
  height: number;
  width: number;
}

/** A module's files as a Graph; a layers model is loaded with tfjs first (no inference runs). */
export async function moduleGraph(files: LoadedModelFiles, opts: ConvertOptions): Promise<Graph> {
  if (modelFormat(files.json) === 'graph-model') return fromTfjsGraph(files.artifacts, { outputNode: opts.bottleneck, height: opts.height, width: opts.width });
  const model = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
  try {
    return fromLayersModel(model, { outputLayer: opts.bottleneck, height: opts.height, width: opts.width });
  } finally {
    model.dispose();
  }
}

/** Converts a module's files to ONNX bytes. */
export async function convertModule(files: LoadedModelFiles, opts: ConvertOptions): Promise<Uint8Array> {
  return encodeModel(toOnnx(await moduleGraph(files, opts), { metadata: { 'retrain.bottleneck_tensor': opts.bottleneck.replace(/:0$/, '') } }));
}

/** An .onnx module's bytes as a Graph (input the normalised NHWC image, whatever the model's layout). */
export function onnxModuleGraph(bytes: Uint8Array, opts: { height: number; width: number }): Graph {
  return fromOnnx(decodeModel(bytes), opts);
}
