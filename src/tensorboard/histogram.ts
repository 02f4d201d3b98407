/**
 * TensorFlow's histogram summary (core/lib/histogram/histogram.cc): fixed bucket edges
 * growing by 10% from ±1e-12 to ±1e20 around 0, with runs of empty buckets collapsed,
 * so TensorBoard draws our histograms exactly as it draws retrain.py's.
 */
export interface Histogram {
  min: number;
  max: number;
  num: number;
  sum: number;
  sumSquares: number;
  bucketLimit: number[];
  bucket: number[];
}

const DBL_MAX = Number.MAX_VALUE;

function defaultLimits(): Float64Array {
  const pos: number[] = [];
  // Same multiply loop as the C++, so the edges are bit-identical.
  for (let v = 1e-12; v < 1e20; v *= 1.1) pos.push(v);
  pos.push(DBL_MAX);
  const neg = pos.map((v) => -v).reverse();
  return Float64Array.from([...neg, 0, ...pos]);
}

export const BUCKET_LIMITS = defaultLimits();

const ZERO = (BUCKET_LIMITS.length - 1) / 2;
const LOG_GROWTH = Math.log(1.1);

/** First index whose limit is above v (C++ std::upper_bound). */
function upperBound(limits: Float64Array, v: number): number {
  // Guess from the geometric growth, then settle on the exact edge: a plain binary
  // search costs a third of an evaluation step for a 1024x100 head.
  const a = Math.abs(v);
  if (a >= 1e-12 && a < 1e19) {
    const k = Math.floor(Math.log(a / 1e-12) / LOG_GROWTH);
    let i = v > 0 ? ZERO + 1 + k : ZERO - k;
    while (i > 0 && limits[i - 1]! > v) i--;
    while (i < limits.length && limits[i]! <= v) i++;
    return i;
  }
  let lo = 0;
  let hi = limits.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (limits[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function histogram(values: ArrayLike<number>): Histogram {
  const counts = new Float64Array(BUCKET_LIMITS.length);
  let min = DBL_MAX;
  let max = -DBL_MAX;
  let sum = 0;
  let sumSquares = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    counts[Math.min(upperBound(BUCKET_LIMITS, v), counts.length - 1)]! += 1;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sumSquares += v * v;
  }
  const bucketLimit: number[] = [];
  const bucket: number[] = [];
  for (let i = 0; i < counts.length; ) {
    let end = BUCKET_LIMITS[i]!;
    let count = counts[i]!;
    i++;
    if (count <= 0) {
      while (i < counts.length && counts[i]! <= 0) {
        end = BUCKET_LIMITS[i]!;
        count = counts[i]!;
        i++;
      }
    }
    bucketLimit.push(end);
    bucket.push(count);
  }
  return { min, max, num: values.length, sum, sumSquares, bucketLimit, bucket };
}

/** retrain.py's variable_summaries: mean, stddev (population), max, min. */
export function moments(values: ArrayLike<number>): { mean: number; stddev: number; max: number; min: number } {
  let sum = 0;
  let max = -Infinity;
  let min = Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    sum += v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  const mean = sum / values.length;
  let sq = 0;
  for (let i = 0; i < values.length; i++) sq += (values[i]! - mean) ** 2;
  return { mean, stddev: Math.sqrt(sq / values.length), max, min };
}
