import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import {
  distortedInput,
  distortionTag,
  distortionsOn,
  randomWindow,
  seededUniform,
  type DistortionSettings,
} from '../src/image/distort.js';
import { resizeWindow, toModuleInput, type InputSpec, type RgbImage } from '../src/image/index.js';
import { UsageError } from '../src/errors.js';
import { MemoryLogger } from '../src/log.js';
import { defaultRetrainOptions, runRetrain, type RetrainOptions } from '../src/retrain.js';
import { retrainCommand } from '../src/cli/retrain.js';
import { optionsFromCommand } from '../src/cli/flags.js';
import { RETRAIN_FLAGS, validateRetrainOptions } from '../src/flags/retrain.js';
import { makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

/** Raw pixels, so values are exact: mean 0, std 1 keeps them in 0..255. */
const RAW: InputSpec = { height: 24, width: 20, mean: 0, std: 1 };
const OFF: DistortionSettings = { flipLeftRight: false, randomCrop: 0, randomScale: 0, randomBrightness: 0 };

function noiseImage(width: number, height: number, seed: number): RgbImage {
  const rng = seedrandom(String(seed));
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rng() * 256);
  return { data, width, height };
}

const img = noiseImage(37, 29, 3);

before(useCpuBackend);

test('distortions are off unless a flag is set, and bad percentages are usage errors', () => {
  assert.equal(distortionsOn(OFF), false);
  assert.equal(distortionsOn({ ...OFF, flipLeftRight: true }), true);
  assert.equal(distortionsOn({ ...OFF, randomScale: 5 }), true);
  const check = (o: Partial<DistortionSettings>) => validateRetrainOptions({ ...defaultRetrainOptions(), imageDir: 'x', ...o });
  assert.throws(() => check({ randomCrop: -1 }), UsageError);
  assert.throws(() => check({ randomBrightness: 150 }), /--random_brightness 150/);
  assert.throws(() => check({ randomScale: NaN }), /--random_scale/);
});

test('a flip is an exact mirror of the undistorted image, for about half of the draws', () => {
  const plain = toModuleInput(img, RAW);
  const { height: H, width: W } = RAW;
  let flipped = 0;
  for (let s = 0; s < 200; s++) {
    const out = distortedInput(img, RAW, { ...OFF, flipLeftRight: true }, seededUniform(s, 'flip'));
    const mirrored = out.some((v, i) => v !== plain[i]);
    if (mirrored) flipped++;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) {
          const src = mirrored ? W - 1 - x : x;
          assert.equal(out[(y * W + x) * 3 + c], plain[(y * W + src) * 3 + c]);
        }
      }
    }
  }
  assert.ok(flipped > 70 && flipped < 130, `${flipped} of 200 flipped`);
});

/** The image resized by TensorFlow's own legacy bilinear resize (align_corners and half_pixel_centers false). */
function tfResized(image: RgbImage, h: number, w: number): Float32Array {
  return tf.tidy(() => {
    const t = tf.tensor4d(Float32Array.from(image.data), [1, image.height, image.width, 3]);
    return tf.image.resizeBilinear(t, [h, w], false, false).dataSync() as Float32Array;
  });
}

test('a crop is a window of the module size inside the image resized to size x margin x scale', () => {
  const settings: DistortionSettings = { ...OFF, randomCrop: 30, randomScale: 40 };
  const { height: H, width: W } = RAW;
  const offsets = new Set<string>();
  const sizes = new Set<number>();
  for (let s = 0; s < 40; s++) {
    const win = randomWindow(RAW, settings, seededUniform(s, 'crop'));
    // margin 1.3 always; scale factor in [1, 1.4]
    assert.ok(win.scaledHeight >= Math.trunc(H * 1.3) && win.scaledHeight <= Math.trunc(H * 1.3 * 1.4), `height ${win.scaledHeight}`);
    assert.ok(win.scaledWidth >= Math.trunc(W * 1.3) && win.scaledWidth <= Math.trunc(W * 1.3 * 1.4), `width ${win.scaledWidth}`);
    assert.ok(win.offsetY >= 0 && win.offsetY + H <= win.scaledHeight);
    assert.ok(win.offsetX >= 0 && win.offsetX + W <= win.scaledWidth);
    assert.equal(win.flip, false);
    assert.equal(win.brightness, 1);
    offsets.add(`${win.offsetY},${win.offsetX}`);
    sizes.add(win.scaledHeight);

    const out = distortedInput(img, RAW, settings, seededUniform(s, 'crop'));
    assert.equal(out.length, H * W * 3);
    const full = tfResized(img, win.scaledHeight, win.scaledWidth);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) {
          const want = full[((y + win.offsetY) * win.scaledWidth + x + win.offsetX) * 3 + c]!;
          const got = out[(y * W + x) * 3 + c]!;
          assert.ok(Math.abs(got - want) < 1e-3, `seed ${s} at ${y},${x},${c}: ${got} vs ${want}`);
        }
      }
    }
  }
  assert.ok(offsets.size > 10, 'offsets vary with the draws');
  assert.ok(sizes.size > 3, 'the scale factor varies with the draws');
});

