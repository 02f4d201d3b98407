/**
 * `npm run bench:accuracy [-- --set flowers|fashion|<dir>] [--folds 10] [--fashion_count 3000]`
 *
 * Test accuracy (with N) and time of each head on the same splits, with k-fold over
 * all images so that every photo is tested once: fold f is the test set, and the other
 * folds are split 8:1 into training and validation (retrain's 80/10/10), the same rows
 * for every method. Bottlenecks come from the built-in module through the project's
 * own cache (the first run computes them, later runs read them).
 *
 * Sets: flowers = ../shared/datasets/flowers-dev (600 photos); fashion = the first
 * --fashion_count images of Debian's dataset-fashion-mnist (apt-get install
 * dataset-fashion-mnist), written as PNG class folders into a temp dir; or a folder.
 *
 * Times are ratios within one run (the machine is shared); the load average is printed.
 * stdout: one JSON line per set; stderr: the table.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Command } from 'commander';
import sharp from 'sharp';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { labeledSet, type LabeledSet } from '../src/bottleneck/sets.js';
import { intArg } from '../src/cli/common.js';
import { createImageLists } from '../src/dataset/index.js';
import { silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor } from '../src/module/index.js';
import { predictSet, trainHead } from '../src/train/index.js';
import { assignFolds, denseProbabilities, trainL2Head } from '../src/train/l2.js';
import { round } from './anchor.js';
import { SHARED } from '../test/helpers/fixtures.js';

const cmd = new Command('bench-accuracy')
  .option('--set <name>', 'flowers, fashion, or a folder of class subfolders', 'flowers')
  .option('--folds <k>', 'test folds (every image tested once)', intArg('--folds'), 10)
  .option('--fashion_count <n>', 'images of Fashion-MNIST to use (the first n of its training file)', intArg('--fashion_count'), 3000)
  .option('--seed <n>', 'seed of the folds and the heads', intArg('--seed'), 0)
  .parse();
const o = cmd.opts<{ set: string; folds: number; fashion_count: number; seed: number }>();

/** Split of one fold, as each method receives it; `files` lets a method that needs the images (fine-tuning) find them. */
export interface FoldSets {
  training: LabeledSet;
  validation: LabeledSet;
  testing: LabeledSet;
  classCount: number;
  dim: number;
  seed: number;
}

/** A method trains on training (+validation) and returns the predicted class of each test row. */
export interface Method {
  name: string;
  run(s: FoldSets): Promise<Int32Array>;
}

const argmaxRows = (p: Float64Array | Float32Array, n: number, k: number) =>
  Int32Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let c = 1; c < k; c++) if (p[i * k + c]! > p[i * k + best]!) best = c;
    return best;
  });

const l2 = (standardize: boolean): Method => ({
  name: standardize ? 'l2_standardized' : 'l2',
  async run(s) {
    const { values } = trainL2Head(s.training, s.validation, s.dim, s.classCount, { standardize, seed: s.seed });
    return argmaxRows(denseProbabilities(values, s.testing.x, s.testing.y.length, s.dim, s.classCount), s.testing.y.length, s.classCount);
  },
});

/**
 * The methods compared. The first is the baseline of the time ratios. Fine-tuning
 * (the finetune branch) plugs in here: a Method whose run() fine-tunes on
 * s.training.files / s.validation.files and predicts s.testing.files.
 */
export const METHODS: Method[] = [
  {
    name: 'sgd (retrain.py, default)',
    async run(s) {
      // retrain.py's defaults, as `retrain` runs them.
      const { head } = await trainHead(s.training, s.validation, s.classCount, s.dim, {
        steps: 4000,
        learningRate: 0.01,
        trainBatchSize: 100,
        validationBatchSize: 100,
        evalStepInterval: 10,
        seed: s.seed,
        log: silentLogger,
      });
      const { predictions } = predictSet(head, s.testing, s.dim, -1, s.seed);
      head.dispose();
      return Int32Array.from(predictions, (p) => p.predictedIndex);
    },
  },
  l2(false),
  l2(true),
];

const FASHION = '/usr/share/datasets/fashion-mnist';
const FASHION_CLASSES = ['t-shirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle_boot'];

