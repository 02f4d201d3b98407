/**
 * retrain.py's `add_input_distortions`, as random parameters for `resizeWindow`:
 * resize (bilinear) to the module size times margin × scale, crop a random window of
 * the module size, mirror half of the images, multiply by a random brightness.
 */
import { createHash } from 'node:crypto';
import seedrandom from 'seedrandom';
import { resizeWindow, type InputSpec, type RgbImage, type Window } from './index.js';

/** The distortion flags, as percentages (retrain.py's units). */
export interface DistortionSettings {
  flipLeftRight: boolean;
  randomCrop: number;
  randomScale: number;
  randomBrightness: number;
}

export const NO_DISTORTIONS: DistortionSettings = { flipLeftRight: false, randomCrop: 0, randomScale: 0, randomBrightness: 0 };

/** retrain.py's `should_distort_images`. */
export function distortionsOn(s: DistortionSettings): boolean {
  return s.flipLeftRight || s.randomCrop !== 0 || s.randomScale !== 0 || s.randomBrightness !== 0;
}

/** A random source in [0, 1); seeded, so the same seed and stream give the same draws. */
export type Uniform = () => number;

export function seededUniform(seed: number, stream: string): Uniform {
  return seedrandom(`${seed}:distort:${stream}`);
}

/** Draws one window: the same draws, in the same order, as retrain.py's graph. */
export function randomWindow(spec: Pick<InputSpec, 'height' | 'width'>, s: DistortionSettings, rand: Uniform): Window {
  const margin = 1 + s.randomCrop / 100;
  const factor = 1 + rand() * (s.randomScale / 100);
  // retrain.py casts the pre-crop size to int32, i.e. truncates.
  const scaledHeight = Math.trunc(spec.height * margin * factor);
  const scaledWidth = Math.trunc(spec.width * margin * factor);
  const offsetY = Math.floor(rand() * (scaledHeight - spec.height + 1));
  const offsetX = Math.floor(rand() * (scaledWidth - spec.width + 1));
  const flip = s.flipLeftRight && rand() < 0.5;
  const brightness = 1 - s.randomBrightness / 100 + rand() * ((2 * s.randomBrightness) / 100);
  return { scaledHeight, scaledWidth, offsetY, offsetX, flip, brightness };
}

/** A distorted module input for one image. */
export function distortedInput(img: RgbImage, spec: InputSpec, s: DistortionSettings, rand: Uniform, out?: Float32Array): Float32Array {
  return resizeWindow(img, spec.height, spec.width, spec.mean, spec.std, randomWindow(spec, s, rand), out);
}

/**
 * A short tag for cache file names: changing any setting or the seed gives another
 * name, so stale distorted bottlenecks are never reused.
 */
export function distortionTag(s: DistortionSettings, seed: number, variant: number): string {
  const key = JSON.stringify([s.flipLeftRight, s.randomCrop, s.randomScale, s.randomBrightness, seed]);
  return `distort-${createHash('sha256').update(key).digest('hex').slice(0, 10)}-v${variant}`;
}
