import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { exportModel, readLabels, writeLabels } from '../src/export/index.js';
import { classifyImage } from '../src/label_image.js';
import { loadClassifier } from '../src/export/load.js';
import { loadModuleInput } from '../src/image/index.js';
import { MemoryLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { readModelFiles } from '../src/module/io.js';
import { makeGraphModel, makeImageDir, makeLayersModel, tempDir, useCpuBackend } from './helpers/fixtures.js';

const LABELS = ['cat', 'dog', 'fish'];

function randomHead(size: number, classes: number) {
  const weights = Float32Array.from({ length: size * classes }, (_, i) => Math.sin(i * 1.7) * 0.5);
  const biases = Float32Array.from({ length: classes }, (_, i) => i * 0.1 - 0.1);
  return { weights, biases };
}

/** What the export must compute: softmax(bottleneck · W + b). */
function expected(ex: FeatureExtractor, head: ReturnType<typeof randomHead>, x: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => tf.softmax(tf.add<tf.Tensor2D>(tf.matMul(ex.extract(x), tf.tensor2d(head.weights, [ex.info.bottleneckSize, LABELS.length])), tf.tensor1d(head.biases))));
}

async function checkExport(kind: 'layers' | 'graph'): Promise<void> {
  await useCpuBackend();
  const moduleDir = kind === 'layers' ? await makeLayersModel(tempDir()) : makeGraphModel(tempDir());
  const ex = await loadFeatureExtractor({ spec: moduleDir, cacheDir: '', log: new MemoryLogger() });
  const head = randomHead(ex.info.bottleneckSize, LABELS.length);
  const out = path.join(tempDir(), 'output_graph');
  // A shard from an earlier, bigger export must not survive.
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'group1-shard9of9.bin'), 'stale');
  await exportModel(ex, head, { dir: out, labels: LABELS, finalTensorName: 'final_result' });
  assert.deepEqual(fs.readdirSync(out).sort(), ['group1-shard1of1.bin', 'model.json']);

  const files = readModelFiles(path.join(out, 'model.json'));
  const meta = (files.json.userDefinedMetadata as { retrain: Record<string, unknown> }).retrain;
  assert.deepEqual(meta['labels'], LABELS);
  assert.equal(meta['outputName'], 'final_result');
  assert.deepEqual([meta['inputHeight'], meta['inputWidth']], [32, 32]);
  assert.deepEqual(meta['inputRange'], ex.info.inputRange);
  assert.equal((meta['module'] as { id: string }).id, ex.info.id);

  const x = tf.randomUniform([4, 32, 32, 3], ex.info.inputRange[0], ex.info.inputRange[1], 'float32', 9) as tf.Tensor4D;
  const want = expected(ex, head, x);
  let got: tf.Tensor;
  if (kind === 'layers') {
    assert.equal(files.json.format, 'layers-model');
    const m = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
    assert.equal(m.layers[m.layers.length - 1]!.name, 'final_result');
    got = m.predict(x) as tf.Tensor;
  } else {
    assert.equal(files.json.format, 'graph-model');
    const m = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
    assert.deepEqual(m.outputNodes, ['final_result']);
    assert.deepEqual(m.inputNodes, ['images']);
    got = m.predict(x) as tf.Tensor;
  }
  assert.deepEqual(got.shape, [4, 3]);
  assert.ok(tf.max(tf.abs(tf.sub(got, want))).dataSync()[0]! < 1e-6);

  // label-image on the export gives the same probabilities as the module + head, from the image file.
  const imgDir = await makeImageDir(tempDir(), { classes: ['a'], perClass: 2 });
  const img = path.join(imgDir, 'a', 'a_000.png');
  const c = await loadClassifier({ graph: out });
  assert.deepEqual(c.labels, LABELS);
  const r = await classifyImage(c, img, 2);
  const input = await loadModuleInput(img, ex.inputSpec);
  const direct = expected(ex, head, tf.tensor4d(input, [1, 32, 32, 3])).dataSync();
  r.scores.forEach((s, i) => assert.ok(Math.abs(s - direct[i]!) < 1e-6));
  assert.equal(r.predictions.length, 2);
  assert.ok(r.predictions[0]!.score >= r.predictions[1]!.score);
  assert.equal(r.predictions[0]!.label, LABELS[r.predictions[0]!.index]);
  c.dispose();
  ex.dispose();
}

test('export: layers-model module gives a layers model ending in final_result', () => checkExport('layers'));
test('export: graph-model module gives a graph model with the head appended', () => checkExport('graph'));

test('labels file: one label per line in class order, read back the same', async () => {
  const f = path.join(tempDir(), 'labels.txt');
  await writeLabels(f, ['daisy', 'sun flowers', 'tulips']);
  assert.equal(fs.readFileSync(f, 'utf8'), 'daisy\nsun flowers\ntulips\n');
  assert.deepEqual(readLabels(f), ['daisy', 'sun flowers', 'tulips']);
});

test('export refuses an output path that is a file', async () => {
  await useCpuBackend();
  const ex = await loadFeatureExtractor({ spec: makeGraphModel(tempDir()), cacheDir: '', log: new MemoryLogger() });
  const file = path.join(tempDir(), 'x');
  fs.writeFileSync(file, '');
  const head = randomHead(8, 3);
  await assert.rejects(exportModel(ex, head, { dir: file, labels: LABELS, finalTensorName: 'final_result' }), /is a file/);
});