/** The first `count` Fashion-MNIST training images as 28x28 PNGs in class folders (a temp dir, reused). */
async function fashionFolder(count: number): Promise<string> {
  const images = path.join(FASHION, 'train-images-idx3-ubyte.gz');
  if (!fs.existsSync(images)) throw new Error(`${images} is missing: apt-get install dataset-fashion-mnist`);
  const dir = path.join(os.tmpdir(), `retrain-bench-fashion-${count}`);
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) return dir;
  const px = zlib.gunzipSync(fs.readFileSync(images));
  const labels = zlib.gunzipSync(fs.readFileSync(path.join(FASHION, 'train-labels-idx1-ubyte.gz')));
  // idx: 16-byte header then 28x28 bytes per image; labels: 8-byte header then one byte each.
  for (const c of FASHION_CLASSES) fs.mkdirSync(path.join(dir, c), { recursive: true });
  for (let i = 0; i < count; i++) {
    const raw = px.subarray(16 + i * 784, 16 + (i + 1) * 784);
    await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(path.join(dir, FASHION_CLASSES[labels[8 + i]!]!, `${i}.png`));
  }
  fs.writeFileSync(done, '');
  return dir;
}

function rowsOf(set: LabeledSet, dim: number, rows: number[]): LabeledSet {
  const x = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => x.set(set.x.subarray(r * dim, (r + 1) * dim), i * dim));
  return { x, y: Int32Array.from(rows, (r) => set.y[r]!), files: rows.map((r) => set.files[r]!) };
}

async function benchSet(name: string): Promise<void> {
  const dir = name === 'flowers' ? path.join(SHARED, 'datasets', 'flowers-dev') : name === 'fashion' ? await fashionFolder(o.fashion_count) : name;
  const backend = await initBackend('auto');
  // Every image in one pool: the folds make the splits.
  const lists = await createImageLists(dir, { testingPercentage: 0, validationPercentage: 0 }, silentLogger);
  const extractor = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: silentLogger });
  const t0 = performance.now();
  const b = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(os.tmpdir(), 'retrain-bench-accuracy-bottlenecks'), log: silentLogger });
  const bottleneckS = (performance.now() - t0) / 1000;
  extractor.dispose();
  const all = labeledSet(lists, b, 'training');
  const classCount = lists.classes.length;
  const dim = b.size;
  const n = all.y.length;
  const fold = assignFolds(all.y, classCount, o.folds, o.seed, 'bench_test_folds');
  const inner = assignFolds(all.y, classCount, 9, o.seed, 'bench_validation_folds');
  const right = METHODS.map(() => 0);
  const seconds = METHODS.map(() => 0);
  const load = [os.loadavg()[0]!];
  for (let f = 0; f < o.folds; f++) {
    const rows = (keep: (i: number) => boolean) => rowsOf(all, dim, [...all.y.keys()].filter(keep));
    const sets: FoldSets = {
      testing: rows((i) => fold[i] === f),
      validation: rows((i) => fold[i] !== f && inner[i] === 0),
      training: rows((i) => fold[i] !== f && inner[i] !== 0),
      classCount,
      dim,
      seed: o.seed,
    };
    for (const [m, method] of METHODS.entries()) {
      const t = performance.now();
      const predicted = await method.run(sets);
      seconds[m]! += (performance.now() - t) / 1000;
      right[m]! += predicted.filter((p, i) => p === sets.testing.y[i]).length;
    }
    process.stderr.write(`fold ${f + 1}/${o.folds}: ${METHODS.map((m, j) => `${m.name} ${right[j]}`).join(', ')}\n`);
  }
  load.push(os.loadavg()[0]!);
  const results = METHODS.map((m, j) => ({
    method: m.name,
    accuracy_pct: round((100 * right[j]!) / n, 1),
    correct: right[j]!,
    n,
    seconds: round(seconds[j]!, 1),
    time_ratio: round(seconds[j]! / seconds[0]!, 2),
  }));
  process.stderr.write(`\n${name}: ${n} images, ${classCount} classes, ${o.folds}-fold (every image tested once), module ${DEFAULT_MODULE}, backend ${backend.name}\n`);
  process.stderr.write('| head | test accuracy (N) | time, s | time vs sgd |\n|---|---|---|---|\n');
  for (const r of results) process.stderr.write(`| ${r.method} | ${r.accuracy_pct}% (${r.correct}/${r.n}) | ${r.seconds} | ${r.time_ratio}x |\n`);
  process.stderr.write(`load average (1 min) before/after: ${load.map((v) => v.toFixed(2)).join(' / ')}; ${os.cpus().length} cores\n`);
  console.log(JSON.stringify({ bench: 'accuracy', set: name, images: n, classes: classCount, folds: o.folds, bottleneck_s: round(bottleneckS, 1), backend: backend.name, results, load_1min: load, cores: os.cpus().length }));
}

await benchSet(o.set);
