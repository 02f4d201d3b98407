/**
 * Converted modules on disk: `<module id>-c<converter version>.onnx` beside a
 * `.sha256` sidecar. Both are written atomically, the model first; a model whose
 * bytes don't match its sidecar (cut short, edited, or the sidecar missing) is rebuilt.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeAtomic } from '../../util/fsutil.js';
import { CONVERTER_VERSION } from './convert.js';

export interface CachedOnnx {
  path: string;
  bytes: Uint8Array;
  /** hit: read from the cache; built: none was there; rebuilt: the cached one was damaged (see `reason`). */
  status: 'hit' | 'built' | 'rebuilt';
  reason?: string;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function onnxCachePath(cacheDir: string, moduleId: string): string {
  if (!/^[0-9a-f]{16,}$/.test(moduleId)) throw new Error(`module id ${moduleId} is not a hex digest`);
  return path.join(cacheDir, `${moduleId}-c${CONVERTER_VERSION}.onnx`);
}

async function readChecked(file: string): Promise<{ bytes?: Uint8Array; reason?: string }> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch {
    return {};
  }
  let want: string;
  try {
    want = (await fs.readFile(`${file}.sha256`, 'utf8')).trim();
  } catch {
    return { reason: `${file} has no checksum file` };
  }
  if (sha256(bytes) !== want) return { reason: `${file} does not match its checksum (damaged or incomplete)` };
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/** The module's converted model from `cacheDir`, or `convert()`'s, written there first. */
export async function loadOrConvertOnnx(cacheDir: string, moduleId: string, convert: () => Promise<Uint8Array>): Promise<CachedOnnx> {
  const file = onnxCachePath(cacheDir, moduleId);
  const cached = await readChecked(file);
  if (cached.bytes) return { path: file, bytes: cached.bytes, status: 'hit' };
  const bytes = await convert();
  await writeAtomic(file, bytes);
  await writeAtomic(`${file}.sha256`, `${sha256(bytes)}\n`);
  return cached.reason ? { path: file, bytes, status: 'rebuilt', reason: cached.reason } : { path: file, bytes, status: 'built' };
}
