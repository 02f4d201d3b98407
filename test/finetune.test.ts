import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { labeledSet, type LabeledSet } from '../src/bottleneck/sets.js';
import { createImageLists } from '../src/dataset/index.js';
import { exportAccuracy } from '../src/export/evaluate.js';
import type { Graph, Node } from '../src/graph/ir.js';
import { activationExtractor } from '../src/finetune/activations.js';
import { GraphTop, fineTune, keepsEpoch, splitModule, topBottlenecks, type GraphSplit } from '../src/finetune/index.js';
import { plainImageBatches } from '../src/image/batches.js';
import { MemoryLogger } from '../src/log.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { DEFAULT_MODULE, loadFeatureExtractor } from '../src/module/index.js';
import { folderSaveHandler, readModelFiles } from '../src/module/io.js';
import { Head } from '../src/train/index.js';
import { REPO_ROOT, makeImageDir, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

/** A module with a residual connection: conv 3x3 → depthwise 3x3 → add(c2, c1) → conv 1x1 → depthwise 3x3 stride 2 → pool. */
async function makeResidualModel(dir: string): Promise<string> {
  await useCpuBackend();
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const input = tf.input({ shape: [32, 32, 3] });
  const c1 = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'c1', kernelInitializer: init(1) }).apply(input) as tf.SymbolicTensor;
  const c2 = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu', name: 'c2', depthwiseInitializer: init(2), biasInitializer: 'ones' }).apply(c1) as tf.SymbolicTensor;
  const sum = tf.layers.add({ name: 'add' }).apply([c2, c1]) as tf.SymbolicTensor;
  const c3 = tf.layers.conv2d({ filters: 6, kernelSize: 1, activation: 'relu', name: 'c3', kernelInitializer: init(3) }).apply(sum) as tf.SymbolicTensor;
  const c4 = tf.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', name: 'c4', depthwiseInitializer: init(4), biasInitializer: 'ones' }).apply(c3) as tf.SymbolicTensor;
  const pool = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(c4) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: pool });
  await model.save(folderSaveHandler(dir));
  model.dispose();
  return dir;
}

/** In the order retrain lists them (sorted). */
const CLASSES = ['blue', 'green', 'red'];

test('splitModule: the top N layers with weights and the single value below them; a skip connection moves the cut down', async () => {
  await useCpuBackend();
  const ex = await loadFeatureExtractor({ spec: await makeResidualModel(tempDir()), cacheDir: '', log: new MemoryLogger() });
  const two = (await splitModule(ex, 2)).split;
  assert.deepEqual(two.layers, ['c3', 'c4']);
  assert.equal(two.cut, 'add');
  assert.deepEqual(two.cutShape, [32, 32, 4]);
  const three = (await splitModule(ex, 3)).split;
  assert.deepEqual(three.layers, ['c2', 'c3', 'c4']);
  assert.equal(three.cut, 'c1', 'c2 and the skip connection both read c1');
  await assert.rejects(splitModule(ex, 5), /--fine_tune_layers 5 is more than the 4 layers with weights/);
  ex.dispose();

  // MobileNet V2 (the built-in graph module): top 4 = block 16 and Conv_1, entered by block 15's output.
  const builtin = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: new MemoryLogger() });
  const four = (await splitModule(builtin, 4)).split;
  assert.match(four.cut, /expanded_conv_15\/add$/);
  assert.deepEqual(four.cutShape, [7, 7, 160]);
  // Top 5 starts at block 15's project conv, but block 15's residual add also reads block 14's output: the cut moves below it.
  const five = (await splitModule(builtin, 5)).split;
  assert.match(five.cut, /expanded_conv_14\/add$/);
  assert.equal(five.layers.length, 5);
  assert.ok(five.top.some((n) => /expanded_conv_15\/expand/.test(n.name)) && !five.layers.some((l) => /expanded_conv_15\/expand/.test(l)), 'the extra nodes run in the top but stay frozen');
  builtin.dispose();
});

