/**
 * The dataset check's cost. Prints figures; run after building:
 *   node dist/bench/check.js --near 50000        near-duplicate search on N synthetic 1280-value bottlenecks
 *   node dist/bench/check.js --images 3670       the whole check on N photos: copies of ../shared's flowers-dev
 *                                                (each made distinct) with their real bottlenecks plus a little noise
 * With both, both run. Peak RSS and the load average are printed: the machine may be shared.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks, stampsOf, type Bottlenecks } from '../src/bottleneck/index.js';
import { checkDataset, defaultCheckFlags } from '../src/check/index.js';
import { normalizeRows, similarPairs } from '../src/check/near.js';
import { intArg } from '../src/cli/common.js';
import { allImages, createImageLists } from '../src/dataset/index.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { HAVE_SHARED, SHARED, tempDir } from '../test/helpers/fixtures.js';

const cmd = new Command('bench-check')
  .option('--near <n>', 'synthetic bottlenecks for the near-duplicate search', intArg('--near'))
  .option('--images <n>', 'photos for the whole check', intArg('--images'))
  .option('--dim <d>', 'values per bottleneck', intArg('--dim'), 1280)
  .parse();
const o = cmd.opts<{ near?: number; images?: number; dim: number }>();

const rssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);
const load = () => os.loadavg().map((v) => v.toFixed(2)).join(' ');
const gauss = (rng: () => number) => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());

async function benchNear(n: number, dim: number): Promise<void> {
  const backend = await initBackend('auto');
  // ReLU-like features: 100 clusters of non-negative vectors, and 200 planted pairs at cosine 0.92-0.99.
  const rng = seedrandom('bench-near');
  const centers = Float32Array.from({ length: 100 * dim }, () => Math.abs(gauss(rng)));
  const x = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(rng() * 100);
    for (let d = 0; d < dim; d++) x[i * dim + d] = Math.max(0, centers[c * dim + d]! * 0.5 + gauss(rng));
  }
  normalizeRows(x, n, dim);
  const planted = new Set<string>();
  for (let k = 0; k < 200; k++) {
    const a = Math.floor(rng() * n);
    const b = Math.floor(rng() * n);
    if (a === b) continue;
    const w = 0.3 + 0.3 * rng();
    for (let d = 0; d < dim; d++) x[b * dim + d] = x[a * dim + d]! + w * x[b * dim + d]! * rng();
    planted.add(`${Math.min(a, b)}-${Math.max(a, b)}`);
  }
  normalizeRows(x, n, dim);
  const t0 = performance.now();
  const pairs = await similarPairs(x, n, dim, defaultCheckFlags().nearDuplicateThreshold);
  const s = (performance.now() - t0) / 1000;
  const found = pairs.filter((p) => planted.has(`${p.a}-${p.b}`)).length;
  console.log(JSON.stringify({ bench: 'near_duplicates', backend: backend.name, n, dim, seconds: +s.toFixed(1), pairs: pairs.length, planted_found: `${found}/${planted.size}`, peak_rss_mb: rssMb(), load: load() }));
}

async function benchCheck(count: number): Promise<void> {
  if (!HAVE_SHARED) {
    console.log(JSON.stringify({ bench: 'check', skipped: `../shared is absent (expected at ${SHARED})` }));
    return;
  }
  await initBackend('auto');
  const flowers = path.join(SHARED, 'datasets', 'flowers-dev');
  const work = tempDir('bench-check-');
  const log = silentLogger;
  const source = await createImageLists(flowers, { testingPercentage: 10, validationPercentage: 10 }, log);
  const extractor = await loadFeatureExtractor({ spec: path.join(SHARED, 'models', 'mobilenet_v2_035_224'), cacheDir: '', log });
  const real = await cacheBottlenecks(source, extractor, { bottleneckDir: path.join(os.tmpdir(), 'bench-check-bottlenecks'), log });
  extractor.dispose();
  // Copies, each with a different trailing byte (distinct sha256, same picture), and a noisy copy of its bottleneck.
  const refs = allImages(source);
  const rng = seedrandom('bench-check');
  const values = new Map<string, Float32Array>();
  for (let i = 0; i < count; i++) {
    const ref = refs[i % refs.length]!;
    const dir = path.join(work, source.classes[ref.classIndex]!.dir);
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `c${i}_${ref.name}`);
    fs.writeFileSync(file, Buffer.concat([fs.readFileSync(ref.file), Buffer.from([i & 255, i >> 8])]));
    values.set(file, Float32Array.from(real.values.get(ref.file)!, (v) => Math.max(0, v + 0.5 * gauss(rng) * v)));
  }
  const lists = await createImageLists(work, { testingPercentage: 10, validationPercentage: 10 }, log);
  const bottlenecks: Bottlenecks = { size: real.size, values, computed: 0, cached: count, failed: [], stamps: await stampsOf([...values.keys()]) };
  const t0 = performance.now();
  const c = await checkDataset(lists, bottlenecks, { ...defaultCheckFlags(), seed: 0, csv: path.join(work, 'check.csv'), log });
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ bench: 'check', images: c.images, seconds: +s.toFixed(1), counts: c.counts, peak_rss_mb: rssMb(), load: load() }));
  fs.rmSync(work, { recursive: true, force: true });
}

if (o.near) await benchNear(o.near, o.dim);
if (o.images) await benchCheck(o.images);
if (!o.near && !o.images) console.log('give --near N and/or --images N');
