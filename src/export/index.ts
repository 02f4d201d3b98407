/**
 * The `export` stage: the module and the trained head as one model — a TF.js
 * folder that plain tf.loadGraphModel / tf.loadLayersModel read, or retrain.py's
 * frozen .pb — plus retrain.py's labels file. Which writer runs depends on the
 * module's `kind`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RetrainError, errorMessage } from '../errors.js';
import { defaultModuleCacheDir } from '../module/download.js';
import type { FeatureExtractor } from '../module/index.js';
import type { HeadValues } from '../train/index.js';
import { exportOnnx, isOnnxPath } from './onnx.js';
import { exportFrozenGraph, isFrozenGraphPath } from './tf.js';
import { exportGraph, exportLayers, removeStaleShards, type ExportOptions } from './tfjs.js';

export { readLabels, writeLabels, type RetrainMetadata } from './metadata.js';
export { type ExportOptions } from './tfjs.js';

export async function exportModel(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  if (isFrozenGraphPath(opts.dir)) return exportFrozenGraph(ex, head, opts);
  if (isOnnxPath(opts.dir)) return exportOnnx(ex, head, { ...opts, onnxCacheDir: opts.onnxCacheDir ?? path.join(defaultModuleCacheDir(), 'onnx') });
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(opts.dir, { throwIfNoEntry: false });
  } catch (err) {
    // ENOTDIR: a file where a parent folder should be.
    throw new RetrainError(`cannot write ${opts.dir}: ${errorMessage(err)}`, 1, { cause: err });
  }
  if (st && !st.isDirectory()) throw new RetrainError(`--output_graph ${opts.dir} is a file: give a folder for the TF.js model`);
  switch (ex.kind) {
    case 'layers':
      await exportLayers(ex, head, opts);
      break;
    case 'graph':
      await exportGraph(ex, head, opts);
      break;
    case 'saved-model':
      throw new RetrainError(`a ${ex.info.format} module cannot be exported as a TF.js model: use its TF.js version as --tfhub_module`);
  }
  removeStaleShards(opts.dir);
}
