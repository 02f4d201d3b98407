/** The TF.js export: the module and the head as one model that plain tfjs loads. */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { GraphExtractor, LayersExtractor } from '../module/index.js';
import { folderSaveHandler } from '../module/io.js';
import type { HeadValues } from '../train/index.js';
import { appendHeadToGraph } from './graph.js';
import { metadataFor } from './metadata.js';
import { quantizeArtifacts, type QuantizeBytes } from './quantize.js';
import type { TfliteExportOptions } from './tflite.js';

export interface ExportOptions {
  dir: string;
  labels: string[];
  finalTensorName: string;
  /** --quantize_bytes: 1 = uint8, 2 = float16 weights. */
  quantizeBytes?: QuantizeBytes;
  /** The labels file to publish with the model: inside the model folder it is swapped in with it, elsewhere renamed in right after. */
  labelsFile?: string;
  /** The flag that named `dir`, for errors. */
  flag?: string;
  /** A `.onnx` dir: where the module's conversion is cached (default: <module cache>/onnx). */
  onnxCacheDir?: string;
  /** A `.tflite` dir: --quantize int8, and how its activation ranges are calibrated. */
  quantize?: 'int8';
  calibrate?: TfliteExportOptions['calibrate'];
}

/** Writes the folder, quantizing the weights first when asked. */
function saveHandler(opts: ExportOptions): tf.io.IOHandler {
  const folder = folderSaveHandler(opts.dir);
  const q = opts.quantizeBytes;
  return q ? { save: (a) => folder.save!(quantizeArtifacts(a, q)) } : folder;
}

export async function exportLayers(ex: LayersExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const base = ex.model;
  const classes = opts.labels.length;
  let size = ex.info.bottleneckSize;
  let feature = base.outputs[0]!;
  const own: tf.layers.Layer[] = [];
  if (head.hidden) {
    const units = head.hidden.biases.length;
    const hidden = tf.layers.dense({
      units,
      activation: 'relu',
      name: `${opts.finalTensorName}_hidden`,
      weights: [tf.tensor2d(head.hidden.weights, [size, units]), tf.tensor1d(head.hidden.biases)],
    });
    feature = hidden.apply(feature) as tf.SymbolicTensor;
    own.push(hidden);
    size = units;
  }
  const dense = tf.layers.dense({
    units: classes,
    activation: 'softmax',
    name: opts.finalTensorName,
    weights: [tf.tensor2d(head.weights, [size, classes]), tf.tensor1d(head.biases)],
  });
  own.push(dense);
  const out = dense.apply(feature) as tf.SymbolicTensor;
  const model = tf.model({ inputs: base.inputs, outputs: out, name: 'retrained' });
  model.setUserDefinedMetadata({ retrain: metadataFor(ex, opts.labels, base.inputs[0]!.name, opts.finalTensorName) });
  await model.save(saveHandler(opts));
  // The head's weights are the only tensors this model owns; the rest belong to the module.
  for (const l of own) l.dispose();
}

export async function exportGraph(ex: GraphExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const files = ex.files;
  const { artifacts, inputName } = appendHeadToGraph(
    files.artifacts,
    ex.info.bottleneckTensor,
    ex.bottleneckRank,
    head,
    opts.labels.length,
    opts.finalTensorName,
  );
  artifacts.generatedBy = `retrain-ts (module: ${files.artifacts.generatedBy ?? 'unknown'})`;
  artifacts.convertedBy = files.artifacts.convertedBy ?? undefined;
  artifacts.userDefinedMetadata = { retrain: metadataFor(ex, opts.labels, inputName, opts.finalTensorName) };
  await saveHandler(opts).save!(artifacts);
}
