import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { decodeModel, encodeModel } from '../src/module/onnx/builder.js';
import { loadOrConvertOnnx, onnxCachePath } from '../src/module/onnx/cache.js';
import { BOTTLENECK_NAME, convertLayersModel } from '../src/module/onnx/convert.js';
import { FINAL_TENSOR_NAME, LABELS_KEY, appendHead } from '../src/module/onnx/head.js';
import { PROBE_TOLERANCE, maxAbsDiff, probeMaxAbsDiff } from '../src/module/onnx/probe.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { openOnnxEngine } from '../src/module/onnx/index.js';
import type { LoadedModelFiles } from '../src/module/io.js';
import { tempDir, useCpuBackend } from './helpers/fixtures.js';

const H = 8;
const W = 8;
const D = 6;
const ID = 'ab'.repeat(32);
const dir = tempDir('retrain-onnx-');

before(useCpuBackend);
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function smallModule(seed: number): tf.LayersModel {
  const init = () => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: seed++ });
  const input = tf.input({ shape: [H, W, 3] });
  const conv = tf.layers.conv2d({ filters: D, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(), biasInitializer: init() }).apply(input);
  const pool = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(conv) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: pool });
}

const batch = (n: number, seed: number) => tf.randomUniform([n, H, W, 3], -1, 1, 'float32', seed).dataSync() as Float32Array;

test('a converted module is cached by id, read back unchanged, and a damaged copy is rebuilt', async () => {
  const model = smallModule(1);
  let conversions = 0;
  const convert = async () => {
    conversions++;
    return encodeModel(convertLayersModel(model, { height: H, width: W }));
  };
  const first = await loadOrConvertOnnx(dir, ID, convert);
  assert.equal(first.status, 'built');
  assert.equal(first.path, onnxCachePath(dir, ID));
  assert.ok(fs.existsSync(`${first.path}.sha256`));
  const second = await loadOrConvertOnnx(dir, ID, convert);
  assert.equal(second.status, 'hit');
  assert.equal(conversions, 1);
  assert.deepEqual(Buffer.from(second.bytes), Buffer.from(first.bytes));

  // A file cut short (a crash mid-copy, a full disk): rebuilt, and the result runs.
  fs.truncateSync(first.path, Math.floor(first.bytes.length / 2));
  const cut = await loadOrConvertOnnx(dir, ID, convert);
  assert.equal(cut.status, 'rebuilt');
  assert.match(cut.reason ?? '', /does not match its checksum/);
  assert.equal(conversions, 2);
  assert.deepEqual(Buffer.from(fs.readFileSync(first.path)), Buffer.from(first.bytes));

  // One flipped byte in the weights.
  const bytes = fs.readFileSync(first.path);
  bytes[bytes.length - 10] ^= 0xff;
  fs.writeFileSync(first.path, bytes);
  assert.equal((await loadOrConvertOnnx(dir, ID, convert)).status, 'rebuilt');

  // No checksum: can't be trusted.
  fs.rmSync(`${first.path}.sha256`);
  const noSum = await loadOrConvertOnnx(dir, ID, convert);
  assert.equal(noSum.status, 'rebuilt');
  assert.match(noSum.reason ?? '', /no checksum file/);
  assert.equal(conversions, 4);

  const session = await createOnnxSession(noSum.path, { threads: 1 });
  const x = batch(2, 3);
  const want = tf.tidy(() => (model.predict(tf.tensor4d(x, [2, H, W, 3])) as tf.Tensor).dataSync() as Float32Array);
  assert.ok(maxAbsDiff(await session.run(x, 2, H, W), want) <= 1e-5);
  await session.dispose();
  // No temporary files left beside the cache entry.
  assert.deepEqual(fs.readdirSync(dir).sort(), [path.basename(first.path), `${path.basename(first.path)}.sha256`]);
});

test('a cache key that is not a digest is refused (it names a file)', () => {
  assert.throws(() => onnxCachePath(dir, '../../etc/passwd'), /not a hex digest/);
});

test('the probe finds a faithful conversion equal and a wrong one different', async () => {
  const model = smallModule(5);
  const session = await createOnnxSession(encodeModel(convertLayersModel(model, { height: H, width: W })), { threads: 1 });
  const right = await probeMaxAbsDiff(session, (x) => model.predict(x) as tf.Tensor, H, W, { batch: 3 });
  assert.ok(right <= 1e-5, `faithful: ${right}`);
  const other = smallModule(50);
  const wrong = await probeMaxAbsDiff(session, (x) => other.predict(x) as tf.Tensor, H, W);
  assert.ok(wrong > PROBE_TOLERANCE, `wrong: ${wrong}`);
  const shape = await probeMaxAbsDiff(session, (x) => tf.mean(x, [1, 2]), H, W);
  assert.equal(shape, Infinity);
  await session.dispose();
});

function softmaxRows(logits: Float32Array, c: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / c; r++) {
    const row = logits.subarray(r * c, (r + 1) * c);
    const m = Math.max(...row);
    const e = Array.from(row, (v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    e.forEach((v, j) => (out[r * c + j] = v / s));
  }
  return out;
}

function dense(x: Float32Array, n: number, w: Float32Array, b: Float32Array, relu: boolean): Float32Array {
  const inSize = x.length / n;
  const outSize = b.length;
  const y = new Float32Array(n * outSize);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < outSize; j++) {
      let s = b[j]!;
      for (let k = 0; k < inSize; k++) s += x[i * inSize + k]! * w[k * outSize + j]!;
      y[i * outSize + j] = relu ? Math.max(0, s) : s;
    }
  return y;
}

