/** --quantize int8: weight scales and activation ranges chosen by least squared error. */
import assert from 'node:assert/strict';
import test from 'node:test';
import seedrandom from 'seedrandom';
import { HISTOGRAM_BINS, ValueHistogram, mseRange, quantizationError } from '../src/export/calibrate_range.js';
import { quantizeSymmetric } from '../src/graph/to_tflite.js';

const sqError = (data: Float32Array, q: Int8Array, scales: number[]) => {
  const per = data.length / scales.length;
  return data.reduce((e, v, i) => e + (v - q[i]! * scales[Math.floor(i / per)]!) ** 2, 0);
};

/** Normal-ish values (sum of uniforms) from a seed. */
function gaussian(n: number, seed: string): Float32Array {
  const rng = seedrandom(seed);
  return Float32Array.from({ length: n }, () => rng() + rng() + rng() + rng() - 2);
}

test('weights: one outlier no longer sets the step for the whole channel; the error never exceeds max|w|/127', () => {
  const plain = gaussian(1000, 'w');
  const outlier = Float32Array.from(plain);
  outlier[0] = 20;
  const data = new Float32Array([...plain, ...outlier]);
  const { q, scales } = quantizeSymmetric(data, 2);
  assert.equal(scales.length, 2);
  for (const [c, ch] of [plain, outlier].entries()) {
    const m = ch.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    const s = scales[c]!;
    assert.ok(s >= (0.5 * m) / 127 - 1e-12 && s <= m / 127 + 1e-12, `scale ${s} outside [0.5, 1]·max/127`);
    const got = sqError(ch, q.subarray(c * 1000, (c + 1) * 1000), [s]);
    const maxScale = m / 127;
    const naive = sqError(ch, Int8Array.from(ch, (v) => Math.round(v / maxScale)), [maxScale]);
    assert.ok(got <= naive + 1e-9, `channel ${c}: ${got} > ${naive}`);
  }
  // The outlier channel clips its outlier: the search found a scale below max/127 worth it.
  assert.ok(scales[1]! < 20 / 127, `outlier channel kept scale ${scales[1]}`);
  assert.ok(q.every((v) => v >= -127 && v <= 127));
});

test('weights: an all-zero channel gets scale 1 and zeros; a channel of two values keeps them exact', () => {
  const { q, scales } = quantizeSymmetric(new Float32Array([0, 0, 0, 0.5, -0.5, 0.5]), 2);
  assert.deepEqual(scales, [1, 0.5 / 127]);
  assert.deepEqual([...q], [0, 0, 0, 127, -127, 127]);
});

test('histogram: growing the range keeps every count and zero at the centre', () => {
  const h = new ValueHistogram();
  h.add([0, 0.5, -0.5, 1]);
  assert.equal(h.radius, 1);
  h.add([3.5, -0.25, 0]);
  assert.equal(h.radius, 4);
  assert.equal(h.zeros, 2);
  assert.equal(h.bins.reduce((a, b) => a + b, 0), 5);
  assert.deepEqual([h.min, h.max], [-0.5, 3.5]);
  // Signs stay on their side of the centre; 0.5 (binned at radius 1) sits in the bin that holds 0.5 at radius 4.
  const half = HISTOGRAM_BINS / 2;
  assert.equal(h.bins.subarray(0, half).reduce((a, b) => a + b, 0), 2);
  assert.equal(h.bins.subarray(half).reduce((a, b) => a + b, 0), 3);
  assert.equal(h.bins[Math.floor(((0.5 + 4) / 8) * HISTOGRAM_BINS)], 1);
});

test('ranges: a rare extreme value is clipped when that lowers the squared error; a uniform spread is kept whole', () => {
  const spread = new ValueHistogram();
  const rng = seedrandom('u');
  spread.add(Float32Array.from({ length: 20000 }, () => rng() * 6));
  const [lo, hi] = mseRange(spread);
  assert.equal(lo, spread.min);
  assert.ok(hi > 0.97 * spread.max, `uniform values clipped at ${hi} of ${spread.max}`);

  const tail = new ValueHistogram();
  tail.add(gaussian(20000, 'a'));
  tail.add([40]);
  const r = mseRange(tail);
  assert.ok(r[1] < 40, `the outlier kept the range at ${r[1]}`);
  assert.ok(quantizationError(tail, r[0], r[1]) < quantizationError(tail, tail.min, tail.max));
  assert.ok(r[1] >= 0.2 * 40 - 1e-9, 'clipped below the smallest candidate');
});

test('ranges: only zeros give the zero range; a histogram with no values is refused', () => {
  const z = new ValueHistogram();
  z.add([0, 0, 0]);
  assert.deepEqual(mseRange(z), [0, 0]);
  assert.throws(() => mseRange(new ValueHistogram()), /no calibration values/);
});
