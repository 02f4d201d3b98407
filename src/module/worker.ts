/** A bottleneck worker thread: its own tfjs backend and module copy; batches in, bottlenecks out. */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice } from '../backend.js';
import { errorMessage } from '../errors.js';
import { silentLogger } from '../log.js';
import type { FusedMode } from './fused.js';
import { loadFeatureExtractor, type FeatureExtractor } from './index.js';

export interface WorkerInit {
  modelPath: string;
  bottleneckLayer: string;
  inputRange: [number, number];
  inputHeight: number;
  inputWidth: number;
  backend: BackendChoice;
  moduleId: string;
  fused: FusedMode;
}

export type WorkerRequest = { type: 'batch'; seq: number; input: Float32Array; n: number };

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'init-error'; message: string }
  | { type: 'result'; seq: number; output: Float32Array }
  | { type: 'error'; seq: number; message: string };

async function main(): Promise<void> {
  const port = parentPort!;
  const init = workerData as WorkerInit;
  let extractor: FeatureExtractor;
  try {
    await initBackend(init.backend);
    extractor = await loadFeatureExtractor({
      spec: init.modelPath,
      cacheDir: '',
      bottleneckLayer: init.bottleneckLayer,
      inputRange: init.inputRange,
      inputHeight: init.inputHeight,
      inputWidth: init.inputWidth,
      fused: init.fused,
      log: silentLogger,
    });
    if (extractor.info.id !== init.moduleId) throw new Error(`${init.modelPath} changed while loading (module id differs)`);
  } catch (err) {
    port.postMessage({ type: 'init-error', message: errorMessage(err) } satisfies WorkerReply);
    return;
  }
  const { inputHeight: h, inputWidth: w } = init;
  port.on('message', (m: WorkerRequest) => {
    try {
      const out = tf.tidy(() => extractor.extract(tf.tensor4d(m.input, [m.n, h, w, 3])));
      // A copy of its own, so it can be transferred (tfjs may hand out a view of backend memory).
      const output = new Float32Array(out.dataSync() as Float32Array);
      out.dispose();
      port.postMessage({ type: 'result', seq: m.seq, output } satisfies WorkerReply, [output.buffer as ArrayBuffer]);
    } catch (err) {
      port.postMessage({ type: 'error', seq: m.seq, message: errorMessage(err) } satisfies WorkerReply);
    }
  });
  port.postMessage({ type: 'ready' } satisfies WorkerReply);
}

await main();
