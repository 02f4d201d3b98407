/**
 * Engines that turn a batch of module inputs into bottlenecks, asynchronously, so
 * the bottleneck stage can keep several batches in flight:
 * - in process: the loaded FeatureExtractor on the main thread;
 * - ONNX Runtime: the converted module, on ORT's own intra-op threads (one per core);
 * - a worker pool (the tfjs fallback): worker_threads, each with its own tfjs backend and its own copy
 *   of the module loaded from the same files. tfjs-wasm runs one thread per
 *   instance in Node, so this is how it uses more than one core.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { RetrainError, errorMessage } from '../errors.js';
import { activeBackend, type BackendChoice } from '../backend.js';
import type { Logger } from '../log.js';
import type { FusedMode } from './fused.js';
import type { FeatureExtractor, ModuleInfo } from './index.js';
import type { OnnxSession } from './onnx/index.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.js';

export interface ExtractEngine {
  /** What runs the forward pass, for the run summary: `onnxruntime`, or the tfjs backend (`wasm`, `tensorflow`, `cpu`). */
  name: string;
  /** Batches that can usefully be in flight at once. */
  concurrency: number;
  /** Threads that run inference (0: the main thread). */
  workers: number;
  /** `n` images of H*W*3 module input (the buffer may be transferred) → n * bottleneckSize values. */
  extractBatch(input: Float32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export function inProcessEngine(extractor: FeatureExtractor): ExtractEngine {
  const { height, width } = extractor.inputSpec;
  return {
    name: tf.getBackend(),
    concurrency: 1,
    workers: 0,
    async extractBatch(input, n) {
      const out = tf.tidy(() => extractor.extract(tf.tensor4d(input, [n, height, width, 3])));
      try {
        return (await out.data()) as Float32Array;
      } finally {
        out.dispose();
      }
    },
    dispose: async () => {},
  };
}

/** --num_workers default: one per core for the JS engines; native TensorFlow threads by itself. */
export function defaultNumWorkers(backendName: string): number {
  return backendName === 'tensorflow' ? 0 : os.availableParallelism();
}

export interface PoolOptions {
  workers: number;
  /** The backend each worker initialises (the one the main thread runs). */
  backend: BackendChoice;
  fused?: FusedMode;
}

interface Pending {
  resolve(v: Float32Array): void;
  reject(e: Error): void;
}

class PoolWorker {
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  busy = 0;
  readonly ready: Promise<void>;
  private failure: Error | undefined;
  constructor(readonly worker: Worker) {
    this.ready = new Promise((resolve, reject) => {
      worker.on('message', (m: WorkerReply) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'init-error') reject(new RetrainError(`bottleneck worker could not load the module: ${m.message}`));
        else if (m.type === 'result') this.settle(m.seq, m.output);
        else if (m.type === 'error') this.settle(m.seq, undefined, new RetrainError(`bottleneck worker failed: ${m.message}`));
      });
      const die = (err: Error) => {
        this.failure = err;
        reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      };
      worker.on('error', (err) => die(new RetrainError(`bottleneck worker crashed: ${errorMessage(err)}`, 1, { cause: err })));
      worker.on('exit', (code) => {
        if (this.pending.size > 0 || code !== 0) die(new RetrainError(`bottleneck worker exited with code ${code}`));
      });
    });
    this.ready.catch(() => {}); // observed through run()
  }
  private settle(seq: number, output?: Float32Array, err?: Error): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    this.busy--;
    if (err) p.reject(err);
    else p.resolve(output!);
  }
  run(input: Float32Array, n: number): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = this.seq++;
    this.busy++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      const msg: WorkerRequest = { type: 'batch', seq, input, n };
      this.worker.postMessage(msg, [input.buffer as ArrayBuffer]);
    });
  }
}

/**
 * Starts `workers` threads that each load the module from `info.path` and check
 * that they computed the same module id. Resolves once all are ready.
 */
