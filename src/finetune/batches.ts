/**
 * Where fine-tuning's image batches come from. Fine-tuning trains on pixels, not
 * cached bottlenecks, so every step decodes its images again; a source that
 * distorts them (random crop, scale, brightness, flip) plugs in here with the same type.
 */
import * as tf from '@tensorflow/tfjs';
import { decodeImage, toModuleInput, type InputSpec } from '../image/index.js';

/** [files.length, H, W, 3] module input for one step; `step` lets a source vary its randomness per step, reproducibly. */
export type ImageBatchSource = (files: string[], step: number) => Promise<tf.Tensor4D>;

/** Undistorted images: decode and squash-resize, exactly as the bottlenecks were made. */
export function plainImageBatches(spec: InputSpec): ImageBatchSource {
  const size = spec.height * spec.width * 3;
  return async (files) => {
    const buf = new Float32Array(files.length * size);
    for (const [i, f] of files.entries()) toModuleInput(await decodeImage(f), spec, buf.subarray(i * size, (i + 1) * size));
    return tf.tensor4d(buf, [files.length, spec.height, spec.width, 3]);
  };
}
