import { defaultRetrainOptions, validateRetrainOptions } from '../src/flags/retrain.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { Head, predictSet, trainHead, type LabeledSet } from '../src/train/index.js';
import { MemoryLogger } from '../src/log.js';
import { UsageError } from '../src/errors.js';
import { useCpuBackend } from './helpers/fixtures.js';

/** Gaussian blobs around one centre per class: linearly separable bottlenecks. */
function blobs(n: number, size: number, classes: number, seed: number, spread = 0.3): LabeledSet {
  const rng = seedrandom(String(seed));
  const centres = Array.from({ length: classes }, (_, k) => Float32Array.from({ length: size }, (_, j) => ((j + k) % classes === 0 ? 1 : 0)));
  const x = new Float32Array(n * size);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let j = 0; j < size; j++) x[i * size + j] = centres[y[i]!]![j]! + (rng() - 0.5) * spread;
  }
  return { x, y, files: Array.from({ length: n }, (_, i) => `img${i}.jpg`) };
}

const opts = (log = new MemoryLogger()) => ({
  steps: 200,
  learningRate: 0.5,
  trainBatchSize: 16,
  validationBatchSize: -1,
  evalStepInterval: 50,
  seed: 0,
  log,
});

test('head: truncated normal init with stddev 0.001 and zero biases', async () => {
  await useCpuBackend();
  const head = new Head(400, 50, 1);
  const w = Array.from(head.weights.dataSync() as Float32Array);
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const sd = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 1e-4, `mean ${mean}`);
  assert.ok(sd > 0.0008 && sd < 0.001, `stddev ${sd}`);
  assert.ok(w.every((v) => Math.abs(v) <= 0.002), 'truncated at two standard deviations');
  assert.ok(head.biases.dataSync().every((v) => v === 0));
  const p = head.probabilities(tf.ones([2, 400]) as tf.Tensor2D).arraySync();
  for (const row of p) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  head.dispose();
});

test('trainHead: learns separable data, logs retrain.py lines at the right steps', async () => {
  await useCpuBackend();
  const train = blobs(120, 6, 3, 1);
  const val = blobs(30, 6, 3, 2);
  const log = new MemoryLogger();
  const evals: number[] = [];
  const r = await trainHead(train, val, 3, 6, { ...opts(log), onEval: (p) => void evals.push(p.step) });
  // Evaluations at step 0, every interval, and the last step.
  assert.deepEqual(evals, [0, 50, 100, 150, 199]);
  assert.deepEqual(r.history.map((h) => h.step), evals);
  assert.ok(r.history[0]!.crossEntropy > r.final.crossEntropy, 'cross entropy goes down');
  assert.equal(r.final.validationAccuracy, 1);
  assert.equal(r.final.validationN, 30, '-1 evaluates the whole validation set');
  assert.ok(log.lines.includes('INFO: Step 199: Validation accuracy = 100.0% (N=30)'), log.lines.join('\n'));
  assert.ok(log.lines.some((l) => /^INFO: Step 0: Train accuracy = \d+\.\d%$/.test(l)));
  assert.ok(log.lines.some((l) => /^INFO: Step 150: Cross entropy = \d+\.\d{6}$/.test(l)));
  const test1 = predictSet(r.head, blobs(20, 6, 3, 9), 6, -1, 3);
  assert.equal(test1.metrics.n, 20);
  assert.equal(test1.metrics.accuracy, 1);
  assert.equal(test1.predictions.length, 20);
  for (const p of test1.predictions) {
    assert.equal(p.predictedIndex, p.trueIndex);
    assert.equal(p.score, Math.max(...p.probabilities));
  }
  r.head.dispose();
});

test('trainHead: the same seed gives the same numbers; another seed does not', async () => {
  await useCpuBackend();
  const train = blobs(60, 5, 3, 4, 2.5);
  const val = blobs(30, 5, 3, 5, 2.5);
  const run = async (seed: number) => {
    const r = await trainHead(train, val, 3, 5, { ...opts(), seed, validationBatchSize: 10 });
    const w = Array.from(r.head.weights.dataSync());
    r.head.dispose();
    return { history: r.history, w };
  };
  // Seed 0 (the default) included: tfjs treats a 0 seed as none.
  for (const seed of [0, 7]) {
    const a = await run(seed);
    const b = await run(seed);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.w, (await run(seed + 1)).w);
  }
});

test('trainHead: a validation batch size draws that many, with replacement', async () => {
  await useCpuBackend();
  const r = await trainHead(blobs(30, 4, 2, 1), blobs(5, 4, 2, 2), 2, 4, { ...opts(), steps: 3, evalStepInterval: 1, validationBatchSize: 12 });
  assert.deepEqual(r.history.map((h) => h.validationN), [12, 12, 12]);
  r.head.dispose();
});

test('training flags are checked', () => {
  for (const [k, v, re] of [
    ['howManyTrainingSteps', 0, /--how_many_training_steps 0/],
    ['trainBatchSize', -5, /--train_batch_size -5/],
    ['validationBatchSize', 0, /--validation_batch_size 0/],
    ['evalStepInterval', 1.5, /--eval_step_interval 1.5/],
    ['learningRate', 0, /--learning_rate 0/],
  ] as const) {
    assert.throws(() => validateRetrainOptions({ ...defaultRetrainOptions(), imageDir: 'x', [k]: v }), (e: Error) => e instanceof UsageError && re.test(e.message));
  }
});
