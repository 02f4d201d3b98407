import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DualSgdSteps, sgdStep } from '../src/train/step.js';
import { useCpuBackend } from './helpers/fixtures.js';

before(useCpuBackend);

test('the written-out step makes the same update as tf.train.sgd on softmax cross entropy', () => {
  const d = 24;
  const c = 4;
  const x = tf.randomNormal([30, d], 0, 1, 'float32', 1) as tf.Tensor2D;
  const y = tf.tensor1d(Array.from({ length: 30 }, (_, i) => (i * 7) % c), 'int32');
  const make = (name: string) => ({
    weights: tf.variable(tf.randomNormal([d, c], 0, 0.1, 'float32', 2), true, `${name}_w`),
    biases: tf.variable(tf.randomNormal([c], 0, 0.1, 'float32', 3), true, `${name}_b`),
    classCount: c,
  });
  const ours = make('ours');
  const ref = make('ref');
  const sgd = tf.train.sgd(0.5);
  for (let step = 0; step < 20; step++) {
    sgdStep(ours, x, y, 0.5);
    tf.tidy(() => {
      sgd.minimize(() => tf.losses.softmaxCrossEntropy(tf.oneHot(y, c), tf.add(tf.matMul(x, ref.weights), ref.biases)) as tf.Scalar, false, [ref.weights, ref.biases]);
    });
  }
  const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
  const moved = diff(ours.weights, tf.randomNormal([d, c], 0, 0.1, 'float32', 2));
  assert.ok(moved > 0.05, 'the weights did not move');
  assert.ok(diff(ours.weights, ref.weights) < 1e-5, `weights differ by ${diff(ours.weights, ref.weights)}`);
  assert.ok(diff(ours.biases, ref.biases) < 1e-5, `biases differ by ${diff(ours.biases, ref.biases)}`);
});

test('the dual form (train/step.ts DualSgdSteps) makes the same updates as the written-out step', () => {
  const n = 40;
  const d = 48;
  const c = 3;
  const rows = tf.randomNormal([n, d], 0, 1, 'float32', 4).dataSync() as Float32Array;
  const labels = Int32Array.from({ length: n }, (_, i) => i % c);
  const make = (name: string) => ({
    weights: tf.variable(tf.randomNormal([d, c], 0, 0.1, 'float32', 5), true, `${name}_w`),
    biases: tf.variable(tf.zeros([c]), true, `${name}_b`),
    classCount: c,
  });
  const primal = make('primal');
  const dual = make('dual');
  const steps = new DualSgdSteps(dual, rows, labels, 0.3, 16);
  let s = 7;
  const rnd = () => (s = (s * 16807) % 2147483647) % n;
  for (let step = 0; step < 60; step++) {
    // Duplicates in a batch, as sampling with replacement gives.
    const idx = Int32Array.from({ length: 16 }, () => rnd());
    const x = tf.tensor2d(Float32Array.from(Array.from(idx).flatMap((r) => Array.from(rows.subarray(r * d, (r + 1) * d)))), [16, d]);
    const y = tf.tensor1d(Array.from(idx, (r) => labels[r]!), 'int32');
    sgdStep(primal, x, y, 0.3);
    steps.step(idx);
    tf.dispose([x, y]);
  }
  steps.syncHead();
  steps.dispose();
  const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
  const moved = tf.tidy(() => diff(primal.weights, tf.randomNormal([d, c], 0, 0.1, 'float32', 5)));
  assert.ok(moved > 0.05, `the weights moved only ${moved}`);
  assert.ok(diff(primal.weights, dual.weights) < 1e-5, `weights differ by ${diff(primal.weights, dual.weights)}`);
  assert.ok(diff(primal.biases, dual.biases) < 1e-5, `biases differ by ${diff(primal.biases, dual.biases)}`);
});
