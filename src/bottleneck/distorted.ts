/**
 * Bottlenecks of distorted training images, in retrain.py's two ways:
 * - `--distortion_variants 0`: fresh distortions at every training step (retrain.py's
 *   behaviour: every step runs the module on a whole batch, which is what makes it slow);
 * - `--distortion_variants K`: K distorted variants per training image, computed once,
 *   cached on disk like the plain bottlenecks and sampled from during training.
 */
import path from 'node:path';
import pLimit from 'p-limit';
import { allImages, type ImageLists } from '../dataset/index.js';
import { RetrainError, errorMessage } from '../errors.js';
import { distortedInput, distortionTag, distortionsOn, seededUniform, type DistortionSettings } from '../image/distort.js';
import { decodeImage, type RgbImage } from '../image/index.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import { forwardEngine, type ExtractEngine } from '../module/pool.js';
import type { LabeledSet } from './sets.js';
import { cacheBottlenecks } from './index.js';
import type { ImageStamp } from './format.js';

export interface DistortOptions {
  settings: DistortionSettings;
  seed: number;
  bottleneckDir: string;
  /** Images per inference call. */
  batchSize: number;
  strict?: boolean;
  /** Passed on to the bottleneck stage: worker threads, and Ctrl-C. */
  numWorkers?: number;
  signal?: AbortSignal;
  log: Logger;
}

export interface DistortedSet {
  /** K rows per usable training image. */
  training: LabeledSet;
  computed: number;
  cached: number;
}

/** The random stream of one variant of one image: independent of batch order and of other images. */
function variantStream(lists: ImageLists, classIndex: number, name: string, variant: number): string {
  return `${lists.classes[classIndex]!.dir}/${name}:${variant}`;
}

/** Computes (or reads from the cache) K distorted variants of each training image. */
export async function distortedVariants(
  lists: ImageLists,
  extractor: FeatureExtractor,
  training: LabeledSet,
  variants: number,
  opts: DistortOptions,
): Promise<DistortedSet> {
  const usable = new Set(training.files);
  const images = allImages(lists).filter((r) => r.category === 'training' && usable.has(r.file));
  const perVariant: Array<Map<string, Float32Array>> = [];
  // The images are the same for every variant: read and hash them once.
  let stamps: Map<string, ImageStamp> | undefined;
  let computed = 0;
  let cached = 0;
  for (let v = 0; v < variants; v++) {
    opts.log.info(`Distorted bottlenecks, variant ${v + 1} of ${variants}`);
    const b = await cacheBottlenecks(lists, extractor, {
      stamps,
      bottleneckDir: opts.bottleneckDir,
      batchSize: opts.batchSize,
      strict: opts.strict,
      numWorkers: opts.numWorkers,
      signal: opts.signal,
      log: opts.log,
      variant: {
        images,
        tag: distortionTag(opts.settings, opts.seed, v),
        input: (img, ref, out) => {
          distortedInput(img, extractor.inputSpec, opts.settings, seededUniform(opts.seed, variantStream(lists, ref.classIndex, ref.name, v)), out);
        },
      },
    });
    perVariant.push(b.values);
    stamps ??= b.stamps;
    computed += b.computed;
    cached += b.cached;
  }
  const size = extractor.info.bottleneckSize;
  const files: string[] = [];
  const labels: number[] = [];
  const rows: Float32Array[] = [];
  training.files.forEach((file, i) => {
    for (const values of perVariant) {
      const row = values.get(file);
      if (!row) continue;
      files.push(file);
      labels.push(training.y[i]!);
      rows.push(row);
    }
  });
  const x = new Float32Array(rows.length * size);
  rows.forEach((r, i) => x.set(r, i * size));
  return { training: { x, y: Int32Array.from(labels), files }, computed, cached };
}

/** Decoded images kept in memory up to this many bytes, so steps after the first few skip decoding. */
const DECODED_CACHE_BYTES = 512 * 1024 * 1024;

/**
 * `--distortion_variants 0`: for trainHead's `trainBottlenecks` hook, the bottlenecks
 * of freshly distorted copies of the sampled training rows. Draws depend only on the
 * seed, the step and the slot in the batch, so a rerun gives the same pixels.
 */
