import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { UsageError } from '../src/errors.js';
import { fineTune, forwardSplit, gradientBackend, recomputeBottlenecks, splitModule } from '../src/finetune/index.js';
import { distortedImageBatches, plainImageBatches } from '../src/image/batches.js';
import { MemoryLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { folderSaveHandler, readModelFiles } from '../src/module/io.js';
import { Head, trainHead, type LabeledSet } from '../src/train/index.js';
import { SHARED, makeGraphModel, makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

const SHARED_NESTED = path.join(SHARED, 'models', 'mobilenet_v2_035_224');

/** A module with a residual connection: conv 3x3 → depthwise 3x3 → add(c1, c2) → conv 1x1 → depthwise 3x3 stride 2 → pool. */
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

async function labeled(images: string, classes: string[]): Promise<LabeledSet> {
  const files: string[] = [];
  const y: number[] = [];
  classes.forEach((c, k) => {
    for (const f of fs.readdirSync(path.join(images, c)).sort()) {
      files.push(path.join(images, c, f));
      y.push(k);
    }
  });
  return { files, y: Int32Array.from(y), x: new Float32Array(0) };
}

test('splitModule: top N layers with weights; refuses graph modules and too large N', async () => {
  await useCpuBackend();
  const ex = await loadFeatureExtractor({ spec: await makeResidualModel(tempDir()), cacheDir: '', log: new MemoryLogger() });
  const s = splitModule(ex, 3);
  assert.deepEqual(s.top.map((l) => l.name), ['c2', 'c3', 'c4']);
  assert.deepEqual(s.region.map((l) => l.name), ['c2', 'add', 'c3', 'c4', 'pool']);
  assert.deepEqual(s.frontier.map((t) => t.sourceLayer.name), ['c1'], 'the skip connection from c1 is fed, not recomputed');
  assert.deepEqual(s.variables.map((v) => v.shape), [[3, 3, 4, 1], [4], [1, 1, 4, 6], [6], [3, 3, 6, 1], [6]]);
  assert.equal(gradientBackend(s), 'cpu', 'the tests run on cpu');
  const x = tf.randomUniform([3, 32, 32, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
  const split = forwardSplit(s, x).arraySync();
  const full = ex.extract(x).arraySync();
  split.forEach((row, i) => row.forEach((v, k) => assert.ok(Math.abs(v - full[i]![k]!) < 1e-5, `[${i},${k}] ${v} vs ${full[i]![k]}`)));
  // The 3x3 Conv2D c1 has no basic-op form: with it unfrozen on wasm, the top runs on cpu.
  await tf.setBackend('wasm');
  assert.equal(gradientBackend(splitModule(ex, 3)), 'wasm');
  assert.equal(gradientBackend(splitModule(ex, 4)), 'cpu');
  await tf.setBackend('cpu');
  assert.throws(() => splitModule(ex, 5), (e: Error) => e instanceof UsageError && /--fine_tune_layers 5 is more than the 4 layers with weights/.test(e.message));
  ex.dispose();
  const g = await loadFeatureExtractor({ spec: makeGraphModel(tempDir()), cacheDir: '', log: new MemoryLogger() });
  assert.throws(() => splitModule(g, 1), (e: Error) => e instanceof UsageError && /--fine_tune_layers works with layers-model modules only/.test(e.message));
  g.dispose();
});

test('fineTune: updates only the top layers and the head, lowers the loss, same seed same weights', async () => {
  await useCpuBackend();
  const root = tempDir();
  const classes = ['red', 'green', 'blue'];
  const images = await makeImageDir(path.join(root, 'images'), { classes, perClass: 8 });
  const moduleDir = await makeResidualModel(path.join(root, 'module'));
  const run = async () => {
    const ex = await loadFeatureExtractor({ spec: moduleDir, cacheDir: '', log: new MemoryLogger() });
    const batches = plainImageBatches(ex.inputSpec);
    const set = await recomputeBottlenecks(ex, await labeled(images, classes), batches, 5);
    const size = ex.info.bottleneckSize;
    // A barely trained head, so fine-tuning has something to improve.
    const trained = await trainHead(set, set, 3, size, { steps: 5, learningRate: 0.1, trainBatchSize: 8, validationBatchSize: -1, evalStepInterval: 5, seed: 1, log: new MemoryLogger() });
    const head: Head = trained.head;
    const loss = (s: LabeledSet) => tf.tidy(() => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(s.y, 'int32'), 3), head.logits(tf.tensor2d(s.x, [s.y.length, size]))).dataSync()[0]!);
    const before = loss(set);
    const weightsOf = (name: string) => (ex.kind === 'layers' ? ex.model : assert.fail('a layers module')).getLayer(name).getWeights().map((w) => Array.from(w.dataSync()));
    const c1 = weightsOf('c1');
    const c3 = weightsOf('c3');
    const headBefore = await head.values();
    const log = new MemoryLogger();
    const r = await fineTune(ex, head, set, { layers: 3, steps: 12, learningRate: 0.05, batchSize: 6, evalStepInterval: 4, seed: 2, optimizer: 'adam', batches, log });
    assert.deepEqual(r.layers, ['c2', 'c3', 'c4']);
    assert.deepEqual(r.history.map((h) => h.step), [0, 4, 8, 11]);
    assert.deepEqual(weightsOf('c1'), c1, 'frozen layers keep their weights');
    assert.notDeepEqual(weightsOf('c3'), c3, 'unfrozen layers change');
    assert.notDeepEqual(await head.values(), headBefore, 'the head trains too');
    // The module's own predict (what the export and label-image run) sees the new weights.
    const after = loss(await recomputeBottlenecks(ex, set, batches, 5));
    assert.ok(after < before * 0.8, `loss ${before} → ${after}`);
    assert.ok(log.lines.some((l) => /Fine-tune step 11: Cross entropy = [\d.]+/.test(l)));
    const out = { c3: weightsOf('c3'), head: await head.values(), after };
    head.dispose();
    ex.dispose();
    return out;
  };
  const a = await run();
  const b = await run();
  assert.deepEqual(a, b);
});

test('retrain --fine_tune_layers: the export holds the fine-tuned module and label-image uses it', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green', 'blue'], perClass: 12 });
  const moduleDir = await makeLayersModel(path.join(root, 'module'));
  const args = (extra: string[]) => [
    '--image_dir', images,
    '--tfhub_module', moduleDir,
    '--bottleneck_dir', path.join(root, 'bottlenecks'),
    '--output_graph', path.join(root, 'out'),
    '--output_labels', path.join(root, 'labels.txt'),
    '--summary_json', path.join(root, 'summary.json'),
    '--summaries_dir', path.join(root, 'logs'),
    '--how_many_training_steps', '20',
    '--learning_rate', '0.5',
    '--eval_step_interval', '10',
    // wasm has no convolution gradients: the fixture's 3x3 conv trains on cpu while the rest stays on wasm.
    '--backend', 'wasm',
    ...extra,
  ];
  const r = runCli('retrain', args(['--fine_tune_layers', '1', '--fine_tune_steps', '4', '--fine_tune_batch_size', '4', '--quantize_bytes', '2']));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /Fine-tuning the top 1 layers of the module \(conv … conv, 224 values\) with the head: 4 steps of 4 images at learning rate 0\.05\b/);
  assert.match(r.stderr, /the wasm backend has no convolution gradients; the frozen layers run on wasm, the unfrozen top on cpu/);
  assert.match(r.stderr, /Fine-tuning: validation accuracy [\d.]+% before, [\d.]+% after/);
  assert.match(r.stderr, /Export with float16 weights: \d+ bytes; test accuracy loaded back = [\d.]+%/);
  const summary = JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8'));
  assert.deepEqual(summary.fine_tune.layers, ['conv']);
  assert.equal(summary.fine_tune.learning_rate, 0.05, 'a tenth of --learning_rate');
  assert.equal(summary.export.quantize_bytes, 2);
  assert.equal(summary.export.test_accuracy, summary.test.accuracy, 'float16 export classifies the test images as the run did');

  // The exported conv kernel is the fine-tuned one, not the module's.
  const exported = readModelFiles(path.join(root, 'out', 'model.json'));
  const original = readModelFiles(path.join(moduleDir, 'model.json'));
  const kernel = (f: typeof exported) => tf.io.decodeWeights(f.artifacts.weightData as ArrayBuffer, f.artifacts.weightSpecs!)['conv/kernel']!.dataSync();
  const diff = Math.max(...Array.from(kernel(exported)).map((v, i) => Math.abs(v - kernel(original)[i]!)));
  assert.ok(diff > 1e-3, `kernel changed by ${diff}`);

  const li = runCli('label-image', ['--graph', path.join(root, 'out'), '--image', path.join(images, 'green', 'green_000.png')]);
  assert.equal(li.status, 0, li.stderr);
  assert.match(li.stdout, /^green \d\.\d+/);

  const g = runCli('retrain', [...args(['--fine_tune_layers', '2']).map((a) => (a === moduleDir ? makeGraphModel(path.join(root, 'gmodule')) : a))]);
  assert.equal(g.status, 2);
  assert.match(g.stderr, /--fine_tune_layers works with layers-model modules only; .* is a graph-model/);
  assert.doesNotMatch(g.stderr, /\n\s+at .*:\d+:\d+/);
});

