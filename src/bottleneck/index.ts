/**
 * The `bottleneck` stage: one feature vector per image, computed once and cached
 * on disk as `<bottleneck_dir>/<class folder>/<image>_<module name>.bin`
 * (retrain.py's layout, binary instead of text).
 */
import fs from 'node:fs';
import path from 'node:path';
import pLimit from 'p-limit';
import * as tf from '@tensorflow/tfjs';
import { allImages, type ImageLists, type ImageRef } from '../dataset/index.js';
import { ImageError, RetrainError, errorMessage } from '../errors.js';
import { decodeImage, toModuleInput, type RgbImage } from '../image/index.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import { writeAtomic } from '../util/fsutil.js';
import { decodeBottleneck, encodeBottleneck, type ImageStamp } from './format.js';

export interface BottleneckOptions {
  bottleneckDir: string;
  /** Images per inference call. */
  batchSize?: number;
  /** Make any unusable image fatal instead of skipping it. */
  strict?: boolean;
  log: Logger;
  /** Distorted variants (bottleneck/distorted.ts) instead of the plain bottlenecks. */
  variant?: BottleneckVariant;
}

/** Which images, a tag for their cache file names, and how to make their module input. */
export interface BottleneckVariant {
  images: ImageRef[];
  tag: string;
  input(img: RgbImage, ref: ImageRef, out: Float32Array): void;
}

export interface FailedImage {
  file: string;
  reason: string;
}

export interface Bottlenecks {
  size: number;
  /** Values per image, keyed by the image's absolute path; failed images are absent. */
  values: Map<string, Float32Array>;
  computed: number;
  cached: number;
  failed: FailedImage[];
}

export function bottleneckPath(dir: string, classDir: string, imageName: string, moduleName: string): string {
  return path.join(dir, classDir, `${imageName}_${moduleName}.bin`);
}

async function stampOf(file: string): Promise<ImageStamp> {
  const st = await fs.promises.stat(file);
  return { size: st.size, mtimeMs: st.mtimeMs };
}

interface Job {
  ref: ImageRef;
  cacheFile: string;
  stamp: ImageStamp;
}

/** retrain.py's `cache_bottlenecks`: makes sure every image has a valid cached bottleneck. */
export async function cacheBottlenecks(lists: ImageLists, extractor: FeatureExtractor, opts: BottleneckOptions): Promise<Bottlenecks> {
  const { info } = extractor;
  const log = opts.log;
  const result: Bottlenecks = { size: info.bottleneckSize, values: new Map(), computed: 0, cached: 0, failed: [] };
  const fail = (file: string, reason: string, cause?: unknown) => {
    if (opts.strict) throw new RetrainError(`${file}: ${reason} (--strict makes this fatal)`, 1, { cause });
    log.warn(`Skipping ${file}: ${reason}`);
    result.failed.push({ file, reason });
  };

  const refs = opts.variant?.images ?? allImages(lists);
  const cacheName = opts.variant ? `${info.name}_${opts.variant.tag}` : info.name;
  const todo: Job[] = [];
  const io = pLimit(32);
  const checked = await Promise.all(
    refs.map((ref) =>
      io(async () => {
        const cacheFile = bottleneckPath(opts.bottleneckDir, lists.classes[ref.classIndex]!.dir, ref.name, cacheName);
        let stamp: ImageStamp;
        try {
          stamp = await stampOf(ref.file);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          return { ref, error: code === 'ENOENT' ? 'file not found (a broken symlink?)' : `cannot read: ${errorMessage(err)}` };
        }
        const bytes = await fs.promises.readFile(cacheFile).catch(() => undefined);
        if (bytes) {
          const decoded = decodeBottleneck(bytes, info.id, info.bottleneckSize, stamp);
          if (decoded.ok) return { ref, values: decoded.values };
          log.warn(`Recomputing ${cacheFile}: ${decoded.reason}`);
        }
        return { ref, job: { ref, cacheFile, stamp } };
      }),
    ),
  );
  for (const c of checked) {
    if ('error' in c) fail(c.ref.file, c.error!);
    else if (c.values) {
      result.values.set(c.ref.file, c.values);
      result.cached++;
    } else if (c.job) todo.push(c.job);
  }
  if (result.cached > 0) log.info(`${result.cached} bottleneck files found in the cache ${opts.bottleneckDir}`);
  if (todo.length === 0) return result;

  log.info(`Creating ${todo.length} bottleneck files in ${opts.bottleneckDir}`);
  const batchSize = Math.max(1, opts.batchSize ?? 16);
  const { inputSpec } = extractor;
  const pixels = inputSpec.height * inputSpec.width * 3;
  const decodeLimit = pLimit(4);
  const writes = pLimit(16);
  const pendingWrites: Promise<void>[] = [];

  // Decoding for batch k+1 runs on sharp's threads while batch k is in inference.
  const prepare = (jobs: Job[]) => {
    const input = new Float32Array(jobs.length * pixels);
    const ready = jobs.map((job, i) =>
      decodeLimit(async () => {
        const img = await decodeImage(job.ref.file);
        const out = input.subarray(i * pixels, (i + 1) * pixels);
        if (opts.variant) opts.variant.input(img, job.ref, out);
        else toModuleInput(img, inputSpec, out);
      }).then(
        () => null,
        (err: unknown) => (err instanceof ImageError ? err : new ImageError(job.ref.file, errorMessage(err), { cause: err })),
      ),
    );
    return { jobs, input, ready: Promise.all(ready) };
  };

  const batches: Job[][] = [];
  for (let i = 0; i < todo.length; i += batchSize) batches.push(todo.slice(i, i + batchSize));
  let next = batches.length > 0 ? prepare(batches[0]!) : undefined;
  let lastReported = 0;
  for (let b = 0; b < batches.length; b++) {
    const current = next!;
    next = b + 1 < batches.length ? prepare(batches[b + 1]!) : undefined;
    const errors = await current.ready;
    const okIdx: number[] = [];
    errors.forEach((e, i) => (e ? fail(e.file, e.reason, e.cause) : okIdx.push(i)));
    if (okIdx.length === 0) continue;
    const input =
      okIdx.length === current.jobs.length
        ? current.input
        : (() => {
            const packed = new Float32Array(okIdx.length * pixels);
            okIdx.forEach((src, dst) => packed.set(current.input.subarray(src * pixels, (src + 1) * pixels), dst * pixels));
            return packed;
          })();
    const out = tf.tidy(() => extractor.extract(tf.tensor4d(input, [okIdx.length, inputSpec.height, inputSpec.width, 3])));
    const flat = (await out.data()) as Float32Array;
    out.dispose();
    okIdx.forEach((src, k) => {
      const job = current.jobs[src]!;
      const values = flat.slice(k * info.bottleneckSize, (k + 1) * info.bottleneckSize);
      result.values.set(job.ref.file, values);
      result.computed++;
      pendingWrites.push(writes(() => writeAtomic(job.cacheFile, encodeBottleneck(values, info.id, job.stamp))));
    });
    log.progress?.('bottlenecks', result.computed + result.failed.length, todo.length);
    if (Math.floor(result.computed / 100) > lastReported) {
      lastReported = Math.floor(result.computed / 100);
      log.info(`${lastReported * 100} bottleneck files created.`);
    }
  }
  await Promise.all(pendingWrites);
  return result;
}
