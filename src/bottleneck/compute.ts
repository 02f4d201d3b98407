/**
 * Computing missing bottlenecks as a pipeline: sharp decodes on its own threads,
 * the main thread resizes and writes cache files, and the module runs in worker
 * threads (or in process), with several batches in flight so no stage waits.
 */
import pLimit from 'p-limit';
import { ImageError, errorMessage } from '../errors.js';
import { decodeImage, toModuleInput, type RgbImage } from '../image/index.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import { startEngine, type ExtractEngine } from '../module/pool.js';

export interface ComputeOptions<J extends ComputeJob = ComputeJob> {
  batchSize: number;
  /** Inference threads; 0 runs the module on the main thread. Default: one per core. */
  numWorkers?: number;
  /** Checked before each batch and again before its inference: true skips the rest (Ctrl-C, a failed write). */
  shouldStop?: () => boolean;
  /** Makes a job's module input from its decoded image; default: the plain resize (distorted variants differ). */
  toInput?: (img: RgbImage, job: J, out: Float32Array) => void;
  log: Logger;
}

/** The engine that ran the module's forward pass, as the run summary records it. */
export interface ModuleEngine {
  /** `onnxruntime`, or the tfjs backend (`wasm`, `tensorflow`, `cpu`). */
  name: string;
  /** ONNX Runtime's intra-op threads. */
  threads?: number;
  /** tfjs worker threads (0: the main thread). */
  workers?: number;
}

export function describeEngine(e: ExtractEngine): ModuleEngine {
  // ORT's threads are its own intra-op pool; tfjs' are worker_threads, each with a copy of the module.
  return e.name === 'onnxruntime' ? { name: e.name, threads: e.workers } : { name: e.name, workers: e.workers };
}

export interface ComputeJob {
  file: string;
}

/**
 * Runs every job through decode → module, calling `done` with each bottleneck
 * (in no particular order) and `failed` for images that cannot be used. Batches are
 * fixed slices of `jobs`, so which worker runs one does not change its values.
 */
export async function computeBottlenecks<J extends ComputeJob>(
  jobs: J[],
  extractor: FeatureExtractor,
  opts: ComputeOptions<J>,
  done: (job: J, values: Float32Array) => void,
  failed: (file: string, reason: string, cause?: unknown) => void,
): Promise<{ workers: number; engine?: ModuleEngine }> {
  const batchSize = Math.max(1, opts.batchSize);
  const { inputSpec, info } = extractor;
  const pixels = inputSpec.height * inputSpec.width * 3;
  const batches: J[][] = [];
  for (let i = 0; i < jobs.length; i += batchSize) batches.push(jobs.slice(i, i + batchSize));
  if (batches.length === 0) return { workers: 0 };

  // Workers start (about a second each) while the first batches decode.
  const starting = startEngine(extractor, batches.length, opts.numWorkers, opts.log);
  starting.catch(() => {});
  const decode = pLimit(4);
  let engine: ExtractEngine | undefined;
  const inFlight = pLimit(2);
  const ready = starting.then((e) => {
    engine = e;
    // One batch decoding ahead of what the engine can run at once.
    inFlight.concurrency = e.concurrency + 1;
    return e;
  });

  const runBatch = async (batch: J[]): Promise<void> => {
    if (opts.shouldStop?.()) return;
    const input = new Float32Array(batch.length * pixels);
    const errors = await Promise.all(
      batch.map((job, i) =>
        decode(async () => {
          const img = await decodeImage(job.file);
          const out = input.subarray(i * pixels, (i + 1) * pixels);
          if (opts.toInput) opts.toInput(img, job, out);
          else toModuleInput(img, inputSpec, out);
        }).then(
          () => null,
          (err: unknown) => (err instanceof ImageError ? err : new ImageError(job.file, errorMessage(err), { cause: err })),
        ),
      ),
    );
    const ok: number[] = [];
    errors.forEach((e, i) => (e ? failed(e.file, e.reason, e.cause) : ok.push(i)));
    if (ok.length === 0 || opts.shouldStop?.()) return;
    let packed = input;
    if (ok.length < batch.length) {
      packed = new Float32Array(ok.length * pixels);
      ok.forEach((src, dst) => packed.set(input.subarray(src * pixels, (src + 1) * pixels), dst * pixels));
    }
    const e = await ready;
    const flat = await e.extractBatch(packed, ok.length);
    ok.forEach((src, k) => done(batch[src]!, flat.slice(k * info.bottleneckSize, (k + 1) * info.bottleneckSize)));
  };

  try {
    const tasks = batches.map((b) => inFlight(() => runBatch(b)));
    // Fail fast: the first error stops the run (--strict, a dead worker).
    await Promise.all(tasks);
    return { workers: engine?.workers ?? 0, engine: engine && describeEngine(engine) };
  } finally {
    inFlight.clearQueue();
    await (engine ?? (await starting.catch(() => undefined)))?.dispose();
  }
}
