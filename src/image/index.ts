import fs from 'node:fs/promises';
import sharp from 'sharp';
import { ImageError, errorMessage } from '../errors.js';
import { fsPath, readFailure } from '../util/fsname.js';

/** Decoded pixels: interleaved 8-bit RGB, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** One value per colour channel (R, G, B), e.g. torchvision's ImageNet mean. */
export type Channels = readonly [number, number, number];

/** How pixels become module input: `(pixel - mean) / std` after resizing to height x width; per channel when given three. */
export interface InputSpec {
  height: number;
  width: number;
  mean: number | Channels;
  std: number | Channels;
}

/** A scalar as the same value for each channel. */
export function perChannel(v: number | Channels): Channels {
  return typeof v === 'number' ? [v, v, v] : v;
}

/** Decompression-bomb bound: larger images are refused before decoding (about 300 MB of RGB). */
export const MAX_INPUT_PIXELS = 100_000_000;

export { MAX_INPUT_SIDE } from './limits.js';

/** mean/std that map [0, 255] onto [min, max]. */
export function rangeToMeanStd(range: readonly [number, number]): { mean: number; std: number } {
  const [min, max] = range;
  const std = 255 / (max - min);
  return { mean: -min * std, std };
}

/** The values `(pixel - mean) / std` takes over pixels 0..255, across channels. */
export function normalisedSpan(mean: number | Channels, std: number | Channels): [number, number] {
  const sd = perChannel(std);
  const ends = perChannel(mean).flatMap((m, c) => [(0 - m) / sd[c]!, (255 - m) / sd[c]!]);
  return [Math.min(...ends), Math.max(...ends)];
}

/** Larger files are refused before reading: no photo is this big, and a sparse 2 GB ".jpg" must not fill memory. */
export const MAX_IMAGE_BYTES = 256 * 1024 * 1024;

/** Why a file of this size cannot be an image we read, or undefined. */
export function sizeProblem(size: number): string | undefined {
  if (size === 0) return 'empty file (0 bytes)';
  if (size > MAX_IMAGE_BYTES) return `file is ${(size / 2 ** 20).toFixed(0)} MB, over the ${MAX_IMAGE_BYTES / 2 ** 20} MB limit for an image: not read`;
  return undefined;
}

/** Whether the first bytes are those of a format sharp decodes (JPEG, PNG, WebP, GIF, TIFF, HEIF/AVIF, SVG). */
function knownHeader(h: Buffer): boolean {
  const at = (offset: number, bytes: number[] | string) => h.subarray(offset, offset + bytes.length).equals(Buffer.from(bytes as never));
  return (
    at(0, [0xff, 0xd8, 0xff]) ||
    at(0, [0x89, 0x50, 0x4e, 0x47]) ||
    at(0, 'GIF8') ||
    (at(0, 'RIFF') && at(8, 'WEBP')) ||
    at(0, [0x49, 0x49, 0x2a, 0x00]) ||
    at(0, [0x4d, 0x4d, 0x00, 0x2a]) ||
    at(0, [0x49, 0x49, 0x2b, 0x00]) ||
    at(0, [0x4d, 0x4d, 0x00, 0x2b]) ||
    at(4, 'ftyp') ||
    /^(\ufeff)?\s*</.test(h.toString('utf8'))
  );
}

/** How an image path is read. */
export interface ReadOptions {
  /**
   * Named on the command line: read the way `cat` reads it, so a pipe (`--image <(curl …)`)
   * or a device works, and `-` is standard input. Folder scans never set it: they skip
   * anything but regular files.
   */
  explicit?: boolean;
}

/**
 * Reads an image file whole, after checking its size and first bytes: memory stays
 * bounded whatever the file is. Names that are not UTF-8 work (util/fsname.ts).
 */
export async function readImageFile(file: string, opts: ReadOptions = {}): Promise<Buffer> {
  if (opts.explicit && file === '-') {
    try {
      return checkedStream(file, await readBounded(process.stdin));
    } catch (err) {
      if (err instanceof ImageError) throw err;
      throw new ImageError('stdin', readFailure(err), { cause: err });
    }
  }
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(fsPath(file), 'r');
  } catch (err) {
    throw new ImageError(file, readFailure(err), { cause: err });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      if (!opts.explicit || st.isDirectory()) throw new ImageError(file, 'not a regular file');
      return checkedStream(file, await readBounded(handle.createReadStream({ autoClose: false })));
    }
    const problem = sizeProblem(st.size);
    if (problem) throw new ImageError(file, problem);
    const head = Buffer.alloc(Math.min(st.size, 64));
    await handle.read(head, 0, head.length, 0);
    if (!knownHeader(head)) throw new ImageError(file, 'not an image sharp can decode (unknown file header)');
    // Positional reads up to the size checked above, whatever the file does meanwhile.
    const data = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < data.length) {
      const { bytesRead } = await handle.read(data, got, data.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return data.subarray(0, got);
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(file, readFailure(err), { cause: err });
  } finally {
    await handle.close();
  }
}

/** A stream's bytes up to one past the image size limit: a pipe has no size to check first. */
async function readBounded(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    chunks.push(b);
    total += b.length;
    if (total > MAX_IMAGE_BYTES) break;
  }
  return Buffer.concat(chunks);
}