/** A hand-built graph with every convolution form the basic-op path covers. */
function convGraph(): { graph: Graph; split: GraphSplit } {
  const r = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) * 0.5);
  const weights = new Map([
    ['k1', { data: r(3 * 3 * 3 * 4, 1), shape: [3, 3, 3, 4] }],
    ['b1', { data: r(4, 2), shape: [4] }],
    ['d2', { data: r(3 * 3 * 4, 3), shape: [3, 3, 4, 1] }],
    ['d3', { data: r(3 * 3 * 4, 4), shape: [3, 3, 4, 1] }],
    ['k4', { data: r(4 * 5, 5), shape: [1, 1, 4, 5] }],
    ['g', { data: r(5, 6).map((v) => 1 + v), shape: [5] }],
    ['o', { data: r(5, 7), shape: [5] }],
    ['m', { data: r(5, 8), shape: [5] }],
    ['v', { data: r(5, 9).map((v) => 1 + Math.abs(v)), shape: [5] }],
  ]);
  const nodes: Node[] = [
    { op: 'input', name: 'x', shape: [-1, 9, 9, 3] },
    { op: 'conv2d', name: 'c1', x: 'x', filter: 'k1', bias: 'b1', strides: [1, 1], dilations: [1, 1], padding: 'SAME', activation: 'relu6', shape: [-1, 9, 9, 4] },
    { op: 'depthwise_conv2d', name: 'c2', x: 'c1', filter: 'd2', strides: [2, 2], dilations: [1, 1], padding: 'SAME', activation: 'linear', shape: [-1, 5, 5, 4] },
    { op: 'depthwise_conv2d', name: 'c3', x: 'c2', filter: 'd3', strides: [1, 1], dilations: [1, 1], padding: 'VALID', activation: 'relu', shape: [-1, 3, 3, 4] },
    { op: 'conv2d', name: 'c4', x: 'c3', filter: 'k4', strides: [1, 1], dilations: [1, 1], padding: 'SAME', activation: 'linear', shape: [-1, 3, 3, 5] },
    { op: 'batch_norm', name: 'bn', x: 'c4', scale: 'g', offset: 'o', mean: 'm', variance: 'v', epsilon: 1e-3, shape: [-1, 3, 3, 5] },
    { op: 'mean', name: 'pool', x: 'bn', axes: [1, 2], keepDims: false, shape: [-1, 5] },
  ];
  const graph: Graph = { nodes, input: 'x', output: 'pool', weights };
  return { graph, split: { cut: 'x', cutShape: [9, 9, 3], top: nodes.slice(1), layers: ['c1', 'c2', 'c3', 'c4', 'bn'], trainable: ['k1', 'b1', 'd2', 'd3', 'k4', 'g', 'o'] } };
}

test('GraphTop: convolutions from basic ops give the same values and gradients as tfjs convolutions', async () => {
  await useCpuBackend();
  const { graph, split } = convGraph();
  const top = new GraphTop(graph, split);
  const x = tf.randomUniform([2, 9, 9, 3], -1, 1, 'float32', 4);
  const r = tf.randomUniform([2, 5], -1, 1, 'float32', 5);
  const run = (basic: boolean) => {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(top.forward(x, basic), r)) as tf.Scalar, [...top.variables.values()]);
    const out = { value: value.dataSync()[0]!, grads: Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, Array.from(g.dataSync())])) };
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  };
  const native = run(false);
  const basic = run(true);
  assert.ok(Math.abs(native.value - basic.value) < 1e-4, `${native.value} vs ${basic.value}`);
  assert.equal(Object.keys(native.grads).length, 7);
  for (const [k, g] of Object.entries(native.grads)) {
    const b = basic.grads[k]!;
    const d = Math.max(...g.map((v, i) => Math.abs(v - b[i]!)));
    assert.ok(d < 1e-4, `gradient of ${k} differs by ${d}`);
    assert.ok(g.some((v) => v !== 0), `gradient of ${k} is not all zero`);
  }
  tf.dispose([x, r]);
  top.dispose();
});