test('fineTune: batch normalization stays in inference mode (moving statistics untouched, gamma/beta trained)', async () => {
  await useCpuBackend();
  const dir = tempDir();
  const m = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 1, name: 'pw', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.batchNormalization({ name: 'bn', movingMeanInitializer: tf.initializers.constant({ value: 0.3 }), movingVarianceInitializer: tf.initializers.constant({ value: 2 }) }),
      tf.layers.reLU({ name: 'relu' }),
      tf.layers.globalAveragePooling2d({ name: 'pool' }),
    ],
  });
  await m.save(folderSaveHandler(dir));
  m.dispose();
  const ex = await loadFeatureExtractor({ spec: dir, cacheDir: '', log: new MemoryLogger() });
  const bn = () => (ex.kind === 'layers' ? ex.model : assert.fail('a layers module')).getLayer('bn').getWeights().map((w) => Array.from(w.dataSync()));
  const before = bn();
  const x = tf.randomUniform([4, 8, 8, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
  const s = splitModule(ex, 2);
  const a = forwardSplit(s, x).arraySync();
  const b = ex.extract(x).arraySync();
  a.forEach((row, i) => row.forEach((v, k) => assert.ok(Math.abs(v - b[i]![k]!) < 1e-5, 'the split forward uses the moving statistics')));
  const head = new Head(4, 2, 1);
  await fineTune(ex, head, { x: new Float32Array(0), y: Int32Array.from([0, 1, 0, 1]), files: ['a', 'b', 'c', 'd'] }, {
    layers: 2, steps: 5, learningRate: 0.5, batchSize: 4, evalStepInterval: 5, seed: 1, optimizer: 'sgd',
    batches: async (files, step) => tf.randomUniform([files.length, 8, 8, 3], -1, 1, 'float32', step + 1) as tf.Tensor4D,
    log: new MemoryLogger(),
  });
  const after = bn();
  assert.notDeepEqual(after[0], before[0], 'gamma trains');
  assert.notDeepEqual(after[1], before[1], 'beta trains');
  assert.deepEqual(after.slice(2), before.slice(2), 'moving mean and variance stay');
  head.dispose();
  ex.dispose();
});

