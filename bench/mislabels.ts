/**
 * `npm run bench:mislabels [-- --move 30 --damage_seeds 4,5,6,7,8]`
 *
 * The dataset check's likely mislabels, with the built-in module, on one bottleneck cache:
 * - ../shared/datasets/flowers-dev with --move photos moved into a wrong class folder
 *   (test/helpers/damage.ts), once per damage seed: how many are flagged, and the strict
 *   precision at K = --move (moved photos among the top K flags, over K: a shortfall of
 *   flags counts as misses); then the mean over the seeds;
 * - flowers-dev as shipped and the clean sample in fixtures/flower_photos: how many are
 *   flagged (fewer is better).
 * Prints one JSON line per set, with the check's time and the load average.
 * `--tune` prints, instead, precision at K for a grid of method choices (k, blend weight,
 * threshold, C choice) on damage seeds 1-3: tune there only, report on 4-8.
 */
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks, type Bottlenecks } from '../src/bottleneck/index.js';
import { checkDataset, defaultCheckFlags } from '../src/check/index.js';
import { blend, CHECK_C_GRID, labelIssues, neighbourVote, outOfFoldProbabilities } from '../src/check/mislabel.js';
import { nearestNeighbours, normalizeRows } from '../src/check/near.js';
import { intArg } from '../src/cli/common.js';
import { allImages, createImageLists, type ImageLists } from '../src/dataset/index.js';
import { MemoryLogger, silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { bestCandidate, C_GRID, kFoldPath } from '../src/train/l2.js';
import { damagedCopy } from '../test/helpers/damage.js';
import { REPO_ROOT, SHARED, tempDir } from '../test/helpers/fixtures.js';

const seedList = (v: string): number[] => v.split(',').map((s) => intArg('--damage_seeds')(s.trim()));
const o = new Command('bench-mislabels')
  .option('--move <k>', 'photos moved into a wrong class', intArg('--move'), 30)
  .option('--damage_seeds <list>', 'which photos are moved, one damaged copy per seed (test/helpers/damage.ts; the check test uses 1)', seedList, [4, 5, 6, 7, 8])
  .option('--damage_seed <n>', 'one seed (same as --damage_seeds n)', intArg('--damage_seed'))
  .option('--tune', 'print precision at K for a grid of method choices instead (default seeds 1,2,3)')
  .parse()
  .opts<{ move: number; damage_seeds: number[]; damage_seed?: number; tune?: boolean }>();
const seeds = o.damage_seed !== undefined ? [o.damage_seed] : o.tune && !process.argv.includes('--damage_seeds') ? [1, 2, 3] : o.damage_seeds;

const BOTTLENECKS = path.join(os.tmpdir(), 'retrain-bench-mislabels-bottlenecks');
const load = () => os.loadavg()[0]!.toFixed(2);

async function prepare(dir: string, extractor: FeatureExtractor): Promise<{ lists: ImageLists; b: Bottlenecks }> {
  const lists = await createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, silentLogger);
  return { lists, b: await cacheBottlenecks(lists, extractor, { bottleneckDir: BOTTLENECKS, log: silentLogger }) };
}

async function mislabels(dir: string, extractor: FeatureExtractor): Promise<{ files: string[]; seconds: number; log: string[] }> {
  const { lists, b } = await prepare(dir, extractor);
  const log = new MemoryLogger();
  const t0 = performance.now();
  const c = await checkDataset(lists, b, { ...defaultCheckFlags(), seed: 0, log });
  const seconds = (performance.now() - t0) / 1000;
  return { files: c.findings.filter((f) => f.kind === 'mislabel').map((f) => f.images[0]!.file), seconds, log: log.lines.filter((l) => /mislabel|Mislabel/.test(l)) };
}

/** Moved photos among the first K flagged, over K. */
const strictPrecision = (flagged: string[], moved: Set<string>, k: number) => flagged.slice(0, k).filter((f) => moved.has(f)).length / k;