test('crop without scale upscales by exactly the margin', () => {
  for (let s = 0; s < 20; s++) {
    const win = randomWindow({ height: 224, width: 224 }, { ...OFF, randomCrop: 15 }, seededUniform(s, 'margin'));
    assert.equal(win.scaledHeight, 257); // int(224 * 1.15 = 257.6), as retrain.py's cast
    assert.equal(win.scaledWidth, 257);
  }
});

test('brightness multiplies every pixel by one factor within its bounds', () => {
  const plain = toModuleInput(img, RAW);
  const factors: number[] = [];
  for (let s = 0; s < 200; s++) {
    const out = distortedInput(img, RAW, { ...OFF, randomBrightness: 25 }, seededUniform(s, 'bright'));
    let factor = NaN;
    for (let i = 0; i < out.length; i++) {
      if (plain[i]! < 20) continue;
      const f = out[i]! / plain[i]!;
      if (Number.isNaN(factor)) factor = f;
      assert.ok(Math.abs(f - factor) < 1e-4, 'one factor per image');
    }
    assert.ok(factor >= 0.75 && factor <= 1.25, `factor ${factor}`);
    factors.push(factor);
  }
  assert.ok(Math.min(...factors) < 0.8 && Math.max(...factors) > 1.2, 'draws reach near both bounds');
});

test('brightness applies to pixel values before the module range normalisation', () => {
  const spec: InputSpec = { height: 8, width: 8, mean: 127.5, std: 127.5 }; // [-1, 1]
  const win = { scaledHeight: 8, scaledWidth: 8, offsetY: 0, offsetX: 0, flip: false, brightness: 0.5 };
  const dim = resizeWindow(img, 8, 8, spec.mean, spec.std, win);
  const raw = resizeWindow(img, 8, 8, 0, 1, { ...win, brightness: 1 });
  dim.forEach((v, i) => assert.ok(Math.abs(v - (raw[i]! * 0.5 - 127.5) / 127.5) < 1e-5));
});

test('the same seed gives the same pixels; another seed or stream gives others', () => {
  const all: DistortionSettings = { flipLeftRight: true, randomCrop: 20, randomScale: 20, randomBrightness: 20 };
  const a = distortedInput(img, RAW, all, seededUniform(42, 'cls/a.jpg:0'));
  const b = distortedInput(img, RAW, all, seededUniform(42, 'cls/a.jpg:0'));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, distortedInput(img, RAW, all, seededUniform(43, 'cls/a.jpg:0')));
  assert.notDeepEqual(a, distortedInput(img, RAW, all, seededUniform(42, 'cls/a.jpg:1')));
});

test('the cache tag changes with every setting, the seed and the variant', () => {
  const all: DistortionSettings = { flipLeftRight: true, randomCrop: 10, randomScale: 10, randomBrightness: 10 };
  const tags = new Set([
    distortionTag(all, 0, 0),
    distortionTag(all, 0, 1),
    distortionTag(all, 1, 0),
    distortionTag({ ...all, flipLeftRight: false }, 0, 0),
    distortionTag({ ...all, randomCrop: 11 }, 0, 0),
    distortionTag({ ...all, randomScale: 11 }, 0, 0),
    distortionTag({ ...all, randomBrightness: 11 }, 0, 0),
  ]);
  assert.equal(tags.size, 7);
  assert.equal(distortionTag(all, 0, 0), distortionTag({ ...all }, 0, 0));
});

test('the CLI maps the distortion flags, with retrain.py defaults (all off)', () => {
  const parse = (args: string[]) => optionsFromCommand(retrainCommand().parse(['node', 'retrain', ...args]), RETRAIN_FLAGS);
  const pick = (o: DistortionSettings): DistortionSettings => ({ flipLeftRight: o.flipLeftRight, randomCrop: o.randomCrop, randomScale: o.randomScale, randomBrightness: o.randomBrightness });
  const d = parse(['--image_dir', 'x']);
  assert.deepEqual(pick(d), OFF);
  assert.equal(d.distortionVariants, 10);
  const o = parse(['--image_dir', 'x', '--flip_left_right', '--random_crop', '5', '--random_scale', '7.5', '--random_brightness', '9', '--distortion_variants', '0']);
  assert.deepEqual(pick(o), { flipLeftRight: true, randomCrop: 5, randomScale: 7.5, randomBrightness: 9 });
  assert.equal(o.distortionVariants, 0);
});

