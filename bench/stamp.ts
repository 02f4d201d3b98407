/**
 * What the bottleneck cache's image stamp costs (issue 16): checking a cached image
 * takes a stat and, since format 2, a sha256 of the image's bytes. Prints, for every
 * image of a folder (default ../shared/datasets/flowers-dev), the time of the stat
 * alone and of the full stamp, 32 files at a time as cacheBottlenecks does.
 * Run with `node dist/bench/stamp.js [IMAGE_DIR] [REPEATS]` after building.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { imageStamp } from '../src/bottleneck/index.js';
import { SHARED } from '../test/helpers/fixtures.js';

const dir = process.argv[2] ?? path.join(SHARED, 'datasets', 'flowers-dev');
const repeats = Number(process.argv[3] ?? 5);
const files = (fs.readdirSync(dir, { recursive: true }) as string[]).map((f) => path.join(dir, f)).filter((f) => /\.(jpe?g|png)$/i.test(f));
const bytes = files.reduce((s, f) => s + fs.statSync(f).size, 0);

async function timeAll(fn: (f: string) => Promise<unknown>): Promise<number> {
  const io = pLimit(32);
  const t0 = performance.now();
  await Promise.all(files.map((f) => io(() => fn(f))));
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const stat: number[] = [];
const stamp: number[] = [];
for (let i = 0; i < repeats; i++) {
  stat.push(await timeAll((f) => fs.promises.stat(f)));
  stamp.push(await timeAll(imageStamp));
}
console.log(`${files.length} images, ${(bytes / 1e6).toFixed(1)} MB in ${dir}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log(`stat only:        median ${median(stat).toFixed(0)} ms (${stat.map((t) => t.toFixed(0)).join(', ')})`);
console.log(`stat + sha256:    median ${median(stamp).toFixed(0)} ms (${stamp.map((t) => t.toFixed(0)).join(', ')}), ${((median(stamp) - median(stat)) / files.length).toFixed(2)} ms per image more`);
