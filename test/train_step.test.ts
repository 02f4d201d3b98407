import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { sgdStep } from '../src/train/step.js';
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
