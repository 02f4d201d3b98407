/** The `export` stage's steps of a run: refuse impossible exports early, write the model, check it. */
import fs from 'node:fs';
import path from 'node:path';
import type { LabeledSet } from '../bottleneck/sets.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import type { HeadValues } from '../train/index.js';
import { exportAccuracy, folderBytes } from './evaluate.js';
import { exportModel } from './index.js';
import { isOnnxPath } from './onnx.js';
import { calibrationSample } from './calibrate_sample.js';
import { isTflitePath, tfliteWeights, type TfliteExportOptions } from './tflite.js';
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
  /** --quantize int8 (a .tflite --output_graph). */
  quantize?: 'int8';
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
  /** A quantized .tflite: its weights (int8: full-integer, uint8 input and output). */
  tflite_weights?: 'float16' | 'int8';
  bytes: number;
  test_accuracy: number | null;
}

/** --intermediate_store_frequency: where the model of training step `step` goes. */
export function intermediatePath(o: ExportStepOptions, step: number): string {
  return path.join(o.intermediateOutputGraphsDir, `intermediate_${step}${isFrozenGraphPath(o.outputGraph) ? '.pb' : isOnnxPath(o.outputGraph) ? '.onnx' : isTflitePath(o.outputGraph) ? '.tflite' : ''}`);
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
export async function exportRetrained(
  ex: FeatureExtractor,
  head: HeadValues,
  labels: string[],
  testing: LabeledSet,
  o: ExportStepOptions,
  log: Logger,
  training?: LabeledSet,
): Promise<ExportSection | undefined> {
  return withOutputLocks([o.outputGraph, o.outputLabels], (p) => log.info(`Waiting for another run writing ${p}`), async () => {
    const quantizeBytes = o.quantizeBytes as QuantizeBytes | undefined;
    const calibrate = o.quantize === 'int8' && training ? calibrationOf(ex, training, log) : undefined;
    await exportModel(ex, head, {
      dir: o.outputGraph,
      labels,
      labelsFile: o.outputLabels,
      finalTensorName: o.finalTensorName,
      quantizeBytes,
      quantize: o.quantize,
      calibrate,
      onnxCacheDir: path.join(o.moduleCacheDir, 'onnx'),
    });
    if (o.savedModelDir) {
      await exportSavedModel(ex, head, { dir: o.savedModelDir, labels, finalTensorName: o.finalTensorName });
      log.info(`Wrote a SavedModel (tag serve, signature serving_default: image -> prediction) to ${o.savedModelDir}`);
    }
    log.info(`Wrote the retrained model to ${o.outputGraph} and its labels to ${o.outputLabels}`);
    return checkQuantizedExport(o, testing, log);
  });
}

/** --quantize int8: activation ranges from up to CALIBRATION_IMAGES training images, spread evenly over the sorted list. */
function calibrationOf(ex: FeatureExtractor, training: LabeledSet, log: Logger): NonNullable<TfliteExportOptions['calibrate']> {
  return async (graph) => {
    const files = calibrationSample(training.files);
    log.info(`Calibrating int8 activation ranges on ${files.length} training images`);
    const { calibrateInt8 } = await import('./calibrate.js');
    const { quantization, logitShift } = await calibrateInt8(graph, files, ex.inputSpec, ex.info.inputRange);
    if (logitShift.length) log.info(`Bias correction: the int8 logits' mean shift on those images (${logitShift.map((v) => v.toFixed(3)).join(', ')}) is taken off the final layer's bias`);
    return quantization;
  };
}

/** With --quantize_bytes: the written model loaded back as a user would, its size and test accuracy. */
async function checkQuantizedExport(o: ExportStepOptions, testing: LabeledSet, log: Logger): Promise<ExportSection | undefined> {
  if (isTflitePath(o.outputGraph)) return checkTfliteExport(o, testing, log);
  if (!o.quantizeBytes) return undefined;
  const bytes = folderBytes(o.outputGraph);
  const acc = testing.y.length ? await exportAccuracy(o.outputGraph, testing.files, testing.y) : null;
  log.info(`Export with ${o.quantizeBytes === 1 ? 'uint8' : 'float16'} weights: ${bytes} bytes; test accuracy loaded back = ${acc === null ? 'n/a' : `${(acc * 100).toFixed(1)}%`}`);
  return { quantize_bytes: o.quantizeBytes, bytes, test_accuracy: acc };
}

/** A quantized .tflite (--quantize int8, --quantize_bytes 2), read back as label-image reads it: its size and test accuracy. */
async function checkTfliteExport(o: ExportStepOptions, testing: LabeledSet, log: Logger): Promise<ExportSection | undefined> {
  const weights = tfliteWeights(o);
  if (weights === 'float32') return undefined;
  const bytes = fs.statSync(o.outputGraph).size;
  const acc = testing.y.length ? await exportAccuracy(o.outputGraph, testing.files, testing.y) : null;
  log.info(`TFLite export with ${weights} weights: ${bytes} bytes; test accuracy loaded back = ${acc === null ? 'n/a' : `${(acc * 100).toFixed(1)}%`}`);
  return { quantize_bytes: weights === 'int8' ? 1 : 2, tflite_weights: weights, bytes, test_accuracy: acc };
}
