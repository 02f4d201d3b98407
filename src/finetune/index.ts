/**
 * --fine_tune_layers: after the head is trained on bottlenecks, unfreeze the top N
 * layers of the module and train them with the head (the Keras transfer-learning
 * tutorial's second stage), at cached speed: the frozen bottom ran once per image
 * (activations.ts, cached on disk), so each step runs only the top and the head on
 * cached activations. Validation accuracy is checked after every epoch and the best
 * weights are kept (early stopping); batch norm stays in inference mode.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import type { Graph } from '../graph/ir.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import { UnsupportedOpsError } from '../graph/errors.js';
import { moduleGraph, onnxModuleGraph } from '../module/onnx/convert.js';
import type { LabeledSet } from '../bottleneck/sets.js';
import { MAX_CROSS_ENTROPY, divergence, type Head, type HeadValues } from '../train/index.js';
import { classWeights, headLoss, makeOptimizer, type ClassWeighting, type OptimizerName } from '../train/options.js';
import { throwIfInterrupted, yieldToEventLoop } from '../util/abort.js';
import { GraphTop } from './executor.js';
import { splitGraph, type GraphSplit } from './split.js';
import seedrandom from 'seedrandom';

export { GraphTop } from './executor.js';
export { splitGraph, type GraphSplit } from './split.js';

/** The module read as a Graph and split at --fine_tune_layers; refuses what cannot be fine-tuned. */
export async function splitModule(ex: FeatureExtractor, n: number): Promise<{ graph: Graph; split: GraphSplit }> {
  if (ex.kind === 'saved-model') {
    throw new UsageError(
      `--fine_tune_layers works with TF.js graph and layers modules (the built-in one, TF Hub tfjs models) and .onnx modules; ${ex.info.spec} is a ${ex.info.format}: ` +
        'use its TF.js version as --tfhub_module, or drop --fine_tune_layers',
    );
  }
  const size = { height: ex.info.inputHeight, width: ex.info.inputWidth };
  let graph: Graph;
  if (ex.kind === 'onnx') {
    try {
      graph = onnxModuleGraph(ex.bytes, size);
    } catch (err) {
      if (err instanceof UnsupportedOpsError) throw new UsageError(`--fine_tune_layers ${n}: ${ex.info.spec} uses ${err.ops.length === 1 ? 'an op' : 'ops'} the .onnx reader does not cover: ${err.ops.join(', ')}; drop --fine_tune_layers`);
      throw err;
    }
  } else graph = await moduleGraph(ex.files, { bottleneck: ex.info.bottleneckTensor, ...size });
  return { graph, split: splitGraph(graph, n, ex.info.spec) };
}

/** Kernels the backward pass of convolutions needs; the wasm backend has none of them. */
const GRADIENT_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'DepthwiseConv2dNativeBackpropFilter', 'DepthwiseConv2dNativeBackpropInput'];

/** Whether the top must compute convolutions from ops whose gradients the active backend has. */
export function needsBasicOps(): boolean {
  const b = tf.getBackend();
  return !GRADIENT_KERNELS.every((k) => tf.getKernel(k, b) !== undefined);
}

export interface FineTuneOptions {
  /** Passes over the training activations (early stopping may end sooner). */
  epochs: number;
  /** When set, exactly this many steps instead of epochs. */
  steps?: number;
  learningRate: number;
  batchSize: number;
  /** Epochs in a row more than half a standard error below the best validation accuracy before stopping. */
  patience: number;
  seed: number;
  optimizer: OptimizerName;
  labelSmoothing?: number;
  classWeighting?: ClassWeighting;
  /** Checked at every step (Ctrl-C): fine-tuning stops with an InterruptedError. */
  signal?: AbortSignal;
  log: Logger;
}

export interface FineTuneEpoch {
  epoch: number;
  step: number;
  crossEntropy: number;
  validationAccuracy: number | null;
}

export interface FineTuneResult {
  /** Validation accuracy before fine-tuning and of the kept weights. */
  validationBefore: number | null;
  validationAfter: number | null;
  /** Epoch of the kept weights (0: the weights before fine-tuning were kept). */
  bestEpoch: number;
  steps: number;
  history: FineTuneEpoch[];
}

/** Rows of a set as a tensor batch. */
function rowsTensor(set: LabeledSet, rows: number[], size: number, shape: number[]): tf.Tensor {
  const x = new Float32Array(rows.length * size);
  rows.forEach((r, i) => x.set(set.x.subarray(r * size, (r + 1) * size), i * size));
  return tf.tensor(x, [rows.length, ...shape]);
}

/** Bottlenecks of a set of cached activations through the (fine-tuned) top. */
export async function topBottlenecks(top: GraphTop, set: LabeledSet, batchSize = 128): Promise<LabeledSet> {
  const size = top.split.cutShape.reduce((p, d) => p * d, 1);
  const all = Array.from(set.y, (_, i) => i);
  const parts: Float32Array[] = [];
  for (let i = 0; i < all.length; i += batchSize) {
    const x = rowsTensor(set, all.slice(i, i + batchSize), size, top.split.cutShape);
    const b = top.forward(x, false);
    parts.push((await b.data()) as Float32Array);
    tf.dispose([x, b]);
  }
  const d = parts.length ? parts[0]!.length / Math.min(batchSize, all.length) : 0;
  const x = new Float32Array(all.length * d);
  let at = 0;
  for (const p of parts) (x.set(p, at), (at += p.length));
  return { x, y: set.y, files: set.files };
}

