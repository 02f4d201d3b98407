/**
 * One bottleneck per file: a 64-byte header, then little-endian float32 values.
 * Reading it never parses text, and the header lets a reader reject a file made by
 * another module, for other image content (changed since, or another image's file
 * swapped in), or cut short.
 *
 *   0  'RTBN'            magic
 *   4  u16 version (2)   6  u16 reserved
 *   8  u32 length        number of float32 values
 *  12  f64 image size    bytes of the source image when computed
 *  20  f64 image mtime   ms since the epoch
 *  28  16 bytes          first 16 bytes of the module id (sha256)
 *  44  u32 reserved
 *  48  16 bytes          first 16 bytes of the image's sha256
 *  64  float32[length]
 *
 * Version 1 (48 bytes, no content hash) trusted size and mtime alone; its files are recomputed.
 */
import { createHash } from 'node:crypto';
import { hasRawBytes, nameBytes } from '../util/fsname.js';

export const HEADER_BYTES = 64;
const MAGIC = 0x4e425452; // 'RTBN' read as little-endian u32
const VERSION = 2;
const HASH_AT = 48;
export const CONTENT_HASH_BYTES = 16;

export interface ImageStamp {
  size: number;
  mtimeMs: number;
  /** sha256 of the image's bytes (only the first CONTENT_HASH_BYTES are stored and compared). */
  contentHash: Uint8Array;
}

/** The stamp's content hash, as stored in the header. */
function storedHash(stamp: ImageStamp): Buffer {
  return Buffer.from(stamp.contentHash.buffer, stamp.contentHash.byteOffset, CONTENT_HASH_BYTES);
}

export function encodeBottleneck(values: Float32Array, moduleId: string, stamp: ImageStamp): Uint8Array {
  const buf = new ArrayBuffer(HEADER_BYTES + values.length * 4);
  const view = new DataView(buf);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, VERSION, true);
  view.setUint32(8, values.length, true);
  view.setFloat64(12, stamp.size, true);
  view.setFloat64(20, stamp.mtimeMs, true);
  new Uint8Array(buf, 28, 16).set(Buffer.from(moduleId.slice(0, 32), 'hex'));
  new Uint8Array(buf, HASH_AT, CONTENT_HASH_BYTES).set(storedHash(stamp));
  const out = new Float32Array(buf, HEADER_BYTES, values.length);
  out.set(values);
  return new Uint8Array(buf);
}

/** Why a cached file cannot be used, or its values. */
export type Decoded = { ok: true; values: Float32Array } | { ok: false; reason: string };

export function decodeBottleneck(bytes: Uint8Array, moduleId: string, expectedLength: number, stamp: ImageStamp): Decoded {
  if (bytes.byteLength < HEADER_BYTES) return { ok: false, reason: 'shorter than its header' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return { ok: false, reason: 'not a bottleneck file' };
  if (view.getUint16(4, true) !== VERSION) return { ok: false, reason: `written by another version (format ${view.getUint16(4, true)}, this one reads ${VERSION})` };
  const length = view.getUint32(8, true);
  if (length !== expectedLength) return { ok: false, reason: `holds ${length} values, the module gives ${expectedLength}` };
  if (bytes.byteLength !== HEADER_BYTES + length * 4) return { ok: false, reason: 'wrong length (truncated?)' };
  if (Buffer.from(bytes.buffer, bytes.byteOffset + 28, 16).toString('hex') !== moduleId.slice(0, 32)) {
    return { ok: false, reason: 'made by another module' };
  }
  if (view.getFloat64(12, true) !== stamp.size || view.getFloat64(20, true) !== stamp.mtimeMs) {
    return { ok: false, reason: 'the image changed since' };
  }
  if (!Buffer.from(bytes.buffer, bytes.byteOffset + HASH_AT, CONTENT_HASH_BYTES).equals(storedHash(stamp))) {
    return { ok: false, reason: 'made from other image content (the image was rewritten, or another image\'s cache file put here)' };
  }
  // Copy out so the values are 4-byte aligned whatever the read buffer's offset.
  const values = new Float32Array(length);
  new Uint8Array(values.buffer).set(bytes.subarray(HEADER_BYTES));
  if (!values.every(Number.isFinite)) return { ok: false, reason: 'holds NaN or infinite values' };
  return { ok: true, values };
}

/**
 * Cache file names stay well under the usual 255-byte limit, with room for a temp
 * suffix while written. Longer ones keep a readable head and end in a hash of the
 * whole name; names within the bound are retrain.py's `<image>_<module>`, unchanged.
 */
export const MAX_CACHE_NAME_BYTES = 200;

/** A cache path segment: `name` itself when it is short and UTF-8, else its head and a hash. */
export function boundedName(name: string, suffix = ''): string {
  const plain = name + suffix;
  if (Buffer.byteLength(plain) <= MAX_CACHE_NAME_BYTES && !hasRawBytes(plain)) return plain;
  const tail = `~${createHash('sha256').update(nameBytes(name)).digest('hex').slice(0, 16)}${suffix}`;
  // Bytes that are not UTF-8 cannot be written back as a string: they become '_' in the head.
  const room = MAX_CACHE_NAME_BYTES - Buffer.byteLength(tail);
  let head = '';
  for (const ch of name.replace(/[\udc80-\udcff]/gu, '_')) {
    if (Buffer.byteLength(head + ch) > room) break;
    head += ch;
  }
  return head + tail;
}

/** `<class folder>/<image>_<module>.bin`, each part bounded. */
export function cacheRelativePath(classDir: string, imageName: string, cacheName: string): string[] {
  return [boundedName(classDir), boundedName(`${imageName}_${cacheName}`, '.bin')];
}
