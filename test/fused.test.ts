import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { silentLogger } from '../src/log.js';
import { FUSED_TOLERANCE, fusedLayersRunner, layersForward } from '../src/module/fused.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { readModelFiles } from '../src/module/io.js';
import { SHARED, SKIP_SHARED, useCpuBackend } from './helpers/fixtures.js';

/** A MobileNet V2-like block: conv+ReLU6, depthwise+ReLU6, linear project, residual add, pooling, dense. */
function mobilenetLike(seed: number): tf.LayersModel {
  const init = () => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: seed++ });
  const input = tf.input({ shape: [16, 16, 3], name: 'input' });
  const conv = tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', name: 'conv', kernelInitializer: init(), biasInitializer: init() }).apply(input) as tf.SymbolicTensor;
  const relu = tf.layers.reLU({ maxValue: 6, name: 'conv_relu6' }).apply(conv) as tf.SymbolicTensor;
  const dw = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', name: 'dw', depthwiseInitializer: init(), biasInitializer: init() }).apply(relu) as tf.SymbolicTensor;
  const dwRelu = tf.layers.reLU({ maxValue: 6, name: 'dw_relu6' }).apply(dw) as tf.SymbolicTensor;
  const project = tf.layers.conv2d({ filters: 8, kernelSize: 1, name: 'project', kernelInitializer: init(), biasInitializer: init() }).apply(dwRelu) as tf.SymbolicTensor;
  const add = tf.layers.add({ name: 'add' }).apply([relu, project]) as tf.SymbolicTensor;
  const expand = tf.layers.conv2d({ filters: 12, kernelSize: 1, activation: 'relu', name: 'expand', kernelInitializer: init() }).apply(add) as tf.SymbolicTensor;
  const pool = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(expand) as tf.SymbolicTensor;
  const dense = tf.layers.dense({ units: 4, activation: 'softmax', name: 'logits', kernelInitializer: init() }).apply(pool) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: dense });
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

before(useCpuBackend);

test('the fused runner gives what predict gives, at the pooling layer and at an inner ReLU', () => {
  const model = mobilenetLike(3);
  const x = tf.randomUniform([3, 16, 16, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
  for (const layer of ['pool', 'dw_relu6', 'add']) {
    const cut = tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as tf.SymbolicTensor });
    const run = fusedLayersRunner(cut, layer);
    assert.ok(run, `no fused runner for ${layer}`);
    const want = cut.predict(x) as tf.Tensor;
    const got = run(x);
    assert.deepEqual(got.shape, want.shape);
    assert.ok(maxDiff(got, want) <= 1e-5, `${layer}: differs by ${maxDiff(got, want)}`);
    assert.ok(tf.tidy(() => tf.max(tf.abs(want)).dataSync()[0]!) > 0.01, 'the check input gives all zeros');
  }
});

test('a layer the runner does not know keeps tfjs predict', () => {
  const input = tf.input({ shape: [8, 8, 3] });
  const bn = tf.layers.batchNormalization({ name: 'bn' }).apply(input) as tf.SymbolicTensor;
  const pool = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(bn) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: pool });
  assert.equal(fusedLayersRunner(model, 'pool'), undefined);
  const chosen = layersForward(model, 'pool', 8, 8);
  assert.equal(chosen.fused, false);
});

test('MobileNet V2 1.0 224 fused on wasm matches its plain layers model within 1e-4', { skip: SKIP_SHARED }, async () => {
  await initBackend('wasm');
  try {
    const spec = path.join(SHARED, 'models', 'mobilenet_v2_100_224');
    const files = readModelFiles(path.join(spec, 'model.json'));
    const model = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
    const layer = 'MobilenetV2_Logits_AvgPool';
    const cut = tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as tf.SymbolicTensor });
    const run = fusedLayersRunner(cut, layer);
    assert.ok(run, 'MobileNet V2 should be fully fusable');
    const x = tf.randomUniform([2, 224, 224, 3], -1, 1, 'float32', 9) as tf.Tensor4D;
    const d = maxDiff(run(x), cut.predict(x) as tf.Tensor);
    assert.ok(d <= FUSED_TOLERANCE, `differs by ${d}`);
    const extractor = await loadFeatureExtractor({ spec, cacheDir: '', log: silentLogger });
    assert.equal(extractor.info.bottleneckSize, 1280);
    const y = extractor.extract(x);
    assert.deepEqual(y.shape, [2, 1280]);
    assert.ok(maxDiff(y, cut.predict(x) as tf.Tensor) <= FUSED_TOLERANCE);
    // Still fused after the check the first call runs.
    assert.equal(extractor.kind === 'layers' && extractor.fused, true);
    extractor.dispose();
    model.dispose();
  } finally {
    await useCpuBackend();
  }
});
