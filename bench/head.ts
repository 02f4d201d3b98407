/**
 * `node dist/bench/head.js [--steps 4000] [--rows 480] [--backend auto]`
 *
 * Times the head's training as the default run does it: batch 100, a 1280-value
 * bottleneck, 5 classes, 480 training rows (flowers-dev's) and 60 validation rows, an
 * evaluation every 10 steps. Small training sets take the dual step, large ones the
 * primal one (`DualSgdSteps.pays` in train/step.ts): `--rows 2936`, the full
 * flower_photos' training set, times the primal one. The rows are synthetic (training
 * time does not depend on the values). Also times the primal step's weight gradient
 * xᵀ·g both ways, which is why it transposes around a plain product. Prints one JSON
 * line with the machine's load average.
 */
import os from 'node:os';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice } from '../src/backend.js';
import { intArg } from '../src/cli/common.js';
import type { LabeledSet } from '../src/train/index.js';
import { DualSgdSteps } from '../src/train/step.js';
import { round } from './anchor.js';
import { timeHeadTraining } from './head_timing.js';

const f = new Command('bench-head')
  .option('--steps <n>', 'training steps', intArg('--steps'), 4000)
  .option('--rows <n>', 'training rows', intArg('--rows'), 480)
  .option('--backend <name>', 'tfjs backend', 'auto')
  .parse()
  .opts<{ steps: number; rows: number; backend: BackendChoice }>();

const D = 1280;
const C = 5;
const B = 100;

function rows(n: number, seed: number): LabeledSet {
  let s = seed;
  const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const x = new Float32Array(n * D);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % C;
    for (let j = 0; j < D; j++) x[i * D + j] = rnd() * (j % C === y[i] ? 1.5 : 1);
  }
  return { x, y, files: Array.from({ length: n }, (_, i) => `row${i}`) };
}

/** Microseconds per call of `f`, best of 5 blocks (the machine may be shared). */
function usPerCall(f: () => void, calls = 300): number {
  let best = Infinity;
  for (let block = 0; block < 5; block++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) f();
    best = Math.min(best, ((performance.now() - t0) / calls) * 1000);
  }
  return round(best, 0);
}

const loadBefore = os.loadavg()[0]!;
const backend = await initBackend(f.backend);
const training = rows(f.rows, 1);
const validation = rows(60, 2);
const runs: Array<{ s: number; cpu_s: number }> = [];
for (let run = 0; run < 3; run++) runs.push(await timeHeadTraining(training, validation, C, D, f.steps, B));

// A fresh batch and fresh g each call, as in training: the operands change every step.
const x0 = training.x.subarray(0, B * D);
const g0 = new Float32Array(B * C).fill(0.01);
const gradient = (transposeFirst: boolean) => () =>
  tf.tidy(() => {
    const x = tf.tensor2d(x0, [B, D]);
    const g = tf.tensor2d(g0, [B, C]);
    (transposeFirst ? tf.matMul(x, g, true, false) : tf.transpose(tf.matMul(tf.transpose(g), x))).dataSync();
  });

process.stdout.write(
  JSON.stringify({
    backend: backend.name,
    steps: f.steps,
    training_rows: f.rows,
    step: DualSgdSteps.pays(f.rows, D, f.steps, B) ? 'dual' : 'primal',
    train_batch_size: B,
    bottleneck: D,
    classes: C,
    runs,
    best_s: Math.min(...runs.map((r) => r.s)),
    gradient_us: { transposed_operand: usPerCall(gradient(true)), transposed_around: usPerCall(gradient(false)) },
    load_average_before: round(loadBefore, 2),
    load_average_after: round(os.loadavg()[0]!, 2),
  }) + '\n',
);
