/**
 * `npm run bench:mislabels [-- --move 30]`
 *
 * The dataset check's likely mislabels, with the built-in module:
 * - ../shared/datasets/flowers-dev with --move photos moved into a wrong class folder
 *   (test/helpers/damage.ts): how many are flagged, and the precision among the top
 *   --move suspects (precision at K);
 * - the clean sample in fixtures/flower_photos: how many are flagged (fewer is better).
 * Prints one JSON line per set and the load average.
 */
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { checkDataset, defaultCheckFlags } from '../src/check/index.js';
import { labelIssues, outOfFoldProbabilities } from '../src/check/mislabel.js';
import { intArg } from '../src/cli/common.js';
import { allImages, createImageLists } from '../src/dataset/index.js';
import { MemoryLogger, silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor } from '../src/module/index.js';
import { damagedCopy } from '../test/helpers/damage.js';
import { REPO_ROOT, SHARED, tempDir } from '../test/helpers/fixtures.js';

const o = new Command('bench-mislabels')
  .option('--move <k>', 'photos moved into a wrong class', intArg('--move'), 30)
  .option('--damage_seed <n>', 'which photos are moved (test/helpers/damage.ts; the check test uses 1)', intArg('--damage_seed'), 1)
  .option('--tune', "print, instead, how many the confident joint's picks would flag under other evidence thresholds (choose them on a damage seed other than the one measured)")
  .parse()
  .opts<{ move: number; damage_seed: number; tune?: boolean }>();

async function mislabels(dir: string): Promise<{ files: string[]; seconds: number; log: string[] }> {
  const lists = await createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, silentLogger);
  const extractor = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: silentLogger });
  const b = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(os.tmpdir(), 'retrain-bench-mislabels-bottlenecks'), log: silentLogger });
  extractor.dispose();
  const log = new MemoryLogger();
  const t0 = performance.now();
  const c = await checkDataset(lists, b, { ...defaultCheckFlags(), seed: 0, log });
  const seconds = (performance.now() - t0) / 1000;
  return { files: c.findings.filter((f) => f.kind === 'mislabel').map((f) => f.images[0]!.file), seconds, log: log.lines.filter((l) => /mislabel|Mislabel/.test(l)) };
}

/** For --tune: the confident joint's picks with p(given) and p(suggested), and whether each was moved. */
async function tune(dir: string, moved: Set<string>): Promise<void> {
  const lists = await createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, silentLogger);
  const extractor = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: silentLogger });
  const b = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(os.tmpdir(), 'retrain-bench-mislabels-bottlenecks'), log: silentLogger });
  extractor.dispose();
  const refs = allImages(lists).filter((r) => b.values.has(r.file));
  const y = Int32Array.from(refs, (r) => r.classIndex);
  const k = lists.classes.length;
  const flags = defaultCheckFlags();
  const { probs } = await outOfFoldProbabilities((i) => b.values.get(refs[i]!.file)!, y, k, b.size, { folds: flags.folds, steps: flags.steps, seed: 0 });
  const picks = labelIssues(probs, y, k).map((i) => ({
    given: probs[i.row * k + y[i.row]!]!,
    suggested: probs[i.row * k + i.suggested]!,
    moved: moved.has(path.join(lists.classes[y[i.row]!]!.dir, refs[i.row]!.name)),
  }));
  for (const maxGiven of [0.05, 0.1, 0.2, 1]) {
    for (const minSuggested of [0.5, 0.6, 0.7, 0.8, 0]) {
      const kept = picks.filter((p) => p.given <= maxGiven && p.suggested >= minSuggested);
      console.log(JSON.stringify({ damage_seed: o.damage_seed, max_given: maxGiven, min_suggested: minSuggested, flagged: kept.length, moved_flagged: kept.filter((p) => p.moved).length }));
    }
  }
}

const load = () => os.loadavg()[0]!.toFixed(2);
await initBackend('auto');
const dest = path.join(tempDir('bench-mislabels-'), 'images');
const damage = await damagedCopy(path.join(SHARED, 'datasets', 'flowers-dev'), dest, { move: o.move, copies: 0, seed: o.damage_seed });
const moved = new Set(damage.moved);
if (o.tune) {
  await tune(dest, moved);
  process.exit(0);
}
const flowers = await mislabels(dest);
const top = flowers.files.slice(0, o.move);
const hits = top.filter((f) => moved.has(f)).length;
console.log(JSON.stringify({
  set: 'flowers-dev',
  damage_seed: o.damage_seed,
  moved: o.move,
  flagged: flowers.files.length,
  moved_flagged: flowers.files.filter((f) => moved.has(f)).length,
  [`precision_at_${o.move}`]: +(hits / Math.max(1, Math.min(o.move, top.length))).toFixed(3),
  [`hits_in_top_${o.move}`]: hits,
  check_s: +flowers.seconds.toFixed(1),
  load_1min: load(),
  log: flowers.log,
}));
const fixtures = await mislabels(path.join(REPO_ROOT, 'fixtures', 'flower_photos'));
console.log(JSON.stringify({ set: 'fixtures/flower_photos', flagged: fixtures.files.length, files: fixtures.files, check_s: +fixtures.seconds.toFixed(1), load_1min: load(), log: fixtures.log }));
