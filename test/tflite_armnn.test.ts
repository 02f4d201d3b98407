/**
 * The Arm NN harness (test/helpers/armnn.ts, test/tools/armnn_run.py): an independent TFLite
 * runtime runs models written with the generated code alone, float32 and full integer, and
 * the reference .tflite that the TFLite tools made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { appendAssociatedFiles, buildModelMetadata, readTfliteMetadata } from '../src/export/tflite/metadata.js';
import { REFERENCE_TFLITE, SKIP_REFERENCE } from './helpers/flatc.js';
import { SKIP_ARMNN, runArmnn } from './helpers/armnn.js';
import { tinyClassifier, tinyClassifierReference, tinyQuantizedClassifier, type TinyClassifier } from './helpers/tiny_tflite.js';

const SPEC: TinyClassifier = {
  height: 6,
  width: 5,
  weights: Float32Array.from({ length: 15 }, (_, i) => Math.sin(i + 1) * 2),
  bias: Float32Array.from({ length: 5 }, (_, i) => i / 10 - 0.2),
};
const PIXELS = SPEC.height * SPEC.width * 3;

/** Three images whose channel means differ, as 0..255 pixels. */
const IMAGES = [0, 1, 2].map((k) => Uint8Array.from({ length: PIXELS }, (_, i) => Math.round(127.5 + 100 * Math.cos(k * 2 + (i % 3)) + 20 * Math.sin(i))));

function concat<T extends Float32Array | Uint8Array>(parts: T[], make: (n: number) => T): T {
  const out = make(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const argmax = (v: number[]): number => v.indexOf(Math.max(...v));

test('Arm NN runs a float32 model with metadata and an appended zip, matching the maths', { skip: SKIP_ARMNN }, async () => {
  const metadata = buildModelMetadata({ name: 't', description: 'd', version: 'v1', author: 'a', license: 'l', mean: 0, std: 255, classes: 5 });
  const bytes = await appendAssociatedFiles(tinyClassifier({ ...SPEC, metadata }), [{ name: 'labels.txt', data: 'a\nb\nc\nd\ne\n' }]);
  const inputs = IMAGES.map((img) => Float32Array.from(img, (p) => p / 255));
  const result = runArmnn(bytes, concat(inputs, (n) => new Float32Array(n)));
  assert.deepEqual(result.input, { shape: [1, 6, 5, 3], dtype: 'float32', scale: 0, zero_point: 0 });
  assert.equal(result.outputs.length, 3);
  inputs.forEach((x, k) => {
    const want = tinyClassifierReference(SPEC, x);
    const got = result.outputs[k]!;
    assert.ok(got.every((v, i) => Math.abs(v - want[i]!) < 1e-5), `image ${k}: ${got} vs ${want}`);
  });
});

// Arm NN 20.08 aborts on a FULLY_CONNECTED with one weight scale per output row, so the
// per-channel case is a convolution, as TFLite's converter quantizes them.
for (const layer of ['fc', 'conv'] as const) {
  test(`Arm NN runs a full-integer model (uint8 in and out, int8 ${layer === 'fc' ? 'FULLY_CONNECTED' : 'per-channel CONV_2D'})`, { skip: SKIP_ARMNN }, () => {
    const q = tinyQuantizedClassifier(SPEC, layer);
    const result = runArmnn(q.model, concat(IMAGES, (n) => new Uint8Array(n)));
    assert.equal(result.input.dtype, 'uint8');
    assert.ok(Math.abs(result.input.scale - q.inputScale) < 1e-9);
    assert.deepEqual([result.output.dtype, result.output.scale, result.output.zero_point], ['uint8', 1 / 256, 0]);
    IMAGES.forEach((img, k) => {
      const want = tinyClassifierReference(SPEC, Array.from(img, (p) => p * q.inputScale));
      const got = result.outputs[k]!.map((v) => v * q.outputScale);
      assert.ok(got.every((v, i) => Math.abs(v - want[i]!) < 0.02), `image ${k}: ${got} vs ${want}`);
      assert.equal(argmax(got), argmax(want));
    });
  });
}

const DAISY = path.resolve(REFERENCE_TFLITE, '../../../datasets/flowers-dev/daisy/2019064575_7656b9340f_m.jpg');

test('Arm NN classifies a daisy with the reference .tflite, as its PROVENANCE.md says', { skip: SKIP_ARMNN || SKIP_REFERENCE }, async () => {
  const bytes = new Uint8Array(fs.readFileSync(REFERENCE_TFLITE));
  const meta = await readTfliteMetadata(bytes);
  // Pixels normalised as the file's metadata says.
  const { data } = await sharp(DAISY)
    .removeAlpha()
    .resize(meta.inputWidth, meta.inputHeight, { fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const x = Float32Array.from(data, (p, i) => (p - meta.mean[i % meta.mean.length]!) / meta.std[i % meta.std.length]!);
  const probs = runArmnn(REFERENCE_TFLITE, x).outputs[0]!;
  const top = argmax(probs);
  assert.equal(meta.labels[top], 'daisy');
  // PROVENANCE.md: 0.958 on a daisy photo; resizing differs a little between tools.
  assert.ok(Math.abs(probs[top]! - 0.958) < 0.03, `p(daisy) = ${probs[top]}`);
});
