/** The `export` stage's steps of a run: refuse impossible exports early, write the model, check it. */
import path from 'node:path';
import type { LabeledSet } from '../bottleneck/sets.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import type { HeadValues } from '../train/index.js';
import { exportAccuracy, folderBytes } from './evaluate.js';
import { exportModel } from './index.js';
import { isOnnxPath } from './onnx.js';
import { withOutputLocks } from './publish.js';
import type { QuantizeBytes } from './quantize.js';
import { exportSavedModel, isFrozenGraphPath } from './tf.js';

/** What the export step reads of the run's options (the flags of the same names). */
export interface ExportStepOptions {
  /** A `.onnx` --output_graph reuses the module's conversion cached in <dir>/onnx. */
  moduleCacheDir: string;
  outputGraph: string;
  outputLabels: string;
  finalTensorName: string;
  savedModelDir?: string;
  quantizeBytes?: number;
  intermediateOutputGraphsDir: string;
}

/** The outputs as the run summary records them. */
export interface OutputsSection {
  output_graph: string;
  output_labels: string;
  intermediate: string[];
}

/** --quantize_bytes: the export's size and its accuracy on the test images, loaded back with plain tfjs. */
export interface ExportSection {
  quantize_bytes: number | null;
  bytes: number;
  test_accuracy: number | null;
}

/** --intermediate_store_frequency: where the model of training step `step` goes. */
export function intermediatePath(o: ExportStepOptions, step: number): string {
  return path.join(o.intermediateOutputGraphsDir, `intermediate_${step}${isFrozenGraphPath(o.outputGraph) ? '.pb' : isOnnxPath(o.outputGraph) ? '.onnx' : ''}`);
}

/** Writes an intermediate model (the module plus the head as it is at `step`); returns its path. */
export async function exportIntermediate(ex: FeatureExtractor, head: HeadValues, labels: string[], o: ExportStepOptions, step: number): Promise<string> {
  const dir = intermediatePath(o, step);
  await exportModel(ex, head, { dir, labels, finalTensorName: o.finalTensorName, flag: '--intermediate_output_graphs_dir', onnxCacheDir: path.join(o.moduleCacheDir, 'onnx') });
  return dir;
}

/**
 * Step "export the model" (retrain.py's save_graph_to_file and export_model): the
 * module with the head on top to --output_graph and the labels to --output_labels,
 * published together under a lock so that two runs never mix; a SavedModel to
 * --saved_model_dir when asked. With --quantize_bytes, the export is loaded back
 * (still under the lock) and checked.
 */
export async function exportRetrained(ex: FeatureExtractor, head: HeadValues, labels: string[], testing: LabeledSet, o: ExportStepOptions, log: Logger): Promise<ExportSection | undefined> {
  return withOutputLocks([o.outputGraph, o.outputLabels], (p) => log.info(`Waiting for another run writing ${p}`), async () => {
    const quantizeBytes = o.quantizeBytes as QuantizeBytes | undefined;
    await exportModel(ex, head, { dir: o.outputGraph, labels, labelsFile: o.outputLabels, finalTensorName: o.finalTensorName, quantizeBytes, onnxCacheDir: path.join(o.moduleCacheDir, 'onnx') });
    if (o.savedModelDir) {
      await exportSavedModel(ex, head, { dir: o.savedModelDir, labels, finalTensorName: o.finalTensorName });
      log.info(`Wrote a SavedModel (tag serve, signature serving_default: image -> prediction) to ${o.savedModelDir}`);
    }
    log.info(`Wrote the retrained model to ${o.outputGraph} and its labels to ${o.outputLabels}`);
    return checkQuantizedExport(o, testing, log);
  });
}

/** With --quantize_bytes: the written model loaded back as a user would, its size and test accuracy. */
async function checkQuantizedExport(o: ExportStepOptions, testing: LabeledSet, log: Logger): Promise<ExportSection | undefined> {
  if (!o.quantizeBytes) return undefined;
  const bytes = folderBytes(o.outputGraph);
  const acc = testing.y.length ? await exportAccuracy(o.outputGraph, testing.files, testing.y) : null;
  log.info(`Export with ${o.quantizeBytes === 1 ? 'uint8' : 'float16'} weights: ${bytes} bytes; test accuracy loaded back = ${acc === null ? 'n/a' : `${(acc * 100).toFixed(1)}%`}`);
  return { quantize_bytes: o.quantizeBytes, bytes, test_accuracy: acc };
}
