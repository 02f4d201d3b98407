import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { decodeImage, rangeToMeanStd, resizeWindow, toModuleInput, PLAIN_WINDOW } from '../src/image/index.js';
import { ImageError } from '../src/errors.js';
import { tempDir, useCpuBackend } from './helpers/fixtures.js';

function gradient(w: number, h: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const o = (y * w + x) * 3;
    px[o] = (x * 255) / (w - 1);
    px[o + 1] = (y * 255) / (h - 1);
    px[o + 2] = (x * 7 + y * 13) % 256;
  }
  return px;
}

test('resize matches TensorFlow 1 resize_bilinear (tf.image.resizeBilinear, no align corners)', async () => {
  await useCpuBackend();
  for (const [w, h, ow, oh] of [[37, 23, 16, 16], [10, 10, 24, 17], [300, 200, 224, 224]] as const) {
    const data = gradient(w, h);
    const ours = resizeWindow({ data, width: w, height: h }, oh, ow, 0, 1, PLAIN_WINDOW(oh, ow));
    const ref = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(data, [h, w, 3], 'int32').toFloat(), [oh, ow], false, false).dataSync());
    let max = 0;
    for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(ref[i]! - ours[i]!));
    assert.ok(max < 1e-3, `${w}x${h}→${ow}x${oh}: max diff ${max}`);
  }
});

test('toModuleInput maps pixels onto the module range', () => {
  const data = Buffer.from([0, 255, 128, 0, 255, 128, 0, 255, 128, 0, 255, 128]);
  const img = { data, width: 2, height: 2 };
  const r01 = toModuleInput(img, { height: 2, width: 2, ...rangeToMeanStd([0, 1]) });
  assert.deepEqual(Array.from(r01.slice(0, 3)).map((v) => +v.toFixed(5)), [0, 1, +(128 / 255).toFixed(5)]);
  const r11 = toModuleInput(img, { height: 2, width: 2, ...rangeToMeanStd([-1, 1]) });
  assert.deepEqual(Array.from(r11.slice(0, 3)).map((v) => +v.toFixed(5)), [-1, 1, +(128 / 127.5 - 1).toFixed(5)]);
});

test('decodeImage: formats and colour spaces all become upright 8-bit RGB', async () => {
  const dir = tempDir();
  const w = 6;
  const h = 4;
  const rgb = gradient(w, h);
  const raw = { raw: { width: w, height: h, channels: 3 as const } };
  const files: Record<string, Promise<unknown>> = {
    'a.png': sharp(rgb, raw).png().toFile(path.join(dir, 'a.png')),
    'b.JPG': sharp(rgb, raw).jpeg({ quality: 100 }).toFile(path.join(dir, 'b.JPG')),
    'c.webp': sharp(rgb, raw).webp({ lossless: true }).toFile(path.join(dir, 'c.webp')),
    'grey.png': sharp(rgb, raw).greyscale().png().toFile(path.join(dir, 'grey.png')),
    'alpha.png': sharp(rgb, raw).ensureAlpha(0.5).png().toFile(path.join(dir, 'alpha.png')),
    'deep.png': sharp(rgb, raw).toColourspace('rgb16').png().toFile(path.join(dir, 'deep.png')),
    'cmyk.jpg': sharp(rgb, raw).toColourspace('cmyk').jpeg({ quality: 100 }).toFile(path.join(dir, 'cmyk.jpg')),
    'palette.png': sharp(rgb, raw).png({ palette: true, colours: 16 }).toFile(path.join(dir, 'palette.png')),
    // Stored sideways with EXIF orientation 6 (rotate 90° clockwise to view).
    'rotated.jpg': sharp(rgb, raw).rotate(-90).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(path.join(dir, 'rotated.jpg')),
  };
  await Promise.all(Object.values(files));
  const png = await decodeImage(path.join(dir, 'a.png'));
  assert.deepEqual([png.width, png.height, png.data.length], [w, h, w * h * 3]);
  assert.deepEqual(Buffer.from(png.data), rgb);
  for (const name of Object.keys(files)) {
    const img = await decodeImage(path.join(dir, name));
    assert.deepEqual([img.width, img.height, img.data.length], [w, h, w * h * 3], name);
  }
  const grey = await decodeImage(path.join(dir, 'grey.png'));
  assert.equal(grey.data[0], grey.data[1]);
  assert.equal(grey.data[1], grey.data[2]);
  const deep = await decodeImage(path.join(dir, 'deep.png'));
  assert.ok(Math.abs(deep.data[3]! - rgb[3]!) <= 1, '16-bit reduced to the same 8-bit values');
  const rotated = await decodeImage(path.join(dir, 'rotated.jpg'));
  // Upright again: the left column is dark red, the right column bright red.
  assert.ok(rotated.data[0]! < 60 && rotated.data[(w - 1) * 3]! > 200, `${rotated.data[0]} ${rotated.data[(w - 1) * 3]}`);
});

test('decodeImage: unusable files become ImageError with a reason', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'empty.jpg'), '');
  fs.writeFileSync(path.join(dir, 'text.jpg'), 'this is not an image');
  const good = await sharp(gradient(64, 64), { raw: { width: 64, height: 64, channels: 3 } }).jpeg().toBuffer();
  fs.writeFileSync(path.join(dir, 'truncated.jpg'), good.subarray(0, good.length >> 1));
  const cases: Array<[string, RegExp]> = [
    ['empty.jpg', /empty file/],
    ['text.jpg', /not an image|cannot decode/],
    ['truncated.jpg', /truncated|cannot decode/],
    ['missing.jpg', /cannot read/],
  ];
  for (const [name, re] of cases) {
    await assert.rejects(decodeImage(path.join(dir, name)), (e: Error) => e instanceof ImageError && re.test(e.message) && e.message.includes(name), name);
  }
});
