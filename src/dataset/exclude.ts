/**
 * --exclude_list: images a run skips, one path a line, relative to --image_dir (as the
 * dataset check's CSV gives them) or absolute. Blank lines and lines starting with #
 * are ignored. The files themselves are never touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';

/** Absolute paths of the listed images. */
export function readExcludeList(file: string, imageDir: string): Set<string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--exclude_list ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): give a text file with one image path per line`);
  }
  const out = new Set<string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line && !line.startsWith('#')) out.add(path.resolve(imageDir, line));
  }
  return out;
}
