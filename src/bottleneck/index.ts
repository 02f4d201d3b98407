/**
 * The `bottleneck` stage: one feature vector per image, computed once and cached
 * on disk as `<bottleneck_dir>/<class folder>/<image>_<module name>.bin`
 * (retrain.py's layout, binary instead of text).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pLimit from 'p-limit';
import { allImages, type ImageLists, type ImageRef } from '../dataset/index.js';
import { RetrainError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { RgbImage } from '../image/index.js';
import type { FeatureExtractor } from '../module/index.js';
import { throwIfInterrupted } from '../util/abort.js';
import { writeAtomic } from '../util/fsutil.js';
import { removeStaleTemps } from './cleanup.js';
import { computeBottlenecks, type ModuleEngine } from './compute.js';
import { boundedName, cacheRelativePath, decodeBottleneck, encodeBottleneck, type ImageStamp } from './format.js';
import { sizeProblem } from '../image/index.js';
import { fsPath, readFailure } from '../util/fsname.js';
import { inShard, type Shard } from './shard.js';

export type { ModuleEngine } from './compute.js';

export interface BottleneckOptions {
  bottleneckDir: string;
  /** Images per inference call. */
  batchSize?: number;
  /** Make any unusable image fatal instead of skipping it. */
  strict?: boolean;
  /** Stops between batches once aborted (Ctrl-C), keeping every finished file. */
  signal?: AbortSignal;
  /** Inference threads (--num_workers); 0 runs the module on the main thread. Default: one per core. */
  numWorkers?: number;
  /** Only the images of this shard (--shard_index/--shard_count); the others are not even looked at. */
  shard?: Shard;
  log: Logger;
  /** Distorted variants (bottleneck/distorted.ts) instead of the plain bottlenecks. */
  variant?: BottleneckVariant;
  /** Stamps an earlier call of this run took (each variant would otherwise read and hash every image again). */
  stamps?: Map<string, ImageStamp>;
  /** Computes bottlenecks from values already in memory instead of decoding the images and running the whole module. */
  derive?: DerivedBottlenecks;
}

/**
 * Bottlenecks from values the run already holds: fine-tuning's cached activations
 * through the module's top layers, so that the frozen bottom runs once per image.
 * Images it has no values for go through the module as usual.
 */
export interface DerivedBottlenecks {
  has(file: string): boolean;
  /** The bottlenecks of these images, in the same order. */
  compute(files: string[]): Promise<Float32Array[]>;
  /** What ran the bottom (for the run summary). */
  engine?: ModuleEngine;
  /** For the log: where the values come from. */
  source: string;
}

/** Images per call of DerivedBottlenecks.compute. */
const DERIVE_BATCH = 128;

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
  /** Worker threads that computed bottlenecks (0: main thread or nothing to compute). */
  workers?: number;
  /** What ran the module for the computed ones (absent when nothing was computed). */
  engine?: ModuleEngine;
  /** Each usable image's stamp (size, mtime, sha256 of its bytes), as checked against the cache. */
  stamps: Map<string, ImageStamp>;
}

export function bottleneckPath(dir: string, classDir: string, imageName: string, moduleName: string): string {
  return path.join(dir, ...cacheRelativePath(classDir, imageName, moduleName));
}

/** Images up to this size are hashed from one read; larger ones are streamed. */
const WHOLE_READ_BYTES = 8 * 1024 * 1024;

/**
 * Size, mtime and a content hash: a cache file is trusted only for the very bytes it
 * was computed from, even if another image of the same size and mtime has its file.
 * Memory stays bounded: files too large to be images are refused first, large ones streamed.
 */