test('fine-tuning batches: distorted ones are repeatable per step and differ from the plain images', async () => {
  await useCpuBackend();
  const images = await makeImageDir(tempDir(), { classes: ['a'], perClass: 3, width: 48, height: 40 });
  const files = ['a_000.png', 'a_001.png', 'a_002.png'].map((f) => path.join(images, 'a', f));
  const spec = { height: 32, width: 32, mean: 127.5, std: 127.5 };
  const settings = { flipLeftRight: true, randomCrop: 20, randomScale: 20, randomBrightness: 20 };
  const data = async (t: Promise<tf.Tensor4D>) => {
    const x = await t;
    const d = Array.from(await x.data());
    x.dispose();
    return d;
  };
  const plain = await data(plainImageBatches(spec)(files, 0));
  const d1 = distortedImageBatches(spec, settings, 5);
  const step3 = await data(d1(files, 3));
  const step4 = await data(d1(files, 4));
  const again = await data(distortedImageBatches(spec, settings, 5)(files, 3));
  assert.deepEqual(again, step3, 'same seed and step, same pixels');
  assert.notDeepEqual(step3, step4, 'another step draws other distortions');
  assert.notDeepEqual(step3, plain);
  assert.equal(step3.length, plain.length);
});

/** Teachable Machine's shape: a Sequential whose first layer is a functional model (conv → depthwise → conv), then pooling. */
async function makeNestedModel(dir: string): Promise<string> {
  await useCpuBackend();
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const input = tf.input({ shape: [32, 32, 3] });
  const c1 = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'n_c1', kernelInitializer: init(1) }).apply(input) as tf.SymbolicTensor;
  const c2 = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu', name: 'n_c2', depthwiseInitializer: init(2) }).apply(c1) as tf.SymbolicTensor;
  const c3 = tf.layers.conv2d({ filters: 6, kernelSize: 1, activation: 'relu', name: 'n_c3', kernelInitializer: init(3) }).apply(c2) as tf.SymbolicTensor;
  const inner = tf.model({ inputs: input, outputs: c3, name: 'inner_model' });
  const outer = tf.sequential({ layers: [inner, tf.layers.globalAveragePooling2d({ name: 'n_pool' })] });
  await outer.save(folderSaveHandler(dir));
  outer.dispose();
  return dir;
}

