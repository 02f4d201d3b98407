import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { trainHead, type LabeledSet, type TrainOptions } from '../src/train/index.js';
import { EarlyStopping, classWeights, headLoss } from '../src/train/options.js';
import { defaultRetrainOptions, validateRetrainOptions } from '../src/flags/retrain.js';
import { MemoryLogger } from '../src/log.js';
import { UsageError } from '../src/errors.js';
import fs from 'node:fs';
import path from 'node:path';
import { makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

/** XOR of the signs of two coordinates: no linear head separates it, one hidden layer does. */
function xor(n: number, seed: number): LabeledSet {
  const rng = seedrandom(String(seed));
  const x = new Float32Array(n * 2);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const a = rng() * 2 - 1;
    const b = rng() * 2 - 1;
    x[i * 2] = a;
    x[i * 2 + 1] = b;
    y[i] = a * b > 0 ? 1 : 0;
  }
  return { x, y, files: Array.from({ length: n }, (_, i) => `img${i}.jpg`) };
}

/** Two blobs; class 0 has `big` rows, class 1 `small`, overlapping so the imbalance matters. */
function imbalanced(big: number, small: number, seed: number): LabeledSet {
  const rng = seedrandom(String(seed));
  const n = big + small;
  const x = new Float32Array(n);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i < big ? 0 : 1;
    x[i] = (y[i] === 0 ? -0.3 : 0.3) + (rng() - 0.5) * 2;
  }
  return { x, y, files: Array.from({ length: n }, (_, i) => `img${i}.jpg`) };
}

const base = (extra: Partial<TrainOptions> = {}): TrainOptions => ({
  steps: 300,
  learningRate: 0.05,
  trainBatchSize: 32,
  validationBatchSize: -1,
  evalStepInterval: 50,
  seed: 3,
  log: new MemoryLogger(),
  ...extra,
});

test('classWeights: balanced is n / (classes * n_class); none is all ones', () => {
  const y = Int32Array.from([0, 0, 0, 1, 2, 2]);
  assert.deepEqual(Array.from(classWeights(y, 3, 'none')), [1, 1, 1]);
  const w = Array.from(classWeights(y, 3, 'balanced'));
  [6 / 9, 6 / 3, 6 / 6].forEach((want, k) => assert.ok(Math.abs(w[k]! - want) < 1e-6, `class ${k}: ${w[k]} vs ${want}`));
});

test('headLoss: label smoothing and class weights follow their formulas', async () => {
  await useCpuBackend();
  const logits = tf.tensor2d([[2, 0, -1], [0.5, 1.5, 0]]);
  const y = tf.tensor1d([0, 1], 'int32');
  const logp = tf.logSoftmax(logits).arraySync();
  const ce = (row: number[], target: number[]) => -row.reduce((s, v, k) => s + v * target[k]!, 0);
  const plain = headLoss(logits, y, 3).dataSync()[0]!;
  assert.ok(Math.abs(plain - (ce(logp[0]!, [1, 0, 0]) + ce(logp[1]!, [0, 1, 0])) / 2) < 1e-5);
  // Smoothing 0.3 over 3 classes: targets 1 - 0.3 + 0.1 and 0.1.
  const smooth = headLoss(logits, y, 3, 0.3).dataSync()[0]!;
  const want = (ce(logp[0]!, [0.8, 0.1, 0.1]) + ce(logp[1]!, [0.1, 0.8, 0.1])) / 2;
  assert.ok(Math.abs(smooth - want) < 1e-5, `${smooth} vs ${want}`);
  const weighted = headLoss(logits, y, 3, 0, Float32Array.from([3, 0.5, 1])).dataSync()[0]!;
  assert.ok(Math.abs(weighted - (3 * ce(logp[0]!, [1, 0, 0]) + 0.5 * ce(logp[1]!, [0, 1, 0])) / 2) < 1e-5);
});

