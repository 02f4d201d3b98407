/**
 * `node dist/bench/flip_test.js [--dir <set>] [--folds 10] [--seeds 0,1,2]`
 *
 * Does averaging the prediction over an image and its mirror help (issue 22, part 3:
 * `--flip_test_images`)? And does adding the mirrored training images to the head's
 * training rows help? k-fold over every image, so each is tested once per fold seed:
 * fold f is the test set, the other folds split 8:1 into training and validation. The
 * head is retrain.py's default (SGD, 4,000 steps, rate 0.01, batch 100). Mirrored
 * bottlenecks come from sharp's flop() of each photo, through the built-in module and
 * the project's bottleneck cache. Every variant sees the same rows.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { initBackend } from '../src/backend.js';
import type { LabeledSet } from '../src/bottleneck/sets.js';
import { intArg } from '../src/cli/common.js';
import { predictSet } from '../src/train/index.js';
import { SHARED } from '../test/helpers/fixtures.js';
import { argmax, defaultHead, foldsOf, rowsOf, setBottlenecks } from './folds.js';

const o = new Command('bench-flip-test')
  .option('--dir <dir>', 'folder of class subfolders', path.join(SHARED, 'datasets', 'flowers-dev'))
  .option('--folds <k>', 'test folds (every image tested once per seed)', intArg('--folds'), 10)
  .option('--seeds <list>', 'fold seeds (comma-separated)', '0,1,2')
  .parse()
  .opts<{ dir: string; folds: number; seeds: string }>();

/** The set mirrored left to right, same relative paths (a temp dir, reused). */
async function mirrored(dir: string): Promise<string> {
  const out = path.join(os.tmpdir(), `retrain-bench-flip-${path.basename(dir)}`);
  if (fs.existsSync(path.join(out, '.complete'))) return out;
  for (const cls of fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    fs.mkdirSync(path.join(out, cls.name), { recursive: true });
    for (const f of fs.readdirSync(path.join(dir, cls.name))) {
      // Lossless PNG for PNGs; JPEGs are re-encoded at quality 95 (close to, not exactly, the original's pixels).
      const img = sharp(path.join(dir, cls.name, f)).flop();
      await (/\.png$/i.test(f) ? img.png() : img.jpeg({ quality: 95 })).toFile(path.join(out, cls.name, f));
    }
  }
  fs.writeFileSync(path.join(out, '.complete'), '');
  return out;
}

function concat(a: LabeledSet, b: LabeledSet): LabeledSet {
  const x = new Float32Array(a.x.length + b.x.length);
  x.set(a.x);
  x.set(b.x, a.x.length);
  return { x, y: Int32Array.from([...a.y, ...b.y]), files: [...a.files, ...b.files] };
}

await initBackend('auto');
const plain = await setBottlenecks(o.dir);
const mirror = await setBottlenecks(await mirrored(o.dir));
const { classCount, dim } = plain;
const n = plain.all.y.length;
const rel = (f: string) => path.basename(path.dirname(f)) + '/' + path.basename(f);
const mirrorRow = new Map(mirror.all.files.map((f, i) => [rel(f), i]));
/** The same rows, mirrored. */
const mirrorOf = (set: LabeledSet) => rowsOf(mirror.all, dim, set.files.map((f) => mirrorRow.get(rel(f))!));
const variants = ['head, test as is (default)', 'head, test averaged with mirror', 'head + mirrored training rows, test as is', 'head + mirrored training rows, test averaged'];
const load = [os.loadavg()[0]!];
const total = variants.map(() => 0);
const seeds = o.seeds.split(',').map(Number);
for (const seed of seeds) {
  const fold = foldsOf(plain, o.folds, seed);
  const right = variants.map(() => 0);
  for (let f = 0; f < o.folds; f++) {
    const s = fold(f);
    const testSets = [s.testing, mirrorOf(s.testing)] as const;
    for (const [h, training] of [s.training, concat(s.training, mirrorOf(s.training))].entries()) {
      const head = await defaultHead({ ...s, training });
      // batchSize -1: every row, in order.
      const [p, q] = testSets.map((t) => predictSet(head, t, dim, -1, seed).predictions.map((r) => r.probabilities));
      head.dispose();
      s.testing.y.forEach((y, r) => {
        if (argmax(p![r]!) === y) right[2 * h]!++;
        if (argmax(p![r]!.map((v, k) => v + q![r]![k]!)) === y) right[2 * h + 1]!++;
      });
    }
  }
  process.stderr.write(`fold seed ${seed}: ${variants.map((v, j) => `${v} ${right[j]}/${n}`).join('; ')}\n`);
  right.forEach((r, j) => (total[j]! += r));
}
load.push(os.loadavg()[0]!);
const N = n * seeds.length;
console.log(`${o.dir}: ${n} images, ${classCount} classes, ${o.folds}-fold, fold seeds ${o.seeds} (N=${N} test predictions); load average ${load.map((v) => v.toFixed(2)).join(' → ')}`);
console.log('| variant | test accuracy (N) |\n|---|---|');
variants.forEach((v, j) => console.log(`| ${v} | ${((100 * total[j]!) / N).toFixed(1)}% (${total[j]}/${N}) |`));
