/**
 * Batches of module input straight from image files, for whatever works on pixels
 * rather than cached bottlenecks: fine-tuning (plain or distorted) and checking an export.
 */
import * as tf from '@tensorflow/tfjs';
import { decodeImage, toModuleInput, type InputSpec } from './index.js';
import { distortedInput, seededUniform, type DistortionSettings } from './distort.js';

/** [files.length, H, W, 3] module input for one step; `step` lets a source vary its randomness per step, reproducibly. */
export type ImageBatchSource = (files: string[], step: number) => Promise<tf.Tensor4D>;

/** Undistorted images: decode and squash-resize, exactly as the bottlenecks were made. */
export function plainImageBatches(spec: InputSpec): ImageBatchSource {
  return batches(spec, (img, out) => toModuleInput(img, spec, out));
}

/** Freshly distorted images (--random_crop/scale/brightness, --flip_left_right); the draws depend on --seed and the step only. */
export function distortedImageBatches(spec: InputSpec, settings: DistortionSettings, seed: number): ImageBatchSource {
  let rand = seededUniform(seed, 'finetune:0');
  return batches(spec, (img, out) => distortedInput(img, spec, settings, rand, out), (step) => {
    rand = seededUniform(seed, `finetune:${step}`);
  });
}

function batches(
  spec: InputSpec,
  fill: (img: Awaited<ReturnType<typeof decodeImage>>, out: Float32Array) => void,
  startStep: (step: number) => void = () => {},
): ImageBatchSource {
  const size = spec.height * spec.width * 3;
  return async (files, step) => {
    startStep(step);
    const buf = new Float32Array(files.length * size);
    for (const [i, f] of files.entries()) fill(await decodeImage(f), buf.subarray(i * size, (i + 1) * size));
    return tf.tensor4d(buf, [files.length, spec.height, spec.width, 3]);
  };
}
