/**
 * The check that keeps ONNX Runtime from being silently wrong: one probe batch
 * through both engines, compared element by element.
 */
import * as tf from '@tensorflow/tfjs';
import type { OnnxSession } from './session.js';

/** Above this max abs difference the caller warns and keeps tfjs for the module. */
export const PROBE_TOLERANCE = 1e-3;

export interface ProbeOptions {
  /** Images in the probe batch; default 2. */
  batch?: number;
  /** Input values are uniform in this range (the module's input range); default [-1, 1]. */
  range?: [number, number];
  seed?: number;
}

/** Max abs difference between ORT's and tfjs' bottlenecks on a seeded random batch; Infinity if the shapes differ. */
export async function probeMaxAbsDiff(
  session: OnnxSession,
  tfjsExtract: (x: tf.Tensor4D) => tf.Tensor,
  height: number,
  width: number,
  opts: ProbeOptions = {},
): Promise<number> {
  const n = opts.batch ?? 2;
  const [lo, hi] = opts.range ?? [-1, 1];
  const batch = tf.tidy(() => tf.randomUniform([n, height, width, 3], lo, hi, 'float32', opts.seed ?? 1).dataSync() as Float32Array);
  return engineMaxAbsDiff(session, tfjsExtract, batch, n, height, width);
}

/** Max abs difference between the two engines' outputs on `batch` ([n, h, w, 3]); Infinity if the shapes differ. */
export async function engineMaxAbsDiff(
  session: OnnxSession,
  tfjsExtract: (x: tf.Tensor4D) => tf.Tensor,
  batch: Float32Array,
  n: number,
  height: number,
  width: number,
): Promise<number> {
  const ref = tf.tidy(() => tfjsExtract(tf.tensor4d(batch, [n, height, width, 3])).reshape([n, -1]));
  const want = (await ref.data()) as Float32Array;
  ref.dispose();
  return maxAbsDiff(await session.run(batch, n, height, width), want);
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i]! - b[i]!);
    // NaN anywhere counts as a mismatch.
    if (!(e <= d)) d = Number.isNaN(e) ? Infinity : e;
  }
  return d;
}
