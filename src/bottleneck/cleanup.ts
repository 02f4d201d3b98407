/**
 * A process killed while writing a bottleneck leaves its temp file (`<name>.bin.<n>`,
 * writeAtomic's naming) beside the real one. Nothing reads those; this removes
 * the ones old enough that no live run can still be writing them.
 */
import fs from 'node:fs';
import path from 'node:path';

/** A temp file is written in one call and renamed at once: minutes of age means its writer is gone. */
export const STALE_TEMP_MS = 10 * 60 * 1000;
const TEMP_NAME = /\.bin\.\d+$/;

/** Removes orphaned temp files in the given class folders of the cache; returns how many. */
export async function removeStaleTemps(bottleneckDir: string, classDirs: string[], now = Date.now()): Promise<number> {
  let removed = 0;
  for (const cls of classDirs) {
    const dir = path.join(bottleneckDir, cls);
    const names = await fs.promises.readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (!TEMP_NAME.test(name)) continue;
      const file = path.join(dir, name);
      const st = await fs.promises.stat(file).catch(() => undefined);
      if (!st?.isFile() || now - st.mtimeMs < STALE_TEMP_MS) continue;
      // Another run may have removed it first.
      await fs.promises.rm(file, { force: true });
      removed++;
    }
  }
  return removed;
}
