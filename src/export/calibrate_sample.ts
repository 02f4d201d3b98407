/** Which training images calibrate int8 activation ranges (--quantize int8). */

/** TFLite's guides suggest a few hundred representative images; more changes ranges little. */
export const CALIBRATION_IMAGES = 200;

/** Up to `n` files spread evenly over the sorted list: the same images for the same training set, whatever the seed. */
export function calibrationSample(files: string[], n = CALIBRATION_IMAGES): string[] {
  const sorted = [...files].sort();
  if (sorted.length <= n) return sorted;
  return Array.from({ length: n }, (_, i) => sorted[Math.floor((i * sorted.length) / n)]!);
}