test('headLoss: with label smoothing its gradient is (softmax - smoothed target) / N, as optimizers see it', async () => {
  await useCpuBackend();
  const logits = tf.tensor2d([[2, 0, -1], [0.5, 1.5, 0]]);
  const y = tf.tensor1d([0, 1], 'int32');
  const grad = tf.grad((l: tf.Tensor) => headLoss(l as tf.Tensor2D, y, 3, 0.3))(logits).arraySync() as number[][];
  const p = tf.softmax(logits).arraySync();
  const target = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]];
  grad.forEach((row, i) => row.forEach((g, k) => assert.ok(Math.abs(g - (p[i]![k]! - target[i]![k]!) / 2) < 1e-6, `[${i},${k}] ${g}`)));
});

test('options are checked with one clear line each', () => {
  const bad: Array<[object, RegExp]> = [
    [{ optimizer: 'rmsprop' }, /--optimizer rmsprop is not one of sgd, momentum, adam/],
    [{ hiddenUnits: -1 }, /--hidden_units/],
    [{ dropout: 1 }, /--dropout 1 must be at least 0 and below 1/],
    [{ labelSmoothing: -0.1 }, /--label_smoothing/],
    [{ classWeighting: 'auto' }, /--class_weighting auto/],
    [{ earlyStoppingPatience: 1.5 }, /--early_stopping_patience/],
  ];
  for (const [o, msg] of bad) {
    assert.throws(() => validateRetrainOptions({ ...defaultRetrainOptions(), imageDir: 'x', ...o }), (e: Error) => e instanceof UsageError && msg.test(e.message));
  }
});

test('--hidden_units learns XOR, which the linear head of retrain.py cannot', async () => {
  await useCpuBackend();
  const train = xor(400, 1);
  const val = xor(200, 2);
  const linear = await trainHead(train, val, 2, 2, base({ optimizer: 'adam' }));
  linear.head.dispose();
  const hidden = await trainHead(train, val, 2, 2, base({ optimizer: 'adam', hiddenUnits: 16 }));
  assert.ok(linear.final.validationAccuracy < 0.75, `linear ${linear.final.validationAccuracy}`);
  assert.ok(hidden.final.validationAccuracy > 0.9, `hidden ${hidden.final.validationAccuracy}`);
  const v = await hidden.head.values();
  assert.equal(v.hidden?.weights.length, 2 * 16);
  assert.equal(v.weights.length, 16 * 2);
  hidden.head.dispose();
});

test('optimizers: adam and momentum get further than sgd in the same steps; same seed, same head', async () => {
  await useCpuBackend();
  const train = xor(300, 5);
  const opts = { steps: 40, learningRate: 0.01, hiddenUnits: 8 };
  const ce: Record<string, number> = {};
  for (const optimizer of ['sgd', 'momentum', 'adam'] as const) {
    const r = await trainHead(train, train, 2, 2, base({ ...opts, optimizer }));
    ce[optimizer] = r.final.validationCrossEntropy;
    r.head.dispose();
  }
  assert.ok(ce['adam']! < ce['sgd']! && ce['momentum']! < ce['sgd']!, JSON.stringify(ce));
  const run = async () => {
    const r = await trainHead(train, train, 2, 2, base({ ...opts, optimizer: 'adam', dropout: 0.3 }));
    const v = await r.head.values();
    r.head.dispose();
    return { v, ce: r.final.validationCrossEntropy };
  };
  const a = await run();
  const b = await run();
  assert.deepEqual(a, b);
  assert.notEqual(a.ce, ce['adam'], 'dropout changes training');
});

test('--class_weighting balanced raises recall of a small class', async () => {
  await useCpuBackend();
  const train = imbalanced(300, 30, 7);
  const val = imbalanced(100, 100, 8);
  const recall1 = async (classWeighting: 'none' | 'balanced') => {
    const r = await trainHead(train, val, 2, 1, base({ steps: 400, learningRate: 0.5, classWeighting }));
    const p = r.head.probabilities(tf.tensor2d(val.x, [val.y.length, 1])).arraySync();
    r.head.dispose();
    const ones = p.filter((_, i) => val.y[i] === 1);
    return ones.filter((row) => row[1]! > row[0]!).length / ones.length;
  };
  const plain = await recall1('none');
  const balanced = await recall1('balanced');
  assert.ok(balanced > plain + 0.2, `recall of the small class: ${plain} unweighted, ${balanced} balanced`);
});

