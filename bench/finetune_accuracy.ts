/**
 * `node dist/bench/finetune_accuracy.js [--folds 5] [--lr 0.0001,0.0003] [--optimizer adam] [--epochs 3] [--batch 32] [--layers 4] [--dir <set>]`
 *
 * Test accuracy of the head alone (retrain's default head: SGD, 4,000 steps, rate 0.01,
 * batch 100) against the head followed by fine-tuning the module's top layers on cached
 * activations, on the same k-fold splits, so that every photo is tested once: fold f is
 * the test set, and the other folds are split 8:1 into training and validation. The
 * choices (rate, epochs) are made on validation accuracy inside fine-tuning; the test
 * folds only report. Set: ../shared/datasets/flowers-dev (600 photos) by default.
 * Prints accuracy with N, and the time of fine-tuning per fold, per photo and per epoch.
 */
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { labeledSet, type LabeledSet } from '../src/bottleneck/sets.js';
import { intArg } from '../src/cli/common.js';
import { createImageLists } from '../src/dataset/index.js';
import { activationExtractor } from '../src/finetune/activations.js';
import { GraphTop, fineTune, splitModule, topBottlenecks } from '../src/finetune/index.js';
import { silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor } from '../src/module/index.js';
import { predictSet, trainHead } from '../src/train/index.js';
import { SHARED } from '../test/helpers/fixtures.js';
import { FINE_TUNE_PATIENCE } from '../src/finetune/stage.js';
import { rowsOf } from './folds.js';

const cmd = new Command('bench-finetune-accuracy')
  .option('--dir <dir>', 'folder of class subfolders', path.join(SHARED, 'datasets', 'flowers-dev'))
  .option('--folds <k>', 'test folds', intArg('--folds'), 5)
  .option('--lr <list>', 'fine-tuning learning rates (comma-separated)', '0.0001')
  .option('--optimizer <name>', 'sgd, momentum or adam', 'adam')
  .option('--epochs <n>', 'fine-tuning epochs at most', intArg('--epochs'), 3)
  .option('--batch <n>', 'fine-tuning batch', intArg('--batch'), 32)
  .option('--layers <n>', '--fine_tune_layers', intArg('--layers'), 4)
  .option('--seed <n>', 'seed of the folds and the heads', intArg('--seed'), 0)
  .parse();
const opts = cmd.opts<{ dir: string; folds: number; lr: string; optimizer: 'sgd' | 'momentum' | 'adam'; epochs: number; batch: number; layers: number; seed: number }>();

