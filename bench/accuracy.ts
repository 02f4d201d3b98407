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
import os from 'node:os';
import { Command } from 'commander';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { labeledSet, type LabeledSet } from '../src/bottleneck/sets.js';
import { intArg } from '../src/cli/common.js';
import { activationExtractor } from '../src/finetune/activations.js';
import { GraphTop, fineTune, splitModule, topBottlenecks, type GraphSplit } from '../src/finetune/index.js';
import { FINE_TUNE_PATIENCE } from '../src/finetune/stage.js';
import { defaultRetrainOptions } from '../src/flags/retrain.js';
import type { Graph } from '../src/graph/ir.js';
import { silentLogger } from '../src/log.js';
import { DEFAULT_MODULE } from '../src/module/index.js';
import { predictSet } from '../src/train/index.js';
import { denseProbabilities, trainL2Head } from '../src/train/l2.js';
import { round } from './anchor.js';
import { argmax, BENCH_BOTTLENECK_DIR, defaultHead, kFold, kFoldOptions, rowsOf, setFolder, type FoldSets, type KFoldOptions } from './folds.js';

const o = kFoldOptions(new Command('bench-accuracy'), { folds: 10, fashionCount: 3000 })
  .option('--fine_tune_layers <n>', 'also fine-tune the top n layers after the default head, as retrain does with every other flag at its default (0: skip)', intArg('--fine_tune_layers'), 4)
  .parse()
  .opts<KFoldOptions & { fine_tune_layers: number }>();

export type { FoldSets };

/** A method trains on training (+validation) and returns the predicted class of each test row. */
export interface Method {
  name: string;
  run(s: FoldSets): Promise<Int32Array>;
}

const argmaxRows = (p: Float64Array | Float32Array, n: number, k: number) => Int32Array.from({ length: n }, (_, i) => argmax(p.subarray(i * k, (i + 1) * k)));

const l2 = (standardize: boolean): Method => ({
  name: standardize ? 'l2_standardized' : 'l2',
  async run(s) {
    const { values } = trainL2Head(s.training, s.validation, s.dim, s.classCount, { standardize, seed: s.seed });
    return argmaxRows(denseProbabilities(values, s.testing.x, s.testing.y.length, s.dim, s.classCount), s.testing.y.length, s.classCount);
  },
});

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
          learningRate: d.fineTuneLearningRate,
          batchSize: d.fineTuneBatchSize,
          patience: FINE_TUNE_PATIENCE,
          seed: s.seed,
          optimizer: d.fineTuneOptimizer,
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

/** The heads compared. The first is the baseline of the time ratios; fine-tuning is added after them (benchSet). */
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

async function benchSet(name: string): Promise<void> {
  const dir = await setFolder(name, o.fashion_count);
  const backend = await initBackend('auto');
  const k = await kFold(dir, o.folds, o.seed, { keepExtractor: o.fine_tune_layers > 0 });
  const { classCount, dim } = k;
  const methods = [...METHODS];
  if (k.extractor) {
    const { graph, split } = await splitModule(k.extractor, o.fine_tune_layers);
    const { extractor: bottom, onOrt } = await activationExtractor(k.extractor, graph, split, { log: silentLogger });
    const a = await cacheBottlenecks(k.lists, bottom, { bottleneckDir: BENCH_BOTTLENECK_DIR, numWorkers: onOrt ? undefined : 0, log: silentLogger });
    bottom.dispose();
    k.extractor.dispose();
    methods.push(fineTuning(o.fine_tune_layers, graph, split, labeledSet(k.lists, a, 'training')));
  }
  const n = k.all.y.length;
  const bottleneckS = k.bottleneckS;
  const right = methods.map(() => 0);
  const seconds = methods.map(() => 0);
  const load = [os.loadavg()[0]!];
  for (let f = 0; f < o.folds; f++) {
    const sets = k.fold(f);
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
