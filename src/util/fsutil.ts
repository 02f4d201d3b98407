import fs from 'node:fs';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { RetrainError, errorMessage } from '../errors.js';

/** Writes a file under a temporary name and renames it into place; a failure names the path. */
export async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  try {
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  } catch (err) {
    throw new RetrainError(`cannot write ${file}: ${errorMessage(err)}`, 1, { cause: err });
  }
}

export function expandHome(p: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(process.env.HOME ?? '', p.slice(1));
  return p;
}