async function main(): Promise<void> {
  const backend = await initBackend('auto');
  const ex = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: path.join(os.homedir(), '.cache', 'retrain-ts'), onnx: { cacheDir: path.join(os.tmpdir(), 'retrain-bench-onnx') }, log: silentLogger });
  const lists = await createImageLists(opts.dir, { testingPercentage: 0, validationPercentage: 0 }, silentLogger);
  const cacheDir = path.join(os.tmpdir(), 'retrain-bench-finetune-cache');
  const b = await cacheBottlenecks(lists, ex, { bottleneckDir: cacheDir, log: silentLogger });
  const { graph, split } = await splitModule(ex, opts.layers);
  const { extractor: bottom, onOrt } = await activationExtractor(ex, graph, split, { log: silentLogger });
  let t0 = performance.now();
  const a = await cacheBottlenecks(lists, bottom, { bottleneckDir: cacheDir, numWorkers: onOrt ? undefined : 0, log: silentLogger });
  const actSeconds = (performance.now() - t0) / 1000;
  const feats = labeledSet(lists, b, 'training');
  const acts = labeledSet(lists, a, 'training');
  const n = feats.y.length;
  // Stratified folds from the seed.
  const rng = seedrandom(`${opts.seed}:folds`);
  const fold = new Int32Array(n);
  const classes = Math.max(...feats.y) + 1;
  for (let k = 0; k < classes; k++) {
    const idx = [...feats.y.keys()].filter((i) => feats.y[i] === k).sort(() => 0).map((i) => [rng(), i] as const).sort((p, q) => p[0] - q[0]).map((p) => p[1]);
    idx.forEach((i, j) => (fold[i] = j % opts.folds));
  }
  const rates = opts.lr.split(',').map(Number);
  let headCorrect = 0;
  const ftCorrect = new Map<number, number>(rates.map((r) => [r, 0]));
  const ftSeconds = new Map<number, number>(rates.map((r) => [r, 0]));
  const ftEpochs = new Map<number, number>(rates.map((r) => [r, 0]));
  let trainImages = 0;
  for (let f = 0; f < opts.folds; f++) {
    const test = [...fold.keys()].filter((i) => fold[i] === f);
    const rest = [...fold.keys()].filter((i) => fold[i] !== f);
    const val = rest.filter((_, j) => j % 9 === 0);
    const train = rest.filter((_, j) => j % 9 !== 0);
    trainImages += train.length;
    const size = ex.info.bottleneckSize;
    const asize = acts.x.length / n;
    const head0 = await trainHead(rowsOf(feats, size, train), rowsOf(feats, size, val), classes, size, { steps: 4000, learningRate: 0.01, trainBatchSize: 100, validationBatchSize: 100, evalStepInterval: 4000, seed: opts.seed, log: silentLogger });
    const headValues = await head0.head.values();
    headCorrect += Math.round(predictSet(head0.head, rowsOf(feats, size, test), size, 100, opts.seed).metrics.accuracy * test.length);
    for (const lr of rates) {
      const top = new GraphTop(graph, split);
      head0.head.assign(headValues);
      t0 = performance.now();
      const r = await fineTune(top, head0.head, rowsOf(acts, asize, train), rowsOf(acts, asize, val), { epochs: opts.epochs, learningRate: lr, batchSize: opts.batch, patience: FINE_TUNE_PATIENCE, seed: opts.seed, optimizer: opts.optimizer, log: silentLogger });
      ftSeconds.set(lr, ftSeconds.get(lr)! + (performance.now() - t0) / 1000);
      ftEpochs.set(lr, ftEpochs.get(lr)! + r.history.length);
      const tb = await topBottlenecks(top, rowsOf(acts, asize, test));
      const acc = predictSet(head0.head, tb, size, 100, opts.seed).metrics.accuracy;
      ftCorrect.set(lr, ftCorrect.get(lr)! + Math.round(acc * test.length));
      console.error(`fold ${f}: test N=${test.length}, lr ${lr}: val ${r.validationBefore?.toFixed(3)} -> ${r.validationAfter?.toFixed(3)} (epoch ${r.bestEpoch} of ${r.history.length}), test ${acc.toFixed(3)}`);
      top.dispose();
    }
    head0.head.dispose();
  }
  const load = os.loadavg().map((v) => v.toFixed(2)).join(' ');
  console.log(`set ${opts.dir}: ${n} photos, ${opts.folds} folds, backend ${backend.name}, --fine_tune_layers ${opts.layers} (activation [${split.cutShape.join(',')}]), batch ${opts.batch}, ${opts.optimizer}, up to ${opts.epochs} epochs; load average ${load}`);
  console.log(`activations: ${a.computed} computed, ${a.cached} cached in ${actSeconds.toFixed(1)} s${a.computed ? ` (${((actSeconds * 1000) / a.computed).toFixed(1)} ms per photo)` : ''}`);
  console.log(`head alone: test accuracy ${((headCorrect / n) * 100).toFixed(1)}% (N=${n})`);
  for (const lr of rates) {
    const s = ftSeconds.get(lr)!;
    const e = ftEpochs.get(lr)!;
    console.log(`fine-tuned, rate ${lr}: test accuracy ${((ftCorrect.get(lr)! / n) * 100).toFixed(1)}% (N=${n}); ${s.toFixed(1)} s for ${e} epochs over ${opts.folds} folds = ${((s * 1000 * opts.folds) / (e * trainImages)).toFixed(1)} ms per training photo per epoch`);
  }
  bottom.dispose();
  ex.dispose();
}

await main();