export function freshDistortions(
  extractor: FeatureExtractor,
  training: LabeledSet,
  opts: DistortOptions,
): (rows: Int32Array, step: number) => Promise<Float32Array> {
  const decoded = new Map<string, RgbImage>();
  let decodedBytes = 0;
  const decodeLimit = pLimit(4);
  const { inputSpec, info } = extractor;
  const pixels = inputSpec.height * inputSpec.width * 3;
  const chunk = Math.max(1, opts.batchSize);
  // Opened at the first step: ONNX Runtime when the module runs there.
  let engine: Promise<ExtractEngine> | undefined;

  const load = async (file: string): Promise<RgbImage> => {
    const hit = decoded.get(file);
    if (hit) return hit;
    let img: RgbImage;
    try {
      img = await decodeImage(file);
    } catch (err) {
      // It decoded when its bottleneck was cached; a failure now means it changed mid-run.
      throw new RetrainError(`${errorMessage(err)} (while distorting ${path.basename(file)} for training)`, 1, { cause: err });
    }
    if (decodedBytes + img.data.byteLength <= DECODED_CACHE_BYTES) {
      decoded.set(file, img);
      decodedBytes += img.data.byteLength;
    }
    return img;
  };

  return async (rows, step) => {
    const out = new Float32Array(rows.length * info.bottleneckSize);
    for (let start = 0; start < rows.length; start += chunk) {
      const n = Math.min(chunk, rows.length - start);
      const input = new Float32Array(n * pixels);
      await Promise.all(
        Array.from({ length: n }, (_, k) =>
          decodeLimit(async () => {
            const slot = start + k;
            const img = await load(training.files[rows[slot]!]!);
            distortedInput(img, inputSpec, opts.settings, seededUniform(opts.seed, `step${step}:${slot}`), input.subarray(k * pixels, (k + 1) * pixels));
          }),
        ),
      );
      engine ??= forwardEngine(extractor);
      out.set(await (await engine).extractBatch(input, n), start * info.bottleneckSize);
    }
    return out;
  };
}

/** What the distortion step reads of the run's options (the flags of the same names). */
export interface DistortionStepOptions extends DistortionSettings {
  distortionVariants: number;
  seed: number;
  bottleneckDir: string;
  bottleneckBatchSize: number;
  strict: boolean;
  numWorkers?: number;
  signal?: AbortSignal;
}

/** The training data after the distortion step: cached variants, or a hook for fresh ones. */
export interface DistortedTraining {
  training: LabeledSet;
  /** --distortion_variants 0: replaces each step's bottlenecks with fresh distorted ones. */
  trainBottlenecks?: (rows: Int32Array, step: number) => Promise<Float32Array>;
  /** --distortion_variants K: how many variant bottlenecks were computed and read from the cache. */
  variants?: { computed: number; cached: number };
}

/**
 * Step "distort the training images" (retrain.py's add_input_distortions): with any
 * distortion flag on, K cached distorted variants per training image, or fresh
 * distortions at every step with --distortion_variants 0; without, the plain set.
 */
export async function distortedTraining(
  lists: ImageLists,
  extractor: FeatureExtractor,
  training: LabeledSet,
  o: DistortionStepOptions,
  log: Logger,
): Promise<DistortedTraining> {
  if (!distortionsOn(o)) return { training };
  const d: DistortOptions = {
    settings: { flipLeftRight: o.flipLeftRight, randomCrop: o.randomCrop, randomScale: o.randomScale, randomBrightness: o.randomBrightness },
    seed: o.seed,
    bottleneckDir: o.bottleneckDir,
    batchSize: o.bottleneckBatchSize,
    strict: o.strict,
    numWorkers: o.numWorkers,
    signal: o.signal,
    log,
  };
  if (o.distortionVariants === 0) {
    log.info('Distortions on with --distortion_variants 0: computing fresh bottlenecks at every training step (slow)');
    return { training, trainBottlenecks: freshDistortions(extractor, training, d) };
  }
  const v = await distortedVariants(lists, extractor, training, o.distortionVariants, d);
  log.info(`Distorted bottlenecks: ${v.computed} computed, ${v.cached} cached (${o.distortionVariants} variants per training image)`);
  return { training: v.training, variants: { computed: v.computed, cached: v.cached } };
}
