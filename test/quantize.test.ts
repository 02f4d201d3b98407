import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { exportModel } from '../src/export/index.js';
import type { HeadValues } from '../src/train/index.js';
import { fromFloat16, quantizeArtifacts } from '../src/export/quantize.js';
import { MemoryLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { makeGraphModel, makeLayersModel, tempDir, useCpuBackend } from './helpers/fixtures.js';

const LABELS = ['a', 'b', 'c'];

function headWithHidden(size: number, units: number): HeadValues {
  return {
    hidden: {
      weights: Float32Array.from({ length: size * units }, (_, i) => Math.sin(i * 0.7)),
      biases: Float32Array.from({ length: units }, (_, i) => 0.05 * i - 0.1),
    },
    weights: Float32Array.from({ length: units * LABELS.length }, (_, i) => Math.cos(i * 1.3)),
    biases: Float32Array.from({ length: LABELS.length }, (_, i) => 0.1 * i),
  };
}

/** softmax(relu(f·W1 + b1)·W2 + b2) from the module's features: what the export must compute. */
function expected(ex: FeatureExtractor, h: HeadValues, x: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => {
    const units = h.hidden!.biases.length;
    const f = ex.extract(x);
    const hid = tf.relu(tf.add(tf.matMul(f, tf.tensor2d(h.hidden!.weights, [ex.info.bottleneckSize, units])), tf.tensor1d(h.hidden!.biases))) as tf.Tensor2D;
    return tf.softmax(tf.add(tf.matMul(hid, tf.tensor2d(h.weights, [units, LABELS.length])), tf.tensor1d(h.biases))) as tf.Tensor2D;
  });
}

/** Reads a model folder with tfjs' own http handler over file:// URLs (plain tfjs, no project code). */
async function loadPlain(dir: string, kind: 'layers' | 'graph'): Promise<{ predict(x: tf.Tensor): tf.Tensor; json: tf.io.ModelJSON }> {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
  const fetchFunc = async (url: string) => new Response(fs.readFileSync(new URL(url)));
  const handler = tf.io.http(new URL(`file://${path.join(dir, 'model.json')}`).href, { fetchFunc: fetchFunc as typeof fetch });
  const model = kind === 'layers' ? await tf.loadLayersModel(handler) : await tf.loadGraphModel(handler);
  return { predict: (x) => model.predict(x) as tf.Tensor, json };
}

test('quantizeArtifacts: uint8 keeps zero exact and errs at most half a step; float16 halves the bytes', async () => {
  await useCpuBackend();
  const w = Float32Array.from([-0.7, -0.1, 0, 0.2, 0.5, 1.3]);
  const ints = Int32Array.from([4, 5]);
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: {},
    weightSpecs: [
      { name: 'w', shape: [6], dtype: 'float32' },
      { name: 'i', shape: [2], dtype: 'int32' },
    ],
    weightData: new Uint8Array([...new Uint8Array(w.buffer), ...new Uint8Array(ints.buffer)]).buffer,
  };
  const q8 = quantizeArtifacts(artifacts, 1);
  const spec = q8.weightSpecs![0]!;
  assert.equal(spec.dtype, 'float32');
  assert.equal(spec.quantization?.dtype, 'uint8');
  assert.deepEqual(q8.weightSpecs![1], artifacts.weightSpecs![1], 'int32 weights stay as they are');
  assert.equal((q8.weightData as ArrayBuffer).byteLength, 6 + 8);
  const decoded = tf.io.decodeWeights(q8.weightData as ArrayBuffer, q8.weightSpecs!);
  const back = decoded['w']!.dataSync();
  const scale = spec.quantization!.scale!;
  assert.ok(Math.abs(scale - 2 / 255) < 1e-3, `scale ${scale}`);
  w.forEach((v, k) => assert.ok(Math.abs(back[k]! - v) <= scale / 2 + 1e-6, `${back[k]} vs ${v}`));
  assert.equal(back[2], 0, 'zero is exact');
  assert.deepEqual(Array.from(decoded['i']!.dataSync()), [4, 5]);

  const q16 = quantizeArtifacts(artifacts, 2);
  assert.deepEqual(q16.weightSpecs![0]!.quantization, { dtype: 'float16' });
  const half = tf.io.decodeWeights(q16.weightData as ArrayBuffer, q16.weightSpecs!)['w']!.dataSync();
  w.forEach((v, k) => assert.ok(Math.abs(half[k]! - v) <= Math.abs(v) * 1e-3, `${half[k]} vs ${v}`));
  assert.deepEqual(Array.from(fromFloat16(new Uint8Array(q16.weightData as ArrayBuffer, 0, 12))), Array.from(half));
});

for (const kind of ['layers', 'graph'] as const) {
  test(`export with --hidden_units and --quantize_bytes 1|2 loads in plain tfjs (${kind} model)`, async () => {
    await useCpuBackend();
    const moduleDir = kind === 'layers' ? await makeLayersModel(tempDir()) : makeGraphModel(tempDir());
    const ex = await loadFeatureExtractor({ spec: moduleDir, cacheDir: '', log: new MemoryLogger() });
    const head = headWithHidden(ex.info.bottleneckSize, 6);
    const x = tf.randomUniform([5, 32, 32, 3], ex.info.inputRange[0], ex.info.inputRange[1], 'float32', 4) as tf.Tensor4D;
    const want = expected(ex, head, x).arraySync();
    const bytes: Record<string, number> = {};
    for (const q of [undefined, 1, 2] as const) {
      const dir = path.join(tempDir(), 'out');
      await exportModel(ex, head, { dir, labels: LABELS, finalTensorName: 'final_result', quantizeBytes: q });
      const m = await loadPlain(dir, kind);
      const floats = m.json.weightsManifest[0]!.weights.filter((w) => w.dtype === 'float32');
      assert.ok(floats.length >= 5, 'module, hidden and final weights');
      assert.ok(floats.every((w) => w.quantization?.dtype === (q === 1 ? 'uint8' : q === 2 ? 'float16' : undefined)));
      const got = tf.tidy(() => m.predict(x).arraySync() as number[][]);
      const tol = q === 1 ? 0.05 : q === 2 ? 2e-3 : 1e-5;
      got.forEach((row, i) => row.forEach((p, k) => assert.ok(Math.abs(p - want[i]![k]!) < tol, `q=${q} [${i},${k}] ${p} vs ${want[i]![k]}`)));
      bytes[String(q)] = fs.statSync(path.join(dir, 'group1-shard1of1.bin')).size;
    }
    // Every weight of these fixtures is float32 except the graph's two int32 axes.
    const ints = kind === 'graph' ? 8 : 0;
    assert.equal(bytes['1']! - ints, (bytes['undefined']! - ints) / 4);
    assert.equal(bytes['2']! - ints, (bytes['undefined']! - ints) / 2);
    ex.dispose();
  });
}
