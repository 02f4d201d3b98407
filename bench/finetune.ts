/**
 * Cost of one fine-tuning step (--fine_tune_layers) on ../shared's MobileNet V2 1.0
 * 224, by number of unfrozen layers, on the wasm backend. Images are random tensors,
 * so decoding is not counted. Prints ms per step (median of the steps after the
 * first, which also moves the variables). Run with `node dist/bench/finetune.js [batch] [steps] [layers,...]`.
 */
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { fineTune, forwardSplit, gradientBackend, splitModule } from '../src/finetune/index.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { Head } from '../src/train/index.js';
import { HAVE_SHARED, SHARED } from '../test/helpers/fixtures.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (!HAVE_SHARED) {
    console.log(`skipped: ../shared is absent (expected at ${SHARED})`);
    return;
  }
  const batch = Number(process.argv[2] ?? 16);
  const steps = Number(process.argv[3] ?? 4);
  const backend = await initBackend('wasm');
  const ex = await loadFeatureExtractor({ spec: path.join(SHARED, 'models', 'mobilenet_v2_100_224'), cacheDir: '', log: silentLogger });
  const { inputHeight: h, inputWidth: w, bottleneckSize } = ex.info;
  console.log(`backend ${backend.name}, batch ${batch}, ${steps} steps per setting`);
  for (const layers of (process.argv[4] ?? '1,4,8,16').split(',').map(Number)) {
    const head = new Head(bottleneckSize, 5, 1);
    const training = { x: new Float32Array(0), y: Int32Array.from({ length: 50 }, (_, i) => i % 5), files: Array.from({ length: 50 }, (_, i) => `img${i}`) };
    const stamps: number[] = [];
    const log = { ...silentLogger, progress: () => void stamps.push(performance.now()) };
    const split = splitModule(ex, layers);
    const top = gradientBackend(split);
    // The split forward (basic-op convolutions) must give the module's own features.
    const probe = tf.randomUniform([2, h, w, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(forwardSplit(split, probe), ex.extract(probe)))).dataSync()[0]!);
    probe.dispose();
    const t0 = performance.now();
    await fineTune(ex, head, training, {
      layers,
      steps,
      learningRate: 0.001,
      batchSize: batch,
      evalStepInterval: steps,
      seed: 1,
      optimizer: 'sgd',
      batches: async (files, step) => tf.randomUniform([files.length, h, w, 3], -1, 1, 'float32', step + 1) as tf.Tensor4D,
      log,
    });
    const per = stamps.slice(1).map((t, i) => t - stamps[i]!);
    console.log(`fine_tune_layers ${String(layers).padStart(2)}: top on ${top.padEnd(4)} first step ${(stamps[0]! - t0).toFixed(0)} ms, then ${median(per).toFixed(0)} ms/step (${(median(per) / batch).toFixed(0)} ms/image); max |split - module| ${diff.toExponential(1)}`);
    head.dispose();
  }
  ex.dispose();
}

await main();
