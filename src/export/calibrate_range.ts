/**
 * --quantize int8: an activation's range chosen from a histogram of its calibration values,
 * by the least squared quantization error, rather than its min and max. A handful of
 * extreme values would otherwise stretch the int8 step for all the others; clipping them
 * costs less than the coarser step when the histogram says so.
 */
import type { ValueRange } from '../graph/quantize.js';

/** Bins over [-R, R]; the range doubles as larger values arrive, so one pass is enough. */
export const HISTOGRAM_BINS = 2048;

/** Candidate clips, as fractions of the observed range: 1, 0.99, …, 0.2. */
const CLIPS = Array.from({ length: 81 }, (_, i) => 1 - i / 100);

export class ValueHistogram {
  readonly bins = new Float64Array(HISTOGRAM_BINS);
  /** Half-width of the binned range (0 until a non-zero value arrives). */
  radius = 0;
  /** Exact zeros (ReLU outputs are full of them): int8 stores them without error. */
  zeros = 0;
  min = Infinity;
  max = -Infinity;

  add(values: ArrayLike<number>): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(lo <= hi)) return;
    this.min = Math.min(this.min, lo);
    this.max = Math.max(this.max, hi);
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    if (m === 0) {
      this.zeros += values.length;
      return;
    }
    if (this.radius === 0) this.radius = m;
    while (m > this.radius) this.grow();
    const per = HISTOGRAM_BINS / (2 * this.radius);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v === 0) this.zeros++;
      else this.bins[Math.min(HISTOGRAM_BINS - 1, Math.floor((v + this.radius) * per))]++;
    }
  }

  /** Doubles the range: old bins i and i+1 (even i) merge into bin B/4 + i/2, so 0 stays at the centre. */
  private grow(): void {
    const merged = new Float64Array(HISTOGRAM_BINS);
    for (let i = 0; i < HISTOGRAM_BINS; i++) merged[HISTOGRAM_BINS / 4 + Math.floor(i / 2)]! += this.bins[i]!;
    this.bins.set(merged);
    this.radius *= 2;
  }
}

/**
 * Squared error of storing the histogram's values as int8 over [lo, hi] (widened to hold 0,
 * as TFLite's parameters are): a value inside is off by a uniform rounding error, step²/12;
 * a value outside is clipped to the nearest end.
 */
export function quantizationError(h: ValueHistogram, lo: number, hi: number): number {
  const a = Math.min(0, lo);
  const b = Math.max(0, hi);
  const step = (b - a) / 255;
  const inside = (step * step) / 12;
  const width = (2 * h.radius) / HISTOGRAM_BINS;
  let e = 0;
  for (let i = 0; i < HISTOGRAM_BINS; i++) {
    const n = h.bins[i]!;
    if (n === 0) continue;
    const x = -h.radius + (i + 0.5) * width;
    const d = x < a ? a - x : x > b ? x - b : 0;
    e += n * (d > 0 ? d * d : inside);
  }
  return e;
}

/**
 * The range of least squared error: the top end clipped to c·max, then the bottom to c·min,
 * c from 1 down to 0.2 (one end at a time: a ReLU's bottom stays 0 whatever its top does,
 * and a lopsided spread is not clipped on its short side). Ties keep the wider range.
 */
export function mseRange(h: ValueHistogram): ValueRange {
  if (!(h.min <= h.max)) throw new Error('no calibration values');
  if (h.radius === 0) return [h.min, h.max];
  const best = (candidates: (c: number) => ValueRange): ValueRange => {
    let r = candidates(1);
    let bestError = Infinity;
    for (const c of CLIPS) {
      const t = candidates(c);
      const e = quantizationError(h, t[0], t[1]);
      if (e < bestError) [bestError, r] = [e, t];
    }
    return r;
  };
  const hi = h.max > 0 ? best((c) => [h.min, c * h.max])[1] : h.max;
  const lo = h.min < 0 ? best((c) => [c * h.min, hi])[0] : h.min;
  return [lo, hi];
}
