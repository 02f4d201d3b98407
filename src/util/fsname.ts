/**
 * File names are bytes, not always UTF-8 (`caf\xe9.jpg` from a Latin-1 system).
 * Node decodes such names lossily, and the decoded name then names no file. Here a
 * name read as bytes becomes a string that maps back to the same bytes: valid UTF-8
 * as usual, any other byte as a lone surrogate U+DC80..U+DCFF (Python's
 * "surrogateescape"). Valid UTF-8 never decodes to a lone surrogate, so the mapping
 * is one to one, and names that are UTF-8 stay exactly as Node gives them.
 */

import { errorMessage } from '../errors.js';

const LONE_BYTE = /[\udc80-\udcff]/u;

/** Length of the valid UTF-8 sequence at b[i], or 0. */
function utf8SequenceLength(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number) => i + k < b.length && (b[i + k]! & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const c1 = b[i + 1] ?? 0;
    // No overlong forms, no UTF-16 surrogates.
    if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 > 0x9f)) return 0;
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const c1 = b[i + 1] ?? 0;
    if ((c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 > 0x8f)) return 0;
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/** A file name read as bytes (fs.readdir with encoding 'buffer'), as a string that maps back to them. */
export function nameFromBytes(b: Buffer): string {
  let out = '';
  let start = 0;
  let i = 0;
  while (i < b.length) {
    const n = utf8SequenceLength(b, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out += b.toString('utf8', start, i) + String.fromCharCode(0xdc00 + b[i]!);
    i++;
    start = i;
  }
  return out + b.toString('utf8', start);
}

/** The bytes of a name or path made by nameFromBytes. */
export function nameBytes(name: string): Buffer {
  if (!LONE_BYTE.test(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let text = '';
  for (const ch of name) {
    const code = ch.charCodeAt(0);
    if (ch.length === 1 && code >= 0xdc80 && code <= 0xdcff) {
      parts.push(Buffer.from(text, 'utf8'), Buffer.from([code - 0xdc00]));
      text = '';
    } else text += ch;
  }
  parts.push(Buffer.from(text, 'utf8'));
  return Buffer.concat(parts);
}

/** What to hand to fs for a path that may hold such bytes: the string itself when it is plain UTF-8. */
export function fsPath(p: string): string | Buffer {
  return LONE_BYTE.test(p) ? nameBytes(p) : p;
}

/** Whether a name holds bytes that are not UTF-8. */
export function hasRawBytes(name: string): boolean {
  return LONE_BYTE.test(name);
}

/** Why an image file cannot be opened or read, from its errno. */
export function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    code === 'ENOENT'
      ? 'file not found (a broken symlink?)'
      : code === 'ELOOP'
        ? 'a symlink loop (the link leads back to itself)'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'a folder, not a file'
            : errorMessage(err);
  return `cannot read: ${reason}`;
}
