/**
 * label-image: classifies images with a model retrain exported (or any TF.js
 * classifier), with TensorFlow's label_image.py flags. Preprocessing is the very
 * function retrain uses, so an image gets the same scores in both.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, wantsOnnxRuntime } from './backend.js';
import { listImagesDeep } from './dataset/index.js';
import { ImageError, RetrainError, UsageError, errorMessage } from './errors.js';
import { loadClassifier, type Classifier } from './export/load.js';
import { isOnnxPath } from './export/onnx.js';
import { onnxRuntimeMissing, requireOnnxRuntime } from './module/onnx/runtime.js';
import { validateLabelImageOptions, type LabelImageOptions } from './flags/label_image.js';
import { decodeImage, toModuleInput } from './image/index.js';
import { silentLogger, type Logger } from './log.js';
import { fsPath } from './util/fsname.js';

export type { LabelImageOptions } from './flags/label_image.js';

export interface LabelResult {
  image: string;
  /** Best first, at most top_k. */
  predictions: Array<{ index: number; label: string; score: number }>;
  /** All class scores, in class order. */
  scores: Float32Array;
}

/** Expands --image arguments: files as given, folders to the images inside them (recursively). */
export async function expandImageArgs(args: string[]): Promise<string[]> {
  const out: string[] = [];
  if (args.filter((a) => a === '-').length > 1) throw new UsageError('--image - (standard input) can be given once');
  for (const a of args) {
    const st = a === '-' ? undefined : fs.statSync(fsPath(a), { throwIfNoEntry: false });
    if (st?.isDirectory()) {
      const found = await listImagesDeep(a);
      if (found.length === 0) throw new UsageError(`--image ${a} is a folder with no images in it`);
      out.push(...found.map((f) => path.join(a, f)));
    } else {
      out.push(a);
    }
  }
  return out;
}

/** The image as the classifier's input (sharp decodes on its own threads); a name given on the command line is read as `cat` would, `-` from stdin. */
async function classifierInput(c: Classifier, file: string): Promise<Float32Array> {
  return toModuleInput(await decodeImage(file, { explicit: true }), c.spec);
}

/** `input`: the image already being decoded, if it is. */
export async function classifyImage(c: Classifier, file: string, topK: number, input: Promise<Float32Array> = classifierInput(c, file)): Promise<LabelResult> {
  return scoreInput(c, file, await input, topK);
}

async function scoreInput(c: Classifier, file: string, input: Float32Array, topK: number): Promise<LabelResult> {
  const { height, width } = c.spec;
  let scores: Float32Array;
  try {
    const session = await c.onnx?.session();
    if (session) scores = await session.run(input, 1, height, width);
    else {
      const probs = tf.tidy(() => c.run(tf.tensor4d(input, [1, height, width, 3])));
      scores = (await probs.data()) as Float32Array;
      probs.dispose();
    }
  } catch (err) {
    // Frozen graphs often leave their input size open, so label_image.py's 299 default may not fit.
    throw new RetrainError(
      `the model fails on a ${height}x${width} input (${errorMessage(err).split('\n')[0]}): check --input_height, --input_width, --input_layer and --output_layer`,
      1,
      { cause: err },
    );
  }
  if (c.labels && c.labels.length !== scores.length) {
    throw new RetrainError(`the labels list has ${c.labels.length} entries but the model gives ${scores.length} scores: pass the matching --labels`);
  }
  const order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]! || a - b);
  return {
    image: file,
    predictions: order.slice(0, Math.max(1, topK)).map((i) => ({ index: i, label: c.labels?.[i] ?? String(i), score: scores[i]! })),
    scores,
  };
}


export interface LabelImagesResult {
  results: LabelResult[];
  /** Images that could not be read or decoded, with why; the others were classified. */
  skipped: Array<{ image: string; reason: string }>;
  /** label_image.py's contract for scripts: 1 when any image was skipped, else 0. */
  exitCode: 0 | 1;
}

/**
 * label_image.py's main: loads the model once, then classifies every image (folders
 * expanded). An unreadable image is skipped with a warning and makes the exit code 1;
 * any other error stops.
 */
/** What the caller hears of a labelImages run as it goes. */
export interface LabelImagesHooks {
  /** Sees each result as soon as it is ready. */
  onResult?: (r: LabelResult, index: number, total: number) => void;
  /** Asked before each image; true ends the loop early (e.g. nobody reads the output any more). */
  stop?: () => boolean;
}

export async function labelImages(options: LabelImageOptions, log: Logger, hooks: LabelImagesHooks = {}): Promise<LabelImagesResult> {
  const o = validateLabelImageOptions(options);
  const backend = await initBackend(o.backend);
  await requireOnnxRuntime(o.backend);
  if (o.backend === 'auto' && !isOnnxPath(o.graph)) {
    // The one line label_image.py's silence allows: what is missing and how to restore it (a .onnx --graph fails with it instead).
    const missing = await onnxRuntimeMissing();
    if (missing) log.warn(`Classifier on tfjs ${backend.name}, not onnxruntime: ${missing.message}`);
  }
  const classifier = await loadClassifier({
    graph: o.graph,
    labels: o.labels,
    inputLayer: o.inputLayer,
    outputLayer: o.outputLayer,
    inputHeight: o.inputHeight,
    inputWidth: o.inputWidth,
    inputMean: o.inputMean,
    inputStd: o.inputStd,
    // label_image.py prints nothing but results: only an explicit --backend onnxruntime says which engine runs, or why not.
    onnx: wantsOnnxRuntime(o.backend) ? { cacheDir: path.join(o.moduleCacheDir, 'onnx'), log: o.backend === 'onnxruntime' ? log : silentLogger } : undefined,
  });
  try {
    const images = await expandImageArgs(o.image);
    const results: LabelResult[] = [];
    const skipped: LabelImagesResult['skipped'] = [];
    let ahead: Promise<Float32Array> | undefined;
    for (const [i, file] of images.entries()) {
      if (hooks.stop?.()) break;
      const input = ahead ?? classifierInput(classifier, file);
      // The next image decodes while this one runs.
      const next = images[i + 1];
      ahead = next === undefined ? undefined : classifierInput(classifier, next);
      ahead?.catch(() => {}); // observed in its own turn
      try {
        const r = await classifyImage(classifier, file, o.topK, input);
        results.push(r);
        hooks.onResult?.(r, results.length - 1, images.length);
      } catch (err) {
        if (!(err instanceof ImageError)) throw err;
        skipped.push({ image: file, reason: err.message });
        log.warn(`Skipping ${err.message}`);
      }
    }
    return { results, skipped, exitCode: skipped.length > 0 ? 1 : 0 };
  } finally {
    classifier.dispose();
  }
}