test('a bad distortion flag is one line and exit status 2', () => {
  const r = runCli('retrain', ['--image_dir', 'x', '--random_brightness', '120']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--random_brightness 120 must be a percentage from 0 to 100/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  const v = runCli('retrain', ['--image_dir', 'x', '--distortion_variants', 'lots']);
  assert.equal(v.status, 2);
  assert.match(v.stderr, /--distortion_variants needs a whole number/);
});

describeRuns();

function describeRuns(): void {
  let root: string;
  let base: RetrainOptions;
  const all: DistortionSettings = { flipLeftRight: true, randomCrop: 10, randomScale: 10, randomBrightness: 10 };

  before(async () => {
    root = tempDir('retrain-distort-');
    const imageDir = await makeImageDir(path.join(root, 'images'), { perClass: 10, width: 40, height: 30 });
    const module = await makeLayersModel(path.join(root, 'module'));
    base = {
      ...defaultRetrainOptions(),
      imageDir,
      tfhubModule: module,
      moduleCacheDir: path.join(root, 'modules'),
      bottleneckDir: path.join(root, 'bottlenecks'),
      outputGraph: path.join(root, 'out'),
      outputLabels: path.join(root, 'labels.txt'),
      intermediateOutputGraphsDir: path.join(root, 'intermediate'),
      howManyTrainingSteps: 6,
      trainBatchSize: 8,
      evalStepInterval: 2,
      testingPercentage: 20,
      validationPercentage: 20,
      backend: 'cpu',
      seed: 5,
    };
  });

  const distortedFiles = (): string[] =>
    fs
      .readdirSync(base.bottleneckDir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.includes('_distort-'))
      .sort();

  const run = async (o: Partial<RetrainOptions>) => {
    const log = new MemoryLogger();
    const r = await runRetrain({ ...base, ...o }, log);
    return { ...r, log };
  };

  test('variants: K distorted bottlenecks per training image are cached, reused, and redone when settings change', async () => {
    const first = await run({ ...all, distortionVariants: 3 });
    const trainingImages = Object.values(first.summary.split['training']!).reduce((n, names) => n + names.length, 0);
    assert.ok(trainingImages > 0);
    const files = distortedFiles();
    assert.equal(files.length, 3 * trainingImages);
    for (let v = 0; v < 3; v++) assert.equal(files.filter((f) => f.endsWith(`-v${v}.bin`)).length, trainingImages);
    assert.ok(first.log.lines.some((l) => l.includes(`Distorted bottlenecks: ${3 * trainingImages} computed, 0 cached`)));

    const again = await run({ ...all, distortionVariants: 3 });
    assert.ok(again.log.lines.some((l) => l.includes(`Distorted bottlenecks: 0 computed, ${3 * trainingImages} cached`)));
    assert.deepEqual(again.summary.training, first.summary.training, 'a rerun with the same seed gives the same training');

    const other = await run({ ...all, randomBrightness: 20, distortionVariants: 3 });
    assert.ok(other.log.lines.some((l) => l.includes(`Distorted bottlenecks: ${3 * trainingImages} computed, 0 cached`)));
    assert.equal(distortedFiles().length, 6 * trainingImages);
  });

  test('variants train on distorted bottlenecks: results differ from an undistorted run', async () => {
    const plain = await run({});
    const distorted = await run({ ...all, distortionVariants: 3 });
    assert.notDeepEqual(distorted.summary.training!.history, plain.summary.training!.history);
    // Validation and test use the undistorted bottlenecks of the same images.
    assert.equal(distorted.summary.test!.n, plain.summary.test!.n);
  });

  test('variants 0: fresh distortions every step, repeatable with the same seed, nothing extra cached', async () => {
    const before = distortedFiles().length;
    const a = await run({ ...all, distortionVariants: 0 });
    const b = await run({ ...all, distortionVariants: 0 });
    const plain = await run({});
    assert.equal(distortedFiles().length, before);
    assert.ok(a.log.lines.some((l) => l.includes('fresh bottlenecks at every training step')));
    assert.deepEqual(a.summary.training, b.summary.training);
    assert.notDeepEqual(a.summary.training!.history, plain.summary.training!.history);
    const c = await run({ ...all, distortionVariants: 0, seed: 6 });
    assert.notDeepEqual(c.summary.training!.history, a.summary.training!.history);
  });

  test('--distortion_variants must be a whole number of 0 or more', async () => {
    await assert.rejects(run({ ...all, distortionVariants: -1 }), /--distortion_variants -1/);
    await assert.rejects(run({ ...all, randomCrop: -5 }), /--random_crop -5/);
  });
}