test('fine-tuning on cached activations (bottom on ONNX Runtime) matches fine-tuning end to end on images; the cache is reused and follows image changes', async () => {
  await useCpuBackend();
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { classes: CLASSES, perClass: 4 });
  const ex = await loadFeatureExtractor({ spec: await makeResidualModel(path.join(root, 'module')), cacheDir: '', log: new MemoryLogger() });
  const { graph, split } = await splitModule(ex, 2);
  const log = new MemoryLogger();
  const { extractor: bottom, onOrt } = await activationExtractor(ex, graph, split, { log });
  assert.ok(onOrt, log.lines.join('\n'));
  const lists = await createImageLists(images, { testingPercentage: 0, validationPercentage: 0 }, new MemoryLogger());
  const bn = path.join(root, 'bn');
  const acts = await cacheBottlenecks(lists, bottom, { bottleneckDir: bn, log: new MemoryLogger() });
  assert.equal(acts.computed, 12);
  const cached = labeledSet(lists, acts, 'training');

  // End to end: the same top and head trained from the images, the frozen part run by tfjs in the same graph.
  const set = cached;
  const pixels = await plainImageBatches(ex.inputSpec)(set.files, 0);
  const onImages: LabeledSet = { ...set, x: (await pixels.data()) as Float32Array };
  pixels.dispose();
  const whole: GraphSplit = { ...split, cut: graph.input, cutShape: [32, 32, 3], top: graph.nodes.filter((n) => n.op !== 'input') };

  const train = async (s: GraphSplit, rows: LabeledSet) => {
    const top = new GraphTop(graph, s);
    const head = new Head(ex.info.bottleneckSize, 3, 1);
    const empty = { x: new Float32Array(0), y: new Int32Array(0), files: [] };
    await fineTune(top, head, rows, empty, { epochs: 1, steps: 3, learningRate: 0.5, batchSize: 4, patience: 2, seed: 3, optimizer: 'sgd', log: new MemoryLogger() });
    const out = { top: top.values(), head: await head.values() };
    top.dispose();
    head.dispose();
    return out;
  };
  const a = await train(split, cached);
  const b = await train(whole, onImages);
  assert.deepEqual([...a.top.keys()].sort(), ['c3/bias', 'c3/kernel', 'c4/bias', 'c4/depthwise_kernel']);
  const original = graph.weights.get('c3/kernel')!.data;
  assert.ok(a.top.get('c3/kernel')!.some((v, i) => Math.abs(v - original[i]!) > 1e-4), 'the top trained');
  for (const [k, v] of a.top) {
    const d = Math.max(...Array.from(v, (x, i) => Math.abs(x - b.top.get(k)![i]!)));
    assert.ok(d < 1e-4, `${k}: cached and end-to-end weights differ by ${d}`);
  }
  const dh = Math.max(...Array.from(a.head.weights, (x, i) => Math.abs(x - b.head.weights[i]!)));
  assert.ok(dh < 1e-4, `head weights differ by ${dh}`);
  assert.deepEqual(await train(split, cached), a, 'same seed, same weights');

  // A rerun reads every activation from the cache; a rewritten image is recomputed.
  const again = await cacheBottlenecks(lists, bottom, { bottleneckDir: bn, log: new MemoryLogger() });
  assert.deepEqual([again.computed, again.cached], [0, 12]);
  const changed = set.files[0]!;
  await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 10, g: 10, b: 10 } } }).png().toFile(changed + '.tmp.png');
  fs.renameSync(changed + '.tmp.png', changed);
  const third = await cacheBottlenecks(lists, bottom, { bottleneckDir: bn, log: new MemoryLogger() });
  assert.deepEqual([third.computed, third.cached], [1, 11]);
  assert.notDeepEqual(Array.from(third.values.get(changed)!), Array.from(acts.values.get(changed)!));
  bottom.dispose();
  ex.dispose();
});

