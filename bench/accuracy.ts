/**
 * `npm run bench:accuracy [-- --set flowers|fashion|<dir>] [--folds 10] [--fashion_count 3000] [--fine_tune_layers 4]`
 *
 * Test accuracy (with N) and time of each head, and of fine-tuning, on the same splits, with k-fold over
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
import { activationExtractor } from '../src/finetune/activations.js';
import { GraphTop, fineTune, splitModule, topBottlenecks } from '../src/finetune/index.js';
import type { GraphSplit } from '../src/finetune/split.js';
import { FINE_TUNE_PATIENCE } from '../src/finetune/stage.js';
import { defaultRetrainOptions, fineTuneRate } from '../src/flags/retrain.js';
import type { Graph } from '../src/graph/ir.js';
import { predictSet, trainHead } from '../src/train/index.js';
import { assignFolds, denseProbabilities, trainL2Head } from '../src/train/l2.js';
import { round } from './anchor.js';
import { SHARED } from '../test/helpers/fixtures.js';

const cmd = new Command('bench-accuracy')
  .option('--set <name>', 'flowers, fashion, or a folder of class subfolders', 'flowers')
  .option('--folds <k>', 'test folds (every image tested once)', intArg('--folds'), 10)
  .option('--fashion_count <n>', 'images of Fashion-MNIST to use (the first n of its training file)', intArg('--fashion_count'), 3000)
  .option('--seed <n>', 'seed of the folds and the heads', intArg('--seed'), 0)
  .option('--fine_tune_layers <n>', 'also fine-tune the top n layers after the default head, as retrain does with every other flag at its default (0: skip)', intArg('--fine_tune_layers'), 4)
  .parse();
const o = cmd.opts<{ set: string; folds: number; fashion_count: number; seed: number; fine_tune_layers: number }>();

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

/** retrain.py's head with its defaults, as `retrain` trains it. */
async function defaultHead(s: FoldSets) {
  const { head } = await trainHead(s.training, s.validation, s.classCount, s.dim, {
    steps: 4000,
    learningRate: 0.01,
    trainBatchSize: 100,
    validationBatchSize: 100,
    evalStepInterval: 10,
    seed: s.seed,
    log: silentLogger,
  });
  return head;
}

/**
 * The default head, then `--fine_tune_layers n` with every other flag at retrain's
 * default (epochs, rate, batch, patience), on the cached activations of the same rows.
 * Its time includes the head's.
 */
function fineTuning(layers: number, graph: Graph, split: GraphSplit, acts: LabeledSet): Method {
  const row = new Map(acts.files.map((f, i) => [f, i]));
  const size = acts.x.length / acts.y.length;
  const pick = (set: LabeledSet) => rowsOf(acts, size, set.files.map((f) => row.get(f)!));
  const d = defaultRetrainOptions();
  return {
    name: `fine-tune (--fine_tune_layers ${layers})`,
    async run(s) {
      const head = await defaultHead(s);
      const top = new GraphTop(graph, split);
      try {
        await fineTune(top, head, pick(s.training), pick(s.validation), {
          epochs: d.fineTuneEpochs,
          learningRate: fineTuneRate(d),
          batchSize: d.fineTuneBatchSize,
          patience: FINE_TUNE_PATIENCE,
          seed: s.seed,
          optimizer: d.optimizer,
          log: silentLogger,
        });
        const { predictions } = predictSet(head, await topBottlenecks(top, pick(s.testing)), s.dim, -1, s.seed);
        return Int32Array.from(predictions, (p) => p.predictedIndex);
      } finally {
        top.dispose();
        head.dispose();
      }
    },
  };
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
 * The heads compared. The first is the baseline of the time ratios; fine-tuning is
 * added after them (it needs the module's activations, see benchSet).
 */
export const METHODS: Method[] = [
  {
    name: 'sgd (retrain.py, default)',
    async run(s) {
      const head = await defaultHead(s);
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
  const all = labeledSet(lists, b, 'training');
  const methods = [...METHODS];
  if (o.fine_tune_layers > 0) {
    const { graph, split } = await splitModule(extractor, o.fine_tune_layers);
    const { extractor: bottom, onOrt } = await activationExtractor(extractor, graph, split, { log: silentLogger });
    const a = await cacheBottlenecks(lists, bottom, { bottleneckDir: path.join(os.tmpdir(), 'retrain-bench-accuracy-bottlenecks'), numWorkers: onOrt ? undefined : 0, log: silentLogger });
    bottom.dispose();
    methods.push(fineTuning(o.fine_tune_layers, graph, split, labeledSet(lists, a, 'training')));
  }
  extractor.dispose();
  const classCount = lists.classes.length;
  const dim = b.size;
  const n = all.y.length;
  const fold = assignFolds(all.y, classCount, o.folds, o.seed, 'bench_test_folds');
  const inner = assignFolds(all.y, classCount, 9, o.seed, 'bench_validation_folds');
  const right = methods.map(() => 0);
  const seconds = methods.map(() => 0);
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
    for (const [m, method] of methods.entries()) {
      const t = performance.now();
      const predicted = await method.run(sets);
      seconds[m]! += (performance.now() - t) / 1000;
      right[m]! += predicted.filter((p, i) => p === sets.testing.y[i]).length;
    }
    process.stderr.write(`fold ${f + 1}/${o.folds}: ${methods.map((m, j) => `${m.name} ${right[j]}`).join(', ')}\n`);
  }
  load.push(os.loadavg()[0]!);
  const results = methods.map((m, j) => ({
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