test('--early_stopping_patience stops after K evaluations without improvement and keeps the best head', async () => {
  await useCpuBackend();
  const train = xor(200, 11);
  const val = xor(100, 12);
  const log = new MemoryLogger();
  const seen = new Map<number, Awaited<ReturnType<import('../src/train/index.js').Head['values']>>>();
  const r = await trainHead(train, val, 2, 2, base({
    steps: 5000,
    learningRate: 0.02,
    optimizer: 'adam',
    hiddenUnits: 8,
    evalStepInterval: 10,
    earlyStoppingPatience: 3,
    log,
    onEval: async (p, h) => void seen.set(p.step, await h.values()),
  }));
  assert.equal(r.stoppedEarly, true);
  const last = r.history[r.history.length - 1]!;
  assert.ok(last.step < 4999, 'stopped before the last step');
  const best = r.history.find((p) => p.step === r.bestStep)!;
  assert.equal(best.validationAccuracy, Math.max(...r.history.map((p) => p.validationAccuracy)));
  // Three evaluations after the best, none better.
  assert.equal(r.history.indexOf(last) - r.history.indexOf(best), 3);
  assert.deepEqual(await r.head.values(), seen.get(r.bestStep!), 'the kept head is the best one');
  assert.ok(log.lines.some((l) => /has not improved for 3 evaluations; stopping and keeping the head of step \d+/.test(l)));
  r.head.dispose();
  const stop = new EarlyStopping(0);
  stop.update(0, 0.5);
  stop.update(1, 0.4);
  assert.equal(stop.shouldStop, false, 'patience 0 never stops');
});

test('retrain CLI: the training flags reach the head, the export and the summary; bad values exit 2', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green', 'blue'], perClass: 12 });
  const moduleDir = await makeLayersModel(path.join(root, 'module'));
  const args = (extra: string[]) => [
    '--image_dir', images, '--tfhub_module', moduleDir,
    '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', path.join(root, 'out'),
    '--output_labels', path.join(root, 'labels.txt'), '--summary_json', path.join(root, 'summary.json'),
    '--summaries_dir', path.join(root, 'logs'), '--how_many_training_steps', '200', '--eval_step_interval', '5',
    '--learning_rate', '0.05', '--backend', 'cpu', ...extra,
  ];
  const r = runCli('retrain', args(['--optimizer', 'adam', '--hidden_units', '5', '--dropout', '0.1', '--label_smoothing', '0.1', '--class_weighting', 'balanced', '--early_stopping_patience', '2']));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /has not improved for 2 evaluations; stopping and keeping the head of step \d+/);
  const summary = JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8'));
  assert.equal(summary.training.stopped_early, true);
  assert.ok(summary.training.best_step < 199);
  const json = JSON.parse(fs.readFileSync(path.join(root, 'out', 'model.json'), 'utf8'));
  const dense = json.modelTopology.config.layers.filter((l: { class_name: string }) => l.class_name === 'Dense');
  assert.deepEqual(dense.map((l: { config: { name: string; units: number } }) => [l.config.name, l.config.units]), [['final_result_hidden', 5], ['final_result', 3]]);
  const li = runCli('label-image', ['--graph', path.join(root, 'out'), '--image', path.join(images, 'blue', 'blue_000.png')]);
  assert.equal(li.status, 0, li.stderr);
  assert.match(li.stdout, /^blue /);
  for (const [flag, value, msg] of [
    ['--optimizer', 'rmsprop', /--optimizer/],
    ['--quantize_bytes', '3', /--quantize_bytes 3 must be 1 \(uint8\) or 2 \(float16\)/],
    ['--dropout', '1.5', /--dropout 1.5 must be at least 0 and below 1/],
    ['--fine_tune_layers', '-1', /--fine_tune_layers -1 must be 0 \(off\) or a whole number above 0/],
  ] as const) {
    const bad = runCli('retrain', args([flag, value]));
    assert.equal(bad.status, 2, `${flag} ${value}: ${bad.stderr}`);
    assert.match(bad.stderr, msg);
  }
});
