/**
 * One bottleneck per file: a 48-byte header, then little-endian float32 values.
 * Reading it never parses text, and the header lets a reader reject a file made by
 * another module, for an image that has changed since, or cut short.
 *
 *   0  'RTBN'            magic
 *   4  u16 version (1)   6  u16 reserved
 *   8  u32 length        number of float32 values
 *  12  f64 image size    bytes of the source image when computed
 *  20  f64 image mtime   ms since the epoch
 *  28  16 bytes          first 16 bytes of the module id (sha256)
 *  44  u32 reserved
 *  48  float32[length]
 */
export const HEADER_BYTES = 48;
const MAGIC = 0x4e425452; // 'RTBN' read as little-endian u32
const VERSION = 1;

export interface ImageStamp {
  size: number;
  mtimeMs: number;
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
  const out = new Float32Array(buf, HEADER_BYTES, values.length);
  out.set(values);
  return new Uint8Array(buf);
}

/** Why a cached file cannot be used, or its values. */
export type Decoded = { ok: true; values: Float32Array } | { ok: false; reason: string };

export function decodeBottleneck(bytes: Uint8Array, moduleId: string, expectedLength: number, stamp: ImageStamp): Decoded {
  if (bytes.byteLength < HEADER_BYTES) return { ok: false, reason: 'shorter than its header' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC || view.getUint16(4, true) !== VERSION) return { ok: false, reason: 'not a bottleneck file' };
  const length = view.getUint32(8, true);
  if (length !== expectedLength) return { ok: false, reason: `holds ${length} values, the module gives ${expectedLength}` };
  if (bytes.byteLength !== HEADER_BYTES + length * 4) return { ok: false, reason: 'wrong length (truncated?)' };
  if (Buffer.from(bytes.buffer, bytes.byteOffset + 28, 16).toString('hex') !== moduleId.slice(0, 32)) {
    return { ok: false, reason: 'made by another module' };
  }
  if (view.getFloat64(12, true) !== stamp.size || view.getFloat64(20, true) !== stamp.mtimeMs) {
    return { ok: false, reason: 'the image changed since' };
  }
  // Copy out so the values are 4-byte aligned whatever the read buffer's offset.
  const values = new Float32Array(length);
  new Uint8Array(values.buffer).set(bytes.subarray(HEADER_BYTES));
  if (!values.every(Number.isFinite)) return { ok: false, reason: 'holds NaN or infinite values' };
  return { ok: true, values };
}
