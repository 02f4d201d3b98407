/**
 * What the k-fold benches share (bench/accuracy.ts, bench/int8_agreement.ts): the image
 * sets, the built-in module's bottlenecks through the project's own cache (one temp dir,
 * reused between runs and benches), and the stratified folds: fold f is the test set, the
 * other folds are split 8:1 into training and validation (retrain's 80/10/10).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Command } from 'commander';
import sharp from 'sharp';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { labeledSet, type LabeledSet } from '../src/bottleneck/sets.js';
import { createImageLists, type ImageLists } from '../src/dataset/index.js';
import { silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { trainHead, type Head } from '../src/train/index.js';
import { intArg } from '../src/cli/common.js';
import { assignFolds } from '../src/train/l2.js';
import { SHARED } from '../test/helpers/fixtures.js';

/** Split of one fold, as each method receives it; `files` lets a method that needs the images (fine-tuning, exports) find them. */
export interface FoldSets {
  training: LabeledSet;
  validation: LabeledSet;
  testing: LabeledSet;
  classCount: number;
  dim: number;
  seed: number;
}

/** One cache for every k-fold bench: the same module and images give the same bottlenecks. */
export const BENCH_BOTTLENECK_DIR = path.join(os.tmpdir(), 'retrain-bench-accuracy-bottlenecks');

export const FASHION = '/usr/share/datasets/fashion-mnist';
const FASHION_CLASSES = ['t-shirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle_boot'];

export const haveFashion = (): boolean => fs.existsSync(path.join(FASHION, 'train-images-idx3-ubyte.gz'));

/** The first `count` Fashion-MNIST training images as 28x28 PNGs in class folders (a temp dir, reused). */
export async function fashionFolder(count: number): Promise<string> {
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
    const file = path.join(dir, FASHION_CLASSES[labels[8 + i]!]!, `${i}.png`);
    // Temp name, then rename: a killed run never leaves half a PNG behind.
    await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(`${file}.tmp`);
    fs.renameSync(`${file}.tmp`, file);
  }
  fs.writeFileSync(`${done}.tmp`, '');
  fs.renameSync(`${done}.tmp`, done);
  return dir;
}

/** flowers = ../shared/datasets/flowers-dev; fashion = the first `fashionCount` Fashion-MNIST images; else a folder. */
export async function setFolder(name: string, fashionCount: number): Promise<string> {
  if (name === 'flowers') return path.join(SHARED, 'datasets', 'flowers-dev');
  if (name === 'fashion') return fashionFolder(fashionCount);
  return name;
}

/** Index of the largest value (the first of equal ones), as label-image ranks. */
export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

export function rowsOf(set: LabeledSet, dim: number, rows: number[]): LabeledSet {
  const x = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => x.set(set.x.subarray(r * dim, (r + 1) * dim), i * dim));
  return { x, y: Int32Array.from(rows, (r) => set.y[r]!), files: rows.map((r) => set.files[r]!) };
}

/** Every image of a set with its bottleneck, in one pool: the folds make the splits. */
export interface BenchSet {
  lists: ImageLists;
  all: LabeledSet;
  classCount: number;
  dim: number;
  /** Seconds spent on bottlenecks (0 when all were cached). */
  bottleneckS: number;
  /** The built-in module, when asked to keep it (exports need it); the caller disposes it. */
  extractor?: FeatureExtractor;
}

export interface KFold extends BenchSet {
  fold(f: number): FoldSets;
}

/** The built-in module's bottleneck of every image in `dir`, through the shared cache. */
export async function setBottlenecks(dir: string, opts: { keepExtractor?: boolean } = {}): Promise<BenchSet> {
  const lists = await createImageLists(dir, { testingPercentage: 0, validationPercentage: 0 }, silentLogger);
  const extractor = await loadFeatureExtractor({ spec: DEFAULT_MODULE, cacheDir: '', log: silentLogger });
  const t0 = performance.now();
  const b = await cacheBottlenecks(lists, extractor, { bottleneckDir: BENCH_BOTTLENECK_DIR, log: silentLogger });
  const bottleneckS = (performance.now() - t0) / 1000;
  if (!opts.keepExtractor) extractor.dispose();
  return { lists, all: labeledSet(lists, b, 'training'), classCount: lists.classes.length, dim: b.size, bottleneckS, extractor: opts.keepExtractor ? extractor : undefined };
}

/** The `folds` stratified folds of a set from `seed`: fold f's test rows, and the rest split 8:1. */
export function foldsOf(set: BenchSet, folds: number, seed: number): (f: number) => FoldSets {
  const { all, classCount, dim } = set;
  const test = assignFolds(all.y, classCount, folds, seed, 'bench_test_folds');
  const inner = assignFolds(all.y, classCount, 9, seed, 'bench_validation_folds');
  const rows = (keep: (i: number) => boolean) => rowsOf(all, dim, [...all.y.keys()].filter(keep));
  return (f) => ({
    testing: rows((i) => test[i] === f),
    validation: rows((i) => test[i] !== f && inner[i] === 0),
    training: rows((i) => test[i] !== f && inner[i] !== 0),
    classCount,
    dim,
    seed,
  });
}

/** Bottlenecks of every image in `dir` and its `folds` stratified folds from `seed`. */
export async function kFold(dir: string, folds: number, seed: number, opts: { keepExtractor?: boolean } = {}): Promise<KFold> {
  const set = await setBottlenecks(dir, opts);
  return { ...set, fold: foldsOf(set, folds, seed) };
}

/** The head `retrain` trains with its default flags (retrain.py's SGD defaults), on one fold. */
export async function defaultHead(s: FoldSets): Promise<Head> {
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

/** The options every k-fold bench takes: --set, --folds, --seed, --fashion_count. */
export interface KFoldOptions {
  set: string;
  folds: number;
  seed: number;
  fashion_count: number;
}

/** Adds the k-fold benches' common options to `cmd`, with this bench's defaults. */
export function kFoldOptions(cmd: Command, defaults: { folds: number; fashionCount: number }): Command {
  return cmd
    .option('--set <name>', 'flowers, fashion (Debian dataset-fashion-mnist), or a folder of class subfolders', 'flowers')
    .option('--folds <k>', 'test folds (every image tested once)', intArg('--folds'), defaults.folds)
    .option('--seed <n>', 'seed of the folds and of the heads (as retrain --seed)', intArg('--seed'), 0)
    .option('--fashion_count <n>', 'images of Fashion-MNIST to use (the first n of its training file)', intArg('--fashion_count'), defaults.fashionCount);
}