function checkedStream(file: string, data: Buffer): Buffer {
  const name = file === '-' ? 'stdin' : file;
  if (data.length > MAX_IMAGE_BYTES) throw new ImageError(name, `more than ${MAX_IMAGE_BYTES / 2 ** 20} MB, the limit for an image: not read`);
  const problem = sizeProblem(data.length);
  if (problem) throw new ImageError(name, problem);
  if (!knownHeader(data.subarray(0, 64))) throw new ImageError(name, 'not an image sharp can decode (unknown file header)');
  return data;
}

/**
 * Decodes any image sharp reads into upright 8-bit sRGB: EXIF orientation applied,
 * CMYK/grey/palette converted, alpha dropped, 16-bit reduced to 8-bit.
 */
export async function decodeImage(file: string, opts: ReadOptions = {}): Promise<RgbImage> {
  const input = await readImageFile(file, opts);
  try {
    const { data, info } = await sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error', autoOrient: true })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    const msg = errorMessage(err);
    const reason = /pixel limit/i.test(msg)
      ? `image is larger than ${MAX_INPUT_PIXELS} pixels (possible decompression bomb)`
      : /unsupported image format/i.test(msg)
        ? 'not an image sharp can decode'
        : truncation(input) ?? `cannot decode: ${msg.split('\n')[0]}`;
    throw new ImageError(file, reason, { cause: err });
  }
}

/** libvips often reports a cut-off file as "Unknown error": name the likely cause when the end marker is missing. */
function truncation(input: Buffer): string | undefined {
  const isJpeg = input[0] === 0xff && input[1] === 0xd8;
  if (isJpeg && input.lastIndexOf(Buffer.from([0xff, 0xd9])) < 0) return 'truncated JPEG (no end-of-image marker): the file was cut short';
  const isPng = input.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  if (isPng && input.lastIndexOf('IEND') < 0) return 'truncated PNG (no IEND chunk): the file was cut short';
  return undefined;
}

/**
 * A window of a bilinearly resized image, as TensorFlow 1's resize_bilinear
 * (align_corners=False, half_pixel_centers=False), which retrain.py uses.
 *
 * The source is (virtually) resized to scaledHeight x scaledWidth; the output is the
 * outHeight x outWidth window at (offsetY, offsetX), mirrored when flip is set, with
 * `(value - mean) / std` applied. Working on 8-bit input keeps memory at the size of
 * the decoded image, and the same code serves plain resizing and random crops.
 */
export interface Window {
  scaledHeight: number;
  scaledWidth: number;
  offsetY: number;
  offsetX: number;
  flip: boolean;
  /** Multiplies the resized pixel before normalising (random brightness); 1 = off. */
  brightness: number;
}

export function resizeWindow(
  img: RgbImage,
  outHeight: number,
  outWidth: number,
  mean: number | Channels,
  std: number | Channels,
  win: Window,
  out: Float32Array = new Float32Array(outHeight * outWidth * 3),
): Float32Array {
  const { data, width: sw, height: sh } = img;
  const scaleY = sh / win.scaledHeight;
  const scaleX = sw / win.scaledWidth;
  // Precompute the horizontal taps once per call.
  const x0 = new Int32Array(outWidth);
  const x1 = new Int32Array(outWidth);
  const xl = new Float64Array(outWidth);
  for (let x = 0; x < outWidth; x++) {
    const srcX = (x + win.offsetX) * scaleX;
    const left = Math.min(Math.floor(srcX), sw - 1);
    x0[x] = left * 3;
    x1[x] = Math.min(left + 1, sw - 1) * 3;
    xl[x] = srcX - Math.floor(srcX);
  }
  const m = perChannel(mean);
  const sd = perChannel(std);
  const k = sd.map((v) => win.brightness / v);
  const b = m.map((v, ch) => -v / sd[ch]!);
  for (let y = 0; y < outHeight; y++) {
    const srcY = (y + win.offsetY) * scaleY;
    const top = Math.min(Math.floor(srcY), sh - 1);
    const bottom = Math.min(top + 1, sh - 1);
    const yl = srcY - Math.floor(srcY);
    const rowT = top * sw * 3;
    const rowB = bottom * sw * 3;
    for (let x = 0; x < outWidth; x++) {
      const ox = win.flip ? outWidth - 1 - x : x;
      const o = (y * outWidth + ox) * 3;
      const a = x0[x]!;
      const c = x1[x]!;
      const l = xl[x]!;
      for (let ch = 0; ch < 3; ch++) {
        const tl = data[rowT + a + ch]!;
        const tr = data[rowT + c + ch]!;
        const bl = data[rowB + a + ch]!;
        const br = data[rowB + c + ch]!;
        const t = tl + (tr - tl) * l;
        const bt = bl + (br - bl) * l;
        out[o + ch] = (t + (bt - t) * yl) * k[ch]! + b[ch]!;
      }
    }
  }
  return out;
}

export const PLAIN_WINDOW = (height: number, width: number): Window => ({
  scaledHeight: height,
  scaledWidth: width,
  offsetY: 0,
  offsetX: 0,
  flip: false,
  brightness: 1,
});

/** Squash-resizes to the module's size and normalises: the one preprocessing retrain and label-image share. */
export function toModuleInput(img: RgbImage, spec: InputSpec, out?: Float32Array): Float32Array {
  return resizeWindow(img, spec.height, spec.width, spec.mean, spec.std, PLAIN_WINDOW(spec.height, spec.width), out);
}

export async function loadModuleInput(file: string, spec: InputSpec): Promise<Float32Array> {
  return toModuleInput(await decodeImage(file), spec);
}