test('nested layers models: inner layers are counted, unfrozen and trained; features equal the nested model', async () => {
  await useCpuBackend();
  const dir = await makeNestedModel(tempDir());
  const nested = await tf.loadLayersModel(tf.io.fromMemory(readModelFiles(path.join(dir, 'model.json')).artifacts));
  assert.equal(nested.layers.filter((l) => l.weights.length > 0).length, 1, 'tfjs sees the inner model as one layer');
  const ex = await loadFeatureExtractor({ spec: dir, cacheDir: '', log: new MemoryLogger() });
  const x = tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 9) as tf.Tensor4D;
  const want = (nested.predict(x) as tf.Tensor).arraySync() as number[][];
  const got = ex.extract(x).arraySync();
  got.forEach((row, i) => row.forEach((v, k) => assert.ok(Math.abs(v - want[i]![k]!) < 1e-5)));
  const s = splitModule(ex, 3);
  assert.deepEqual(s.top.map((l) => l.name), ['n_c1', 'n_c2', 'n_c3']);
  assert.throws(() => splitModule(ex, 4), /--fine_tune_layers 4 is more than the 3 layers with weights/);
  nested.dispose();
  ex.dispose();
});

test('retrain --fine_tune_layers counts layers inside a nested model (Teachable Machine base)', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 8, width: 40, height: 30 });
  const module = await makeNestedModel(path.join(root, 'module'));
  const r = runCli('retrain', [
    '--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', path.join(root, 'out'),
    '--output_labels', path.join(root, 'labels.txt'), '--summary_json', path.join(root, 's.json'), '--how_many_training_steps', '5',
    '--fine_tune_layers', '2', '--fine_tune_steps', '2', '--fine_tune_batch_size', '4', '--backend', 'cpu',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(fs.readFileSync(path.join(root, 's.json'), 'utf8'));
  assert.deepEqual(s.fine_tune.layers, ['n_c2', 'n_c3']);
  const out = runCli('label-image', ['--graph', path.join(root, 'out'), '--image', images]);
  assert.equal(out.status, 0, out.stderr);
});

test('retrain --fine_tune_layers 8 works on mobilenet_v2_035_224 (a nested Teachable Machine base)', { skip: !fs.existsSync(SHARED_NESTED) && `${SHARED_NESTED} is absent (../shared is needed)` }, async () => {
  await useCpuBackend();
  const ex = await loadFeatureExtractor({ spec: SHARED_NESTED, cacheDir: '', log: new MemoryLogger() });
  const s = splitModule(ex, 8);
  assert.equal(s.top.length, 8);
  assert.equal(s.top.at(-1)!.name, 'Conv_1_bn');
  ex.dispose();
});
