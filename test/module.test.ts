import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadFeatureExtractor } from '../src/module/index.js';
import { parseRange } from '../src/flags/table.js';
import { MemoryLogger } from '../src/log.js';
import { RetrainError, UsageError } from '../src/errors.js';
import { makeGraphModel, makeLayersModel, tempDir, useCpuBackend } from './helpers/fixtures.js';

const base = { cacheDir: '/nonexistent-cache', log: new MemoryLogger() };

test('layers module: bottleneck defaults to the last global pooling layer, range to [-1,1]', async () => {
  const dir = await makeLayersModel(tempDir());
  const ex = await loadFeatureExtractor({ ...base, spec: dir });
  assert.equal(ex.info.format, 'layers-model');
  assert.equal(ex.info.bottleneckTensor, 'pool');
  assert.equal(ex.info.bottleneckSize, 8);
  assert.deepEqual([ex.info.inputHeight, ex.info.inputWidth], [32, 32]);
  assert.deepEqual(ex.info.inputRange, [-1, 1]);
  assert.deepEqual([ex.inputSpec.mean, ex.inputSpec.std], [127.5, 127.5]);
  // The extractor gives exactly the pooling layer's output.
  const full = await tf.loadLayersModel(tf.io.fromMemory((ex.kind === 'layers' ? ex.files : assert.fail('a layers module')).artifacts));
  const cut = tf.model({ inputs: full.inputs, outputs: full.getLayer('pool').output as tf.SymbolicTensor });
  const x = tf.randomUniform([3, 32, 32, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
  const got = ex.extract(x);
  const want = cut.predict(x) as tf.Tensor;
  assert.deepEqual(got.shape, [3, 8]);
  assert.ok(tf.max(tf.abs(tf.sub(got, want))).dataSync()[0]! < 1e-6);
  ex.dispose();
});

test('layers module: --bottleneck_layer and --input_range are honoured, and change the identity', async () => {
  const dir = await makeLayersModel(tempDir());
  const a = await loadFeatureExtractor({ ...base, spec: dir });
  const b = await loadFeatureExtractor({ ...base, spec: path.join(dir, 'model.json'), bottleneckLayer: 'logits', inputRange: [0, 1] });
  assert.equal(b.info.bottleneckTensor, 'logits');
  assert.equal(b.info.bottleneckSize, 4);
  assert.deepEqual(b.info.inputRange, [0, 1]);
  assert.notEqual(a.info.id, b.info.id);
  const again = await loadFeatureExtractor({ ...base, spec: dir });
  assert.equal(again.info.id, a.info.id, 'the same files and options give the same identity');
  await assert.rejects(loadFeatureExtractor({ ...base, spec: dir, bottleneckLayer: 'nope' }), (e: Error) => e instanceof UsageError && /--bottleneck_layer nope/.test(e.message));
});

test('graph module: output node is the bottleneck, range defaults to [0,1]', async () => {
  await useCpuBackend();
  const dir = makeGraphModel(tempDir());
  const ex = await loadFeatureExtractor({ ...base, spec: dir });
  assert.equal(ex.info.format, 'graph-model');
  assert.equal(ex.info.bottleneckTensor, 'module_apply_default/hub_output/feature_vector/Mean');
  assert.equal(ex.info.bottleneckSize, 8);
  assert.deepEqual(ex.info.inputRange, [0, 1]);
  assert.deepEqual([ex.info.inputHeight, ex.info.inputWidth], [32, 32]);
  const x = tf.ones([2, 32, 32, 3]) as tf.Tensor4D;
  assert.deepEqual(ex.extract(x).shape, [2, 8]);
  ex.dispose();
});

test('module errors: missing path, not a model, dynamic size without flags', async () => {
  await assert.rejects(loadFeatureExtractor({ ...base, spec: '/no/such/model' }), (e: Error) => e instanceof UsageError && /does not exist/.test(e.message));
  const empty = tempDir();
  await assert.rejects(loadFeatureExtractor({ ...base, spec: empty }), /no model.json or saved_model.pb/);
  const notJson = path.join(empty, 'model.json');
  fs.writeFileSync(notJson, '{"hello": 1}');
  await assert.rejects(loadFeatureExtractor({ ...base, spec: notJson }), (e: Error) => e instanceof RetrainError && /not a TF.js model.json/.test(e.message));

  const saved = tempDir();
  fs.writeFileSync(path.join(saved, 'saved_model.pb'), 'x');
  await assert.rejects(loadFeatureExtractor({ ...base, spec: saved }), /SavedModel, which needs native TensorFlow/);

  const dyn = makeGraphModel(tempDir());
  const j = JSON.parse(fs.readFileSync(path.join(dyn, 'model.json'), 'utf8'));
  j.modelTopology.node[0].attr.shape.shape.dim = [{ size: '-1' }, { size: '-1' }, { size: '-1' }, { size: '3' }];
  fs.writeFileSync(path.join(dyn, 'model.json'), JSON.stringify(j));
  await assert.rejects(loadFeatureExtractor({ ...base, spec: dyn }), /dynamic input size: give --input_height and --input_width/);
  const ex = await loadFeatureExtractor({ ...base, spec: dyn, inputHeight: 20, inputWidth: 24 });
  assert.deepEqual([ex.info.inputHeight, ex.info.inputWidth], [20, 24]);
});

test('parseRange', () => {
  assert.deepEqual(parseRange('-1,1'), [-1, 1]);
  assert.deepEqual(parseRange(' 0 , 1 '), [0, 1]);
  assert.throws(() => parseRange('1,0'), UsageError);
  assert.throws(() => parseRange('abc'), /--input_range "abc"/);
});