const rand = (n: number, seed: number) => tf.randomUniform([n], -1, 1, 'float32', seed).dataSync() as Float32Array;

for (const hidden of [false, true]) {
  test(`the exported head${hidden ? ' (with a hidden layer)' : ''} gives final_result in plain onnxruntime, labels in the metadata`, async () => {
    const model = smallModule(9);
    const module = encodeModel(convertLayersModel(model, { height: H, width: W }));
    const labels = ['daisy', 'roses', 'tulips'];
    const units = 4;
    const inSize = hidden ? units : D;
    const head = {
      weights: rand(inSize * labels.length, 1),
      biases: rand(labels.length, 2),
      hidden: hidden ? { weights: rand(D * units, 3), biases: rand(units, 4) } : undefined,
    };
    const bytes = appendHead(module, head, labels, { 'retrain.input_range': '[-1,1]' });

    // Plain onnxruntime-node, no project code.
    const session = await ort.InferenceSession.create(bytes);
    assert.deepEqual(session.outputNames, [FINAL_TENSOR_NAME]);
    const x = batch(3, 8);
    const result = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, [3, H, W, 3]) });
    const got = result[FINAL_TENSOR_NAME]!.data as Float32Array;
    await session.release();

    const features = tf.tidy(() => (model.predict(tf.tensor4d(x, [3, H, W, 3])) as tf.Tensor).dataSync() as Float32Array);
    const h = head.hidden ? dense(features, 3, head.hidden.weights, head.hidden.biases, true) : features;
    const want = softmaxRows(dense(h, 3, head.weights, head.biases, false), labels.length);
    assert.ok(maxAbsDiff(got, want) <= 1e-5, `diff ${maxAbsDiff(got, want)}`);

    const meta = Object.fromEntries(decodeModel(bytes).metadataProps.map((p) => [p.key, p.value]));
    assert.deepEqual(JSON.parse(meta[LABELS_KEY]!), labels);
    assert.equal(meta['retrain.input_range'], '[-1,1]');
    // The module's own output is still there for whoever wants bottlenecks.
    assert.ok((decodeModel(bytes).graph?.node ?? []).some((n) => n.output?.includes(BOTTLENECK_NAME)));
  });
}

test('a head whose sizes do not fit the module or the labels is refused', () => {
  const module = encodeModel(convertLayersModel(smallModule(2), { height: H, width: W }));
  assert.throws(() => appendHead(module, { weights: rand(D * 2, 1), biases: rand(2, 2) }, ['a', 'b', 'c']), /2 classes but 3 labels/);
  assert.throws(() => appendHead(module, { weights: rand((D + 1) * 2, 1), biases: rand(2, 2) }, ['a', 'b']), /not \[6, 2\]/);
});

/** A tfjs model's files as the module stage holds them (no folder needed). */
async function filesOf(model: tf.LayersModel): Promise<LoadedModelFiles> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const json = { format: 'layers-model', modelTopology: artifacts!.modelTopology!, weightsManifest: [{ paths: [], weights: artifacts!.weightSpecs! }] };
  return { dir: dir, json, jsonText: JSON.stringify(json), artifacts: artifacts! };
}

const ref = (id: string) => ({ id, bottleneckTensor: 'pool', inputHeight: H, inputWidth: W, inputRange: [-1, 1] as [number, number] });

test('openOnnxEngine converts once, probes against tfjs, and reuses the cached conversion', async () => {
  const model = smallModule(21);
  const files = await filesOf(model);
  const id = 'cd'.repeat(32);
  const opts = { module: ref(id), files, cacheDir: dir, tfjsExtract: (x: tf.Tensor4D) => model.predict(x) as tf.Tensor, threads: 1 };
  const first = await openOnnxEngine(opts);
  assert.ok(first.ok, first.ok ? '' : first.reason);
  assert.equal(first.model.status, 'built');
  assert.ok(first.probeDiff <= 1e-5);
  const x = batch(2, 4);
  const want = tf.tidy(() => (model.predict(tf.tensor4d(x, [2, H, W, 3])) as tf.Tensor).dataSync() as Float32Array);
  assert.ok(maxAbsDiff(await first.session.run(x, 2, H, W), want) <= 1e-5);
  await first.session.dispose();
  const second = await openOnnxEngine(opts);
  assert.ok(second.ok && second.model.status === 'hit');
  if (second.ok) await second.session.dispose();
});

test('openOnnxEngine says why it falls back: an unsupported layer, or a probe that disagrees with tfjs', async () => {
  const input = tf.input({ shape: [H, W, 3] });
  const up = tf.layers.upSampling2d({ size: [2, 2] }).apply(input) as tf.SymbolicTensor;
  const odd = tf.model({ inputs: input, outputs: tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(up) as tf.SymbolicTensor });
  const unsupported = await openOnnxEngine({ module: ref('ef'.repeat(32)), files: await filesOf(odd), cacheDir: dir, tfjsExtract: (x) => odd.predict(x) as tf.Tensor });
  assert.ok(!unsupported.ok);
  assert.deepEqual(unsupported.unsupportedOps, ['UpSampling2D']);
  assert.match(unsupported.reason, /does not cover: UpSampling2D$/);

  const model = smallModule(31);
  const other = smallModule(41);
  const wrong = await openOnnxEngine({ module: ref('01'.repeat(32)), files: await filesOf(model), cacheDir: dir, tfjsExtract: (x) => other.predict(x) as tf.Tensor });
  assert.ok(!wrong.ok);
  assert.match(wrong.reason, /differ from tfjs' by .* \(more than 0\.001\)/);
});