test('retrain --fine_tune_layers on the built-in graph module: exports carry the fine-tuned weights and reproduce the test accuracy', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { classes: CLASSES, perClass: 12 });
  const args = (out: string, extra: string[] = []) => [
    '--image_dir', images,
    '--bottleneck_dir', path.join(root, 'bn'),
    '--output_graph', out,
    '--output_labels', path.join(root, 'labels.txt'),
    '--summary_json', path.join(root, 'summary.json'),
    '--how_many_training_steps', '10',
    '--testing_percentage', '25',
    '--fine_tune_layers', '2',
    '--fine_tune_epochs', '2',
    '--fine_tune_learning_rate', '0.05',
    ...extra,
  ];
  const out = path.join(root, 'out');
  const r = runCli('retrain', args(out));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /Fine-tuning: the frozen bottom \(input → \S+expanded_conv_16\/depthwise\/Relu6\) runs on onnxruntime/);
  assert.match(r.stderr, /Fine-tune epoch 1 \(step \d+\): Cross entropy = [\d.]+, Validation accuracy = [\d.]+%/);
  const s = JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8'));
  assert.equal(s.fine_tune.layers.length, 2);
  assert.deepEqual(s.fine_tune.activation_shape, [7, 7, 960]);
  assert.equal(s.fine_tune.activations.computed, 36);
  // The bottom ran once per image: the bottlenecks came from the activations through the top, and equal the whole module's.
  assert.match(r.stderr, /Creating 36 bottleneck files in \S+ \(36 through the module's top 2 layers from the fine-tuning activations\)/);
  assert.equal(s.bottlenecks.computed, 36);
  {
    const lists = await createImageLists(images, { testingPercentage: 0, validationPercentage: 0 }, new MemoryLogger());
    const ex = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: new MemoryLogger() });
    const derived = await cacheBottlenecks(lists, ex, { bottleneckDir: path.join(root, 'bn'), log: new MemoryLogger() });
    const direct = await cacheBottlenecks(lists, ex, { bottleneckDir: path.join(root, 'bn-direct'), log: new MemoryLogger() });
    ex.dispose();
    assert.equal(derived.cached, 36);
    let worst = 0;
    for (const [file, v] of direct.values) v.forEach((d, i) => (worst = Math.max(worst, Math.abs(d - derived.values.get(file)![i]!))));
    assert.ok(worst < 1e-4, `bottlenecks through the top differ from the module's by ${worst}`);
  }

  // The TF.js export holds the fine-tuned Conv_1 weights, and classifies the test images as the run did.
  const kernel = (dir: string) => tf.io.decodeWeights(readModelFiles(path.join(dir, 'model.json')).artifacts.weightData as ArrayBuffer, readModelFiles(path.join(dir, 'model.json')).artifacts.weightSpecs!)['module/MobilenetV2/Conv_1/weights']!.dataSync();
  const moved = s.fine_tune.best_epoch > 0;
  const before = kernel(path.join(REPO_ROOT, 'models', 'mobilenet_v2_100_224_feature_vector'));
  const after = kernel(out);
  let diff = 0;
  for (let i = 0; i < after.length; i++) diff = Math.max(diff, Math.abs(after[i]! - before[i]!));
  assert.equal(diff > 0, moved, `Conv_1 changed by ${diff}, best epoch ${s.fine_tune.best_epoch}`);
  const files: string[] = s.test.predictions.map((p: { file: string }) => p.file);
  const y = Int32Array.from(s.test.predictions, (p: { true_label: string }) => CLASSES.indexOf(p.true_label));
  assert.ok(Math.abs((await exportAccuracy(out, files, y)) - s.test.accuracy) < 1e-6);

  // The ONNX export too (activations come from the cache now); label-image reads it.
  const onnx = path.join(root, 'model.onnx');
  const r2 = runCli('retrain', args(onnx));
  assert.equal(r2.status, 0, r2.stderr);
  const s2 = JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8'));
  assert.equal(s2.fine_tune.activations.cached, 36);
  const session = await createOnnxSession(onnx);
  const pixels = await plainImageBatches({ height: 224, width: 224, mean: 0, std: 255 })(files, 0);
  const probs = await session.run((await pixels.data()) as Float32Array, files.length, 224, 224);
  pixels.dispose();
  await session.dispose();
  const right = files.filter((_, i) => {
    const row = Array.from(probs.subarray(i * 3, i * 3 + 3));
    return row.indexOf(Math.max(...row)) === y[i];
  }).length;
  assert.ok(Math.abs(right / files.length - s2.test.accuracy) < 1e-6, `ONNX export: ${right} of ${files.length} right, the run: ${s2.test.accuracy}`);
  const li = runCli('label-image', ['--graph', onnx, '--labels', path.join(root, 'labels.txt'), '--image', files[0]!]);
  assert.equal(li.status, 0, li.stderr);
});