export async function imageStamp(file: string): Promise<ImageStamp | { error: string }> {
  try {
    const st = await fs.promises.stat(fsPath(file));
    if (!st.isFile()) return { error: 'not a regular file' };
    const problem = sizeProblem(st.size);
    if (problem) return { error: problem };
    const hash = createHash('sha256');
    // One read is cheapest for photo-sized files (2-3x a stream's speed); large ones stream.
    if (st.size <= WHOLE_READ_BYTES) hash.update(await fs.promises.readFile(fsPath(file)));
    else for await (const chunk of fs.createReadStream(fsPath(file), { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    return { size: st.size, mtimeMs: st.mtimeMs, contentHash: hash.digest() };
  } catch (err) {
    return { error: readFailure(err) };
  }
}

/** The stamps of readable files, keyed by path (for callers that build Bottlenecks themselves). */
export async function stampsOf(files: string[]): Promise<Map<string, ImageStamp>> {
  const out = new Map<string, ImageStamp>();
  for (const f of files) {
    const s = await imageStamp(f);
    if (!('error' in s)) out.set(f, s);
  }
  return out;
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
  const result: Bottlenecks = { size: info.bottleneckSize, values: new Map(), computed: 0, cached: 0, failed: [], stamps: new Map() };
  const fail = (file: string, reason: string, cause?: unknown) => {
    if (opts.strict) throw new RetrainError(`${file}: ${reason} (--strict makes this fatal)`, 1, { cause });
    log.warn(`Skipping ${file}: ${reason}`);
    result.failed.push({ file, reason });
  };

  const stale = await removeStaleTemps(opts.bottleneckDir, lists.classes.map((c) => boundedName(c.dir)));
  if (stale > 0) log.info(`Removed ${stale} temp files that killed runs left in ${opts.bottleneckDir}`);
  const refs = (opts.variant?.images ?? allImages(lists)).filter((ref) => inShard(lists.classes[ref.classIndex]!.dir, ref.name, opts.shard));
  const cacheName = opts.variant ? `${info.name}_${opts.variant.tag}` : info.name;
  const todo: Job[] = [];
  const io = pLimit(32);
  const checked = await Promise.all(
    refs.map((ref) =>
      io(async () => {
        const cacheFile = bottleneckPath(opts.bottleneckDir, lists.classes[ref.classIndex]!.dir, ref.name, cacheName);
        const stamp = opts.stamps?.get(ref.file) ?? (await imageStamp(ref.file));
        if ('error' in stamp) return { ref, error: stamp.error };
        result.stamps.set(ref.file, stamp);
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

  const derived: Job[] = [];
  const rest: Job[] = [];
  for (const job of todo) (opts.derive?.has(job.ref.file) ? derived : rest).push(job);
  log.info(`Creating ${todo.length} bottleneck files in ${opts.bottleneckDir}${derived.length ? ` (${derived.length} ${opts.derive!.source})` : ''}`);
  const writes = pLimit(16);
  const pendingWrites: Promise<void>[] = [];
  let lastReported = 0;
  let writeError: unknown;
  const shouldStop = () => writeError !== undefined || opts.signal?.aborted === true;
  const computed = (job: Job, values: Float32Array) => {
    result.values.set(job.ref.file, values);
    result.computed++;
    // Caught here so a failing write (read-only or full disk) stops the run with its own message, not as an unhandled rejection.
    pendingWrites.push(writes(() => writeAtomic(job.cacheFile, encodeBottleneck(values, info.id, job.stamp))).catch((err: unknown) => void (writeError ??= err)));
    log.progress?.('bottlenecks', result.computed + result.failed.length, todo.length);
    if (Math.floor(result.computed / 100) > lastReported) {
      lastReported = Math.floor(result.computed / 100);
      log.info(`${lastReported * 100} bottleneck files created.`);
    }
  };
  for (let i = 0; i < derived.length && !shouldStop(); i += DERIVE_BATCH) {
    const batch = derived.slice(i, i + DERIVE_BATCH);
    const values = await opts.derive!.compute(batch.map((job) => job.ref.file));
    batch.forEach((job, j) => computed(job, values[j]!));
  }
  if (derived.length) result.engine = opts.derive!.engine;
  if (rest.length && !shouldStop()) {
    const { workers, engine } = await computeBottlenecks(
      rest.map((job) => ({ ...job, file: job.ref.file })),
      extractor,
      {
        batchSize: opts.batchSize ?? 4,
        numWorkers: opts.numWorkers,
        shouldStop,
        toInput: opts.variant ? (img, job, out) => opts.variant!.input(img, job.ref, out) : undefined,
        log,
      },
      computed,
      fail,
    );
    result.workers = workers;
    result.engine = engine;
  }
  // Files already computed are kept: a rerun then computes only the rest.
  await Promise.all(pendingWrites);
  if (writeError) throw writeError;
  const left = todo.length - result.computed - result.failed.length;
  throwIfInterrupted(
    opts.signal,
    `interrupted: ${result.computed} new bottleneck files saved in ${opts.bottleneckDir}, ${left} still to compute; run the same command again to continue`,
  );
  return result;
}

/** The bottleneck stage as the run summary records it. */
export interface BottleneckSection {
  computed: number;
  cached: number;
  failed: FailedImage[];
  /** What ran the module's forward pass; absent when every bottleneck was cached (the module did not run). */
  engine?: ModuleEngine;
}

/** What the bottleneck step reads of the run's options (the flags of the same names). */
export interface BottleneckStepOptions {
  bottleneckDir: string;
  bottleneckBatchSize: number;
  strict: boolean;
  numWorkers?: number;
  bottlenecksOnly: boolean;
  shardIndex: number;
  shardCount: number;
  signal?: AbortSignal;
}

/**
 * Step "cache the bottlenecks": every image's bottleneck, read from --bottleneck_dir
 * or computed once and written there (retrain.py's cache_bottlenecks); with
 * --shard_count, only this shard's images.
 */
export async function cacheAllBottlenecks(
  lists: ImageLists,
  extractor: FeatureExtractor,
  o: BottleneckStepOptions,
  log: Logger,
  derive?: DerivedBottlenecks,
): Promise<{ bottlenecks: Bottlenecks; section: BottleneckSection }> {
  const bottlenecks = await cacheBottlenecks(lists, extractor, {
    derive,
    bottleneckDir: o.bottleneckDir,
    batchSize: o.bottleneckBatchSize,
    strict: o.strict,
    numWorkers: o.numWorkers,
    signal: o.signal,
    shard: o.shardCount > 1 ? { index: o.shardIndex, count: o.shardCount } : undefined,
    log,
  });
  const { computed, cached, failed, engine } = bottlenecks;
  log.info(`Bottlenecks: ${computed} computed, ${cached} cached, ${failed.length} failed`);
  return { bottlenecks, section: { computed, cached, failed, ...(engine && { engine }) } };
}
