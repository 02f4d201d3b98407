/**
 * Cost of fine-tuning (--fine_tune_layers) on cached activations, on the built-in
 * MobileNet V2 module, by number of unfrozen layers, on the active backend (wasm by
 * default): ms per image of a training step of the top and a 5-class head (forward and
 * backward), and of the top's forward pass alone (validation, test). Activations are
 * random, so the frozen bottom (run once per image on ONNX Runtime, then cached) is not
 * counted. Run with `node dist/bench/finetune.js [batch] [steps] [layers,...]`.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { GraphTop, needsBasicOps, splitModule } from '../src/finetune/index.js';
import { silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor } from '../src/module/index.js';
import { Head } from '../src/train/index.js';
import { headLoss } from '../src/train/options.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const batch = Number(process.argv[2] ?? 32);
  const steps = Number(process.argv[3] ?? 4);
  const backend = await initBackend('wasm');
  const ex = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: silentLogger });
  const basic = needsBasicOps();
  console.log(`backend ${backend.name}, batch ${batch}, ${steps} steps per setting, basic-op convolutions: ${basic}`);
  for (const layers of (process.argv[4] ?? '1,2,4,8').split(',').map(Number)) {
    const { graph, split } = await splitModule(ex, layers);
    const top = new GraphTop(graph, split);
    const head = new Head(ex.info.bottleneckSize, 5, 1);
    const opt = tf.train.sgd(0.001);
    const vars = [...top.variables.values(), ...head.variables];
    const x = tf.randomUniform([batch, ...split.cutShape], 0, 3, 'float32', 1);
    const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 5), 'int32');
    const train: number[] = [];
    const fwd: number[] = [];
    // CPU time too: on a shared machine wall time mostly measures the other processes.
    let cpuTrain = 0;
    for (let s = 0; s <= steps; s++) {
      let t0 = performance.now();
      const u0 = process.cpuUsage();
      const c = opt.minimize(() => headLoss(head.logits(top.forward(x, basic), true), y, 5), true, vars)!;
      await c.data();
      c.dispose();
      if (s > 0) {
        train.push(performance.now() - t0);
        const u = process.cpuUsage(u0);
        cpuTrain += (u.user + u.system) / 1000;
      }
      t0 = performance.now();
      const b = top.forward(x, basic);
      await b.data();
      b.dispose();
      if (s > 0) fwd.push(performance.now() - t0);
    }
    const values = [...top.variables.values()].reduce((n, v) => n + v.size, 0);
    console.log(
      `fine_tune_layers ${String(layers).padStart(2)}: activation [${split.cutShape.join(',')}], ${values} trainable values; ` +
        `train ${(median(train) / batch).toFixed(1)} ms/image (CPU ${(cpuTrain / steps / batch).toFixed(1)} ms/image), forward ${(median(fwd) / batch).toFixed(1)} ms/image; load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`,
    );
    tf.dispose([x, y]);
    opt.dispose();
    head.dispose();
    top.dispose();
  }
  ex.dispose();
}

await main();