async function accuracy(top: GraphTop, head: Head, set: LabeledSet): Promise<number | null> {
  if (set.y.length === 0) return null;
  const b = await topBottlenecks(top, set);
  const correct = tf.tidy(() => {
    const logits = head.logits(tf.tensor2d(b.x, [set.y.length, b.x.length / set.y.length]));
    return tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.tensor1d(set.y, 'int32')), 'int32'));
  });
  const n = (await correct.data())[0]!;
  correct.dispose();
  return n / set.y.length;
}

/**
 * Whether fine-tuning keeps an epoch whose validation accuracy is `acc` (on `n` photos),
 * the best seen so far being `highest`: unless it is more than half a standard error
 * below. retrain's validation sets are small (54 of 600 photos, where that is one photo):
 * a smaller gap is noise, and the later epoch has learned from more steps
 * (docs/benchmarks.md, "Fine-tuning: a later epoch unless clearly worse").
 */
export function keepsEpoch(acc: number, highest: number, n: number): boolean {
  return acc >= highest - 0.5 * Math.sqrt((highest * (1 - highest)) / n);
}

/** A seeded permutation of 0..n-1 (Fisher–Yates). */
function permutation(n: number, seed: number, epoch: number): number[] {
  const rng = seedrandom(`${seed}:fine_tune:${epoch}`);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/**
 * Trains the top's variables and the head together on cached activations: an epoch
 * is one seeded shuffle of the training rows in mini-batches; after each epoch the
 * validation accuracy decides whether these weights are the best so far. The best
 * ones (possibly the ones before fine-tuning) are put back at the end.
 */
export async function fineTune(top: GraphTop, head: Head, training: LabeledSet, validation: LabeledSet, o: FineTuneOptions): Promise<FineTuneResult> {
  const log = o.log;
  const size = top.split.cutShape.reduce((p, d) => p * d, 1);
  const basic = needsBasicOps();
  const optimizer = makeOptimizer(o.optimizer, o.learningRate);
  const weights = classWeights(training.y, head.classCount, o.classWeighting);
  const vars = [...top.variables.values(), ...head.variables];
  const perEpoch = Math.ceil(training.y.length / o.batchSize);
  const totalSteps = o.steps ?? perEpoch * o.epochs;
  const epochs = Math.ceil(totalSteps / perEpoch);
  const history: FineTuneEpoch[] = [];
  const before = await accuracy(top, head, validation);
  let best = { acc: before ?? -1, epoch: 0, top: top.values(), head: await head.values() };
  let highest = best.acc;
  let sinceBest = 0;
  let step = 0;
  const checkpoint = async () => {
    if (!o.signal) return;
    await yieldToEventLoop();
    throwIfInterrupted(o.signal, `interrupted at fine-tuning step ${step}: the model was not exported; the bottleneck and activation caches are kept`);
  };
  try {
    for (let epoch = 1; epoch <= epochs && step < totalSteps; epoch++) {
      const order = permutation(training.y.length, o.seed, epoch);
      let cost = 0;
      for (let i = 0; i < order.length && step < totalSteps; i += o.batchSize, step++) {
        const rows = order.slice(i, i + o.batchSize);
        const x = rowsTensor(training, rows, size, top.split.cutShape);
        const y = tf.tensor1d(rows.map((r) => training.y[r]!), 'int32');
        const c = optimizer.minimize(() => headLoss(head.logits(top.forward(x, basic), true), y, head.classCount, o.labelSmoothing, weights), true, vars)!;
        cost = (await c.data())[0]!;
        tf.dispose([x, y, c]);
        if (!(cost <= MAX_CROSS_ENTROPY)) throw divergence(`the fine-tuning cross entropy is ${cost} at step ${step}`, o.learningRate, '--fine_tune_learning_rate');
        log.progress?.('fine-tuning', step + 1, totalSteps);
        await checkpoint();
      }
      const acc = await accuracy(top, head, validation);
      history.push({ epoch, step, crossEntropy: cost, validationAccuracy: acc });
      const pct = acc === null ? 'n/a' : `${(acc * 100).toFixed(1)}%`;
      log.info(`Fine-tune epoch ${epoch} (step ${step}): Cross entropy = ${cost.toFixed(6)}, Validation accuracy = ${pct} (N=${validation.y.length})`);
      // Without a validation set every epoch counts as better: the last weights are kept.
      if (acc === null || keepsEpoch(acc, highest, validation.y.length)) {
        best = { acc: acc ?? -1, epoch, top: top.values(), head: await head.values() };
        sinceBest = 0;
      } else if (++sinceBest >= o.patience && o.steps === undefined && epoch < epochs) {
        log.info(`Fine-tuning: validation accuracy more than half a standard error below the best for ${o.patience} epoch${o.patience === 1 ? '' : 's'}; stopping early`);
        break;
      }
      if (acc !== null) highest = Math.max(highest, acc);
    }
  } finally {
    optimizer.dispose();
  }
  top.assign(best.top);
  head.assign(best.head as HeadValues);
  return { validationBefore: before, validationAfter: before === null ? null : best.acc, bestEpoch: best.epoch, steps: step, history };
}