test('retrain --fine_tune_layers on a layers module: the export carries the fine-tuned weights', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { classes: CLASSES, perClass: 10 });
  const moduleDir = await makeResidualModel(path.join(root, 'module'));
  const out = path.join(root, 'out');
  const r = runCli('retrain', [
    '--image_dir', images, '--tfhub_module', moduleDir, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', out,
    '--output_labels', path.join(root, 'labels.txt'), '--summary_json', path.join(root, 's.json'), '--how_many_training_steps', '5',
    '--fine_tune_layers', '2', '--fine_tune_steps', '6', '--fine_tune_batch_size', '4', '--fine_tune_learning_rate', '0.5',
    // No validation set: nothing to choose an epoch by, so the last weights are kept.
    '--validation_percentage', '0', '--testing_percentage', '30',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(fs.readFileSync(path.join(root, 's.json'), 'utf8'));
  assert.deepEqual(s.fine_tune.layers, ['c3', 'c4']);
  assert.equal(s.fine_tune.steps, 6);
  const weights = (dir: string) => {
    const f = readModelFiles(path.join(dir, 'model.json'));
    return tf.io.decodeWeights(f.artifacts.weightData as ArrayBuffer, f.artifacts.weightSpecs!);
  };
  const [before, after] = [weights(moduleDir), weights(out)];
  const changed = (k: string) => Array.from(after[k]!.dataSync()).some((v, i) => Math.abs(v - before[k]!.dataSync()[i]!) > 1e-6);
  assert.ok(s.fine_tune.best_epoch > 0);
  assert.ok(changed('c3/kernel') && changed('c4/depthwise_kernel'), 'the export holds the fine-tuned weights');
  assert.ok(!changed('c1/kernel'), 'frozen layers keep their weights');
  const files: string[] = s.test.predictions.map((p: { file: string }) => p.file);
  const y = Int32Array.from(s.test.predictions, (p: { true_label: string }) => CLASSES.indexOf(p.true_label));
  assert.ok(Math.abs((await exportAccuracy(out, files, y)) - s.test.accuracy) < 1e-6);
});

test('early stopping keeps a later epoch unless its validation accuracy is more than half a standard error below the best', () => {
  // 54 validation photos (retrain's 10% of 600), best 46: one photo fewer is noise, two are not.
  assert.equal(keepsEpoch(46 / 54, 46 / 54, 54), true);
  assert.equal(keepsEpoch(45 / 54, 46 / 54, 54), true);
  assert.equal(keepsEpoch(44 / 54, 46 / 54, 54), false);
  // 367 photos (flower_photos' 10%), best 85%: half a standard error is 0.93 points, 3 photos.
  assert.equal(keepsEpoch(0.85 - 3 / 367, 0.85, 367), true);
  assert.equal(keepsEpoch(0.85 - 4 / 367, 0.85, 367), false);
  // All right so far: only a tie is kept.
  assert.equal(keepsEpoch(1, 1, 54), true);
  assert.equal(keepsEpoch(53 / 54, 1, 54), false);
});
