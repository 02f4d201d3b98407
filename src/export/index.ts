/**
 * The `export` stage: the module and the trained head as one model — a TF.js
 * folder that plain tf.loadGraphModel / tf.loadLayersModel read, or retrain.py's
 * frozen .pb — plus retrain.py's labels file. Which writer runs depends on the
 * module's `kind`; every export is one unit, built beside its target and swapped in.
 */
import path from 'node:path';
import { RetrainError } from '../errors.js';
import { defaultModuleCacheDir } from '../module/download.js';
import type { FeatureExtractor } from '../module/index.js';
import { checkModelFiles } from '../module/io.js';
import type { HeadValues } from '../train/index.js';
import { writeAtomic } from '../util/fsutil.js';
import { stageFile } from '../util/write.js';
import { labelsText } from './metadata.js';
import { MODEL_FILE } from './outputs.js';
import { publishDir } from './publish.js';
import { exportOnnx, isOnnxPath } from './onnx.js';
import { exportTflite, isTflitePath, tfliteWeights, type TfliteExportOptions } from './tflite.js';
import { exportFrozenGraph, isFrozenGraphPath } from './tf.js';
import { exportGraph, exportLayers, type ExportOptions } from './tfjs.js';

export { readLabels, writeLabels, type RetrainMetadata } from './metadata.js';
export { type ExportOptions } from './tfjs.js';

/** `file` relative to `dir` when it lies inside it. */
function within(dir: string, file: string): string | undefined {
  const rel = path.relative(path.resolve(dir), path.resolve(file));
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : undefined;
}

/** The TF.js writer for the module's kind. */
async function writeTfjs(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  switch (ex.kind) {
    case 'layers':
      return exportLayers(ex, head, opts);
    case 'graph':
      return exportGraph(ex, head, opts);
    case 'saved-model':
      throw new RetrainError(`a ${ex.info.format} module cannot be exported as a TF.js model: use its TF.js version as --tfhub_module`);
    case 'onnx':
      throw new RetrainError(`an .onnx module cannot be exported as a TF.js model: give a .onnx --output_graph`);
  }
}

/**
 * Writes the model (and its labels) as one unit: the folder is built beside `dir`,
 * checked against its manifest and swapped in (./publish.ts); a .pb is one file
 * renamed into place. A failure at any point leaves the previous export whole.
 */
export async function exportModel(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const onnx = isOnnxPath(opts.dir);
  const tflite = isTflitePath(opts.dir);
  // A .pb, a .onnx or a .tflite is one file, renamed into place whole.
  const frozen = isFrozenGraphPath(opts.dir) || onnx || tflite;
  const inside = opts.labelsFile === undefined || frozen ? undefined : within(opts.dir, opts.labelsFile);
  const labels = opts.labelsFile !== undefined && inside === undefined ? await stageFile(opts.labelsFile, labelsText(opts.labels)) : undefined;
  try {
    if (tflite) await exportTflite(ex, head, { dir: opts.dir, labels: opts.labels, weights: tfliteWeights({ quantize: opts.quantize, quantizeBytes: opts.quantizeBytes }), calibrate: opts.calibrate });
    else if (onnx) await exportOnnx(ex, head, { ...opts, onnxCacheDir: opts.onnxCacheDir ?? path.join(defaultModuleCacheDir(), 'onnx') });
    else if (frozen) await exportFrozenGraph(ex, head, opts);
    else {
      const topLevel = inside?.split(path.sep)[0];
      await publishDir(
        opts.dir,
        opts.flag ?? '--output_graph',
        (name) => MODEL_FILE.test(name) || name === topLevel,
        async (dir) => {
          await writeTfjs(ex, head, { ...opts, dir });
          if (inside !== undefined) await writeAtomic(path.join(dir, inside), labelsText(opts.labels));
        },
        (dir) => void checkModelFiles(path.join(dir, 'model.json')),
      );
    }
  } catch (err) {
    await labels?.abort();
    throw err;
  }
  await labels?.commit();
}