/** For --tune: the evidence of every variant on one damaged copy, and precision at K of each setting. */
async function tune(dir: string, moved: Set<string>, extractor: FeatureExtractor): Promise<Map<string, number>> {
  const { lists, b } = await prepare(dir, extractor);
  const refs = allImages(lists).filter((r) => b.values.has(r.file));
  const y = Int32Array.from(refs, (r) => r.classIndex);
  const classCount = lists.classes.length;
  const n = y.length;
  const files = refs.map((r) => path.join(lists.classes[r.classIndex]!.dir, r.name));
  const flags = defaultCheckFlags();
  const x = (i: number) => b.values.get(refs[i]!.file)!;
  const l2 = new Map<string, Float32Array>();
  // C by lowest held-out cross entropy (the check's), the same with C = 10 in the grid, and by accuracy (main's).
  l2.set('ce', (await outOfFoldProbabilities(x, y, classCount, b.size, { folds: flags.folds, steps: flags.steps, seed: 0 })).probs);
  l2.set('ce+10', (await outOfFoldProbabilities(x, y, classCount, b.size, { folds: flags.folds, steps: flags.steps, seed: 0, grid: C_GRID.filter((c) => c <= 10) })).probs);
  {
    const set = { x: new Float32Array(n * b.size), y, files: [] };
    for (let i = 0; i < n; i++) set.x.set(x(i), i * b.size);
    const p = kFoldPath(set, b.size, classCount, flags.folds, 0, false, CHECK_C_GRID, undefined, flags.steps, true, bestCandidate);
    l2.set('acc', Float32Array.from(p.probs[CHECK_C_GRID.indexOf(bestCandidate(p.candidates).c)]!));
  }
  const unit = new Float32Array(n * b.size);
  for (let i = 0; i < n; i++) unit.set(x(i), i * b.size);
  normalizeRows(unit, n, b.size);
  const K = 20;
  const nb = await nearestNeighbours(unit, n, b.size, K, { seed: 0 });
  const out = new Map<string, number>();
  for (const k of [5, 7, 10, 15, 20]) {
    const nbk = new Int32Array(n * k);
    for (let i = 0; i < n; i++) nbk.set(nb.subarray(i * K, i * K + k), i * k);
    for (const smoothing of [0, 0.5]) {
      const vote = neighbourVote(nbk, k, y, classCount, smoothing);
      for (const [cName, probs] of l2) {
        for (const w of [0, 0.3, 0.4, 0.5, 0.6, 0.7, 1]) {
          const ev = blend(probs, vote, w);
          for (const t of [0.05, 0.1, 0.15, 0.2, 0.25]) {
            const flagged = labelIssues(ev, y, classCount, () => true, t).map((i) => files[i.row]!);
            out.set(JSON.stringify({ c: cName, k, smoothing, w, t }), strictPrecision(flagged, moved, o.move));
            out.set(JSON.stringify({ c: cName, k, smoothing, w, t, flagged: true }), flagged.length);
          }
        }
      }
    }
  }
  return out;
}

await initBackend('auto');
const extractor = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: silentLogger });
const root = tempDir('bench-mislabels-');
if (o.tune) {
  const bySeed: Array<Map<string, number>> = [];
  for (const seed of seeds) {
    const dest = path.join(root, `seed${seed}`);
    const damage = await damagedCopy(path.join(SHARED, 'datasets', 'flowers-dev'), dest, { move: o.move, copies: 0, seed });
    bySeed.push(await tune(dest, new Set(damage.moved), extractor));
  }
  const rows = [...bySeed[0]!.keys()].filter((key) => !key.includes('flagged')).map((key) => {
    const per = bySeed.map((m) => m.get(key)!);
    const flagged = bySeed.map((m) => m.get(key.replace(/}$/, ',"flagged":true}'))!);
    return { ...JSON.parse(key), per_seed: per.map((p) => +p.toFixed(3)), mean: +(per.reduce((a, b) => a + b, 0) / per.length).toFixed(3), flagged };
  });
  rows.sort((a, b) => b.mean - a.mean);
  for (const r of rows) console.log(JSON.stringify(r));
  extractor.dispose();
  process.exit(0);
}
const results: number[] = [];
for (const seed of seeds) {
  const dest = path.join(root, `seed${seed}`);
  const damage = await damagedCopy(path.join(SHARED, 'datasets', 'flowers-dev'), dest, { move: o.move, copies: 0, seed });
  const moved = new Set(damage.moved);
  const before = load();
  const r = await mislabels(dest, extractor);
  const precision = strictPrecision(r.files, moved, o.move);
  results.push(precision);
  console.log(JSON.stringify({
    set: 'flowers-dev',
    damage_seed: seed,
    moved: o.move,
    flagged: r.files.length,
    moved_flagged: r.files.filter((f) => moved.has(f)).length,
    [`precision_at_${o.move}`]: +precision.toFixed(3),
    [`hits_in_top_${o.move}`]: Math.round(precision * o.move),
    check_s: +r.seconds.toFixed(1),
    load_1min: `${before} -> ${load()}`,
    log: r.log,
  }));
}
console.log(JSON.stringify({ set: 'flowers-dev', damage_seeds: seeds, [`mean_precision_at_${o.move}`]: +(results.reduce((a, b) => a + b, 0) / results.length).toFixed(3), N: `${o.move} flags x ${seeds.length} seeds`, load_1min: load() }));
for (const [name, dir] of [['flowers-dev (as shipped)', path.join(SHARED, 'datasets', 'flowers-dev')], ['fixtures/flower_photos', path.join(REPO_ROOT, 'fixtures', 'flower_photos')]] as const) {
  const before = load();
  const r = await mislabels(dir, extractor);
  console.log(JSON.stringify({ set: name, flagged: r.files.length, files: r.files, check_s: +r.seconds.toFixed(1), load_1min: `${before} -> ${load()}`, log: r.log }));
}
extractor.dispose();