export async function startWorkerPool(info: ModuleInfo, opts: PoolOptions): Promise<ExtractEngine> {
  const init: WorkerInit = {
    modelPath: info.path,
    bottleneckLayer: info.bottleneckTensor,
    inputRange: info.inputRange,
    inputHeight: info.inputHeight,
    inputWidth: info.inputWidth,
    backend: opts.backend,
    moduleId: info.id,
    fused: opts.fused ?? true,
  };
  const url = new URL('./worker.js', import.meta.url);
  const pool = Array.from({ length: opts.workers }, () => new PoolWorker(new Worker(url, { workerData: init })));
  const terminate = async () => {
    await Promise.all(pool.map((p) => p.worker.terminate()));
  };
  try {
    await Promise.all(pool.map((p) => p.ready));
  } catch (err) {
    await terminate();
    throw err;
  }
  return {
    // Workers run the main thread's backend (workerBackend).
    name: tf.getBackend(),
    // One batch running and one queued per worker keeps each busy while results travel back.
    concurrency: pool.length * 2,
    workers: pool.length,
    extractBatch(input, n) {
      const idle = pool.reduce((a, b) => (b.busy < a.busy ? b : a));
      return idle.run(input, n);
    },
    dispose: terminate,
  };
}

/**
 * One batch runs in ORT (off the main thread, on all cores) while the next ones
 * decode: runs are queued here, one at a time, so two never split the cores.
 */
export function onnxEngine(session: OnnxSession, height: number, width: number): ExtractEngine {
  let last: Promise<unknown> = Promise.resolve();
  return {
    name: 'onnxruntime',
    // One batch running and one decoded, waiting for it.
    concurrency: 2,
    workers: session.threads,
    extractBatch(input, n) {
      const run = last.then(() => session.run(input, n, height, width));
      last = run.catch(() => {});
      return run;
    },
    // The session belongs to the module (distorted variants reuse it); the module's dispose releases it.
    dispose: async () => {},
  };
}

/** The ONNX Runtime engine when the module runs there (opening its session on first use), else undefined. */
async function moduleOnnxEngine(extractor: FeatureExtractor): Promise<ExtractEngine | undefined> {
  const session = await extractor.onnx?.session();
  return session && onnxEngine(session, extractor.inputSpec.height, extractor.inputSpec.width);
}

/** The module's forward pass on the main thread's side: ONNX Runtime when the module runs there, else the loaded extractor. */
export async function forwardEngine(extractor: FeatureExtractor): Promise<ExtractEngine> {
  return (await moduleOnnxEngine(extractor)) ?? inProcessEngine(extractor);
}

/** The backend choice that makes a worker run what the main thread runs. */
function workerBackend(): BackendChoice {
  const b = activeBackend();
  if (!b) return 'auto';
  return b.name === 'wasm' || b.name === 'cpu' ? b.name : b.requested;
}

/** ONNX Runtime when the module runs there, else the engine --num_workers asks for (never more workers than batches). */
export async function startEngine(extractor: FeatureExtractor, batches: number, numWorkers: number | undefined, log: Logger): Promise<ExtractEngine> {
  const ort = await moduleOnnxEngine(extractor);
  if (ort) return ort;
  const wanted = numWorkers ?? defaultNumWorkers(activeBackend()?.name ?? 'cpu');
  const workers = Math.min(wanted, batches);
  if (workers <= 0) return inProcessEngine(extractor);
  let engine: ExtractEngine;
  try {
    const start = (fused: FusedMode) => startWorkerPool(extractor.info, { workers, backend: workerBackend(), fused });
    // The fused-kernel check runs once, here, while the workers start; they trust its verdict.
    const fused = extractor.kind === 'layers' && extractor.fused;
    const optimistic = fused ? start('trusted') : start(false);
    if (fused && extractor.kind === 'layers' && !extractor.verifyFused()) {
      await (await optimistic.catch(() => undefined))?.dispose();
      engine = await start(false);
    } else engine = await optimistic;
  } catch (err) {
    // Slower, but the run still completes: the main thread has the module loaded already.
    log.warn(`${errorMessage(err)}; computing bottlenecks on the main thread instead (--num_workers 0)`);
    return inProcessEngine(extractor);
  }
  log.info(`Running the module in ${workers} worker thread${workers === 1 ? '' : 's'}`);
  return engine;
}
