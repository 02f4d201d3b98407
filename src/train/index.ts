/**
 * The `train` stage: retrain.py's final layer (one dense layer + softmax on the
 * bottleneck), trained by plain gradient descent on cross entropy, with its
 * periodic train/validation evaluation and the final test.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { RetrainError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { throwIfInterrupted, yieldToEventLoop } from '../util/abort.js';
import type { LabeledSet } from '../bottleneck/sets.js';
import { DualSgdSteps, sgdStep } from './step.js';
import { EarlyStopping, classWeights, headLoss, makeOptimizer, type HeadTrainingOptions } from './options.js';

export type { LabeledSet } from '../bottleneck/sets.js';

export interface TrainOptions extends HeadTrainingOptions {
  steps: number;
  learningRate: number;
  trainBatchSize: number;
  /** -1: the whole validation set at each evaluation. */
  validationBatchSize: number;
  evalStepInterval: number;
  seed: number;
  /** Called at each step where the model should be stored (--intermediate_store_frequency). */
  intermediateStoreFrequency?: number;
  onIntermediate?: (step: number, head: Head) => Promise<void>;
  /** Called at every evaluation, for summaries. */
  onEval?: (point: EvalPoint, head: Head) => void | Promise<void>;
  /** Checked at every evaluation (Ctrl-C). */
  signal?: AbortSignal;
  /** Replaces the sampled training rows' bottlenecks (fresh distortions: bottleneck/distorted.ts). */
  trainBottlenecks?: (rows: Int32Array, step: number) => Promise<Float32Array>;
  log: Logger;
}

export interface EvalPoint {
  step: number;
  trainAccuracy: number;
  crossEntropy: number;
  validationAccuracy: number;
  validationCrossEntropy: number;
  validationN: number;
}

/** Values of the head's layers, for export and for keeping the best head. */
export interface HeadValues {
  weights: Float32Array;
  biases: Float32Array;
  /** --hidden_units: the ReLU layer between the bottleneck and final_result. */
  hidden?: { weights: Float32Array; biases: Float32Array };
}

/** The new final layer: logits = x·W + b, final_result = softmax(logits); optionally a ReLU hidden layer first. */
export class Head {
  readonly weights: tf.Variable;
  readonly biases: tf.Variable;
  readonly hiddenWeights?: tf.Variable;
  readonly hiddenBiases?: tf.Variable;
  private dropoutCalls = 0;
  private readonly dropoutSeed: number;
  constructor(
    readonly bottleneckSize: number,
    readonly classCount: number,
    seed: number,
    readonly hiddenUnits = 0,
    readonly dropout = 0,
  ) {
    // retrain.py: truncated normal, stddev 0.001; zero biases. tfjs ignores a seed of 0
    // (it falls back to Math.random), so the init seed is derived, never 0.
    const initSeed = Math.floor(seedrandom(`${seed}:init`)() * 2 ** 31) + 1;
    this.dropoutSeed = Math.floor(seedrandom(`${seed}:dropout`)() * 2 ** 30) + 1;
    let inputs = bottleneckSize;
    if (hiddenUnits > 0) {
      // He initialisation: retrain.py's tiny stddev would starve a ReLU layer.
      const hiddenSeed = Math.floor(seedrandom(`${seed}:hidden`)() * 2 ** 31) + 1;
      const sd = Math.sqrt(2 / bottleneckSize);
      this.hiddenWeights = tf.variable(tf.truncatedNormal([bottleneckSize, hiddenUnits], 0, sd, 'float32', hiddenSeed), true, 'hidden_weights');
      this.hiddenBiases = tf.variable(tf.zeros([hiddenUnits]), true, 'hidden_biases');
      inputs = hiddenUnits;
    }
    this.weights = tf.variable(tf.truncatedNormal([inputs, classCount], 0, 0.001, 'float32', initSeed), true, 'final_weights');
    this.biases = tf.variable(tf.zeros([classCount]), true, 'final_biases');
  }
  get variables(): tf.Variable[] {
    return [this.hiddenWeights, this.hiddenBiases, this.weights, this.biases].filter((v): v is tf.Variable => v !== undefined);
  }
  /** `training` applies --dropout; each call draws a new mask, reproducibly from --seed. */
  logits(x: tf.Tensor2D, training = false): tf.Tensor2D {
    return tf.tidy(() => {
      const drop = (t: tf.Tensor2D) => (training && this.dropout > 0 ? (tf.dropout(t, this.dropout, undefined, this.dropoutSeed + this.dropoutCalls++) as tf.Tensor2D) : t);
      let h = drop(x);
      if (this.hiddenWeights && this.hiddenBiases) h = drop(tf.relu(tf.add(tf.matMul(h, this.hiddenWeights), this.hiddenBiases)) as tf.Tensor2D);
      return tf.add(tf.matMul(h, this.weights), this.biases);
    });
  }
  probabilities(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.softmax(this.logits(x)));
  }
  /** Copies of the current values, for export. */
  async values(): Promise<HeadValues> {
    const v: HeadValues = {
      weights: (await this.weights.data()) as Float32Array,
      biases: (await this.biases.data()) as Float32Array,
    };
    if (this.hiddenWeights && this.hiddenBiases) {
      v.hidden = { weights: (await this.hiddenWeights.data()) as Float32Array, biases: (await this.hiddenBiases.data()) as Float32Array };
    }
    return v;
  }
  /** Puts back values taken with values() (early stopping keeps the best head). */
  assign(v: HeadValues): void {
    tf.tidy(() => {
      this.weights.assign(tf.tensor(v.weights, this.weights.shape));
      this.biases.assign(tf.tensor(v.biases, this.biases.shape));
      if (v.hidden && this.hiddenWeights && this.hiddenBiases) {
        this.hiddenWeights.assign(tf.tensor(v.hidden.weights, this.hiddenWeights.shape));
        this.hiddenBiases.assign(tf.tensor(v.hidden.biases, this.hiddenBiases.shape));
      }
    });
  }
  dispose(): void {
    for (const v of this.variables) v.dispose();
  }
}

/** Deterministic random integers in [0, n) from --seed. */
export function makeRng(seed: number, stream: string): (n: number) => number {
  const rng = seedrandom(`${seed}:${stream}`);
  return (n: number) => Math.floor(rng() * n);
}

interface Batch {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
  /** The rows of the set, in batch order. */
  idx: Int32Array;
}

/** `count` rows drawn at random from `n` (with replacement, as retrain.py), or all of them in order for -1. */
function drawRows(n: number, count: number, pick: (n: number) => number): Int32Array {
  const idx = new Int32Array(count < 0 ? n : count);
  for (let i = 0; i < idx.length; i++) idx[i] = count < 0 ? i : pick(n);
  return idx;
}

/** The batch of rows `idx`: their bottlenecks, copied into `x` when given, or `values` when the caller has them. */
function batchOf(set: LabeledSet, size: number, idx: Int32Array, x?: Float32Array, values?: Float32Array): Batch {
  const y = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) y[i] = set.y[idx[i]!]!;
  if (!values) {
    values = x ?? new Float32Array(idx.length * size);
    for (let i = 0; i < idx.length; i++) values.set(set.x.subarray(idx[i]! * size, (idx[i]! + 1) * size), i * size);
  }
  return { x: tf.tensor2d(values, [idx.length, size]), y: tf.tensor1d(y, 'int32'), idx };
}

/**
 * Batches for the training loop. A random batch is copied into one reused buffer: a
 * fresh 512 KB array per step (batch 100 × 1280) cost more than the step's arithmetic.
 * Every backend has copied or consumed the values by the time `release` runs, and the
 * loop releases each batch before drawing the next. `count` -1 means every row, the
 * same each time, so that batch is made once and kept until `dispose`.
 */
class BatchSampler {
  private readonly buffer?: Float32Array;
  private fixed?: Batch;
  constructor(
    private readonly set: LabeledSet,
    private readonly size: number,
    private readonly count: number,
    private readonly pick: (n: number) => number,
  ) {
    if (count >= 0) this.buffer = new Float32Array(count * size);
  }
  draw(): Batch {
    if (this.count >= 0) return this.rows(this.drawRows());
    return (this.fixed ??= batchOf(this.set, this.size, this.drawRows()));
  }
  /** The rows of a random batch, drawn as `draw` draws them. */
  drawRows(): Int32Array {
    return drawRows(this.set.y.length, this.count, this.pick);
  }
  /** The batch of the given rows, in the reused buffer; `values` replaces their cached bottlenecks (fresh distortions). */
  rows(idx: Int32Array, values?: Float32Array): Batch {
    return batchOf(this.set, this.size, idx, this.buffer, values);
  }
  release(batch: Batch): void {
    if (batch !== this.fixed) tf.dispose([batch.x, batch.y]);
  }
  dispose(): void {
    if (this.fixed) tf.dispose([this.fixed.x, this.fixed.y]);
    this.fixed = undefined;
  }
}

export interface Metrics {
  accuracy: number;
  crossEntropy: number;
  n: number;
}

/** Accuracy and mean cross entropy of the head on given rows. */
export function measure(head: Head, x: tf.Tensor2D, y: tf.Tensor1D): Metrics {
  return tf.tidy(() => {
    const logits = head.logits(x);
    const labels = tf.oneHot(y, head.classCount);
    const ce = tf.losses.softmaxCrossEntropy(labels, logits).dataSync()[0]!;
    const acc = tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), y), 'float32')).dataSync()[0]!;
    return { accuracy: acc, crossEntropy: ce, n: y.shape[0] };
  });
}

export interface TrainResult {
  head: Head;
  history: EvalPoint[];
  final: EvalPoint;
  /** --early_stopping_patience: the evaluation whose head was kept, and whether training stopped early. */
  bestStep?: number;
  stoppedEarly?: boolean;
}

export async function trainHead(training: LabeledSet, validation: LabeledSet, classCount: number, bottleneckSize: number, opts: TrainOptions): Promise<TrainResult> {
  if (training.y.length === 0) throw new UsageError('no training images: lower --testing_percentage or --validation_percentage, or add images');
  const log = opts.log;
  const head = new Head(bottleneckSize, classCount, opts.seed, opts.hiddenUnits ?? 0, opts.dropout ?? 0);
  const optimizer = makeOptimizer(opts.optimizer ?? 'sgd', opts.learningRate);
  const lossWeights = classWeights(training.y, classCount, opts.classWeighting);
  // retrain.py's own setup (plain SGD on one dense layer) takes the written-out step (train/step.ts).
  const plainSgd =
    (opts.optimizer ?? 'sgd') === 'sgd' && !opts.hiddenUnits && !opts.dropout && !opts.labelSmoothing && (opts.classWeighting ?? 'none') === 'none';
  const patience = opts.earlyStoppingPatience ?? 0;
  if (patience > 0 && validation.y.length === 0) {
    throw new UsageError('--early_stopping_patience needs validation images: raise --validation_percentage');
  }
  const stopper = new EarlyStopping(patience);
  let best: HeadValues | undefined;
  let stoppedEarly = false;
  const trainBatches = new BatchSampler(training, bottleneckSize, opts.trainBatchSize, makeRng(opts.seed, 'train'));
  // Small training sets take the dual form of the same step (train/step.ts); fresh distortions change the rows every step, so they cannot.
  const dual =
    plainSgd && !opts.trainBottlenecks && opts.trainBatchSize > 0 && DualSgdSteps.pays(training.y.length, bottleneckSize, opts.steps, opts.trainBatchSize)
      ? new DualSgdSteps(head, training.x, training.y, opts.learningRate, opts.trainBatchSize)
      : undefined;
  const validationBatches = new BatchSampler(validation, bottleneckSize, opts.validationBatchSize, makeRng(opts.seed, 'validation'));
  const history: EvalPoint[] = [];
  const vars = head.variables;

  try {
    for (let i = 0; i < opts.steps; i++) {
      const isLast = i + 1 === opts.steps;
      const evaluate = i % opts.evalStepInterval === 0 || isLast;
      const freq = opts.intermediateStoreFrequency ?? 0;
      const store = freq > 0 && i % freq === 0 && i > 0 && opts.onIntermediate !== undefined;
      const idx = trainBatches.drawRows();
      let batch: Batch | undefined;
      if (dual) {
        dual.step(idx);
        if (evaluate || store) dual.syncHead();
        if (evaluate) batch = trainBatches.rows(idx);
      } else {
        const b = (batch = trainBatches.rows(idx, await opts.trainBottlenecks?.(idx, i)));
        if (plainSgd) sgdStep(head, b.x, b.y, opts.learningRate);
        else {
          tf.tidy(() => {
            optimizer.minimize(() => headLoss(head.logits(b.x, true), b.y, classCount, opts.labelSmoothing, lossWeights), false, vars);
          });
        }
      }
      if (evaluate && batch) {
        const train = measure(head, batch.x, batch.y);
        let val: Metrics = { accuracy: NaN, crossEntropy: NaN, n: 0 };
        if (validation.y.length > 0) {
          const vb = validationBatches.draw();
          val = measure(head, vb.x, vb.y);
          validationBatches.release(vb);
        }
        const point: EvalPoint = {
          step: i,
          trainAccuracy: train.accuracy,
          crossEntropy: train.crossEntropy,
          validationAccuracy: val.accuracy,
          validationCrossEntropy: val.crossEntropy,
          validationN: val.n,
        };
        history.push(point);
        log.info(`Step ${i}: Train accuracy = ${(train.accuracy * 100).toFixed(1)}%`);
        log.info(`Step ${i}: Cross entropy = ${train.crossEntropy.toFixed(6)}`);
        if (!(train.crossEntropy <= MAX_CROSS_ENTROPY)) throw divergence(`the cross entropy is ${train.crossEntropy} at step ${i}`, opts.learningRate);
        if (val.n > 0) log.info(`Step ${i}: Validation accuracy = ${(val.accuracy * 100).toFixed(1)}% (N=${val.n})`);
        await opts.onEval?.(point, head);
        if (patience > 0) {
          if (stopper.update(i, val.accuracy)) best = await head.values();
          else if (stopper.shouldStop && !isLast) {
            log.info(`Step ${i}: validation accuracy has not improved for ${patience} evaluations; stopping and keeping the head of step ${stopper.bestStep}`);
            stoppedEarly = true;
          }
        }
        if (opts.signal) {
          // Training is synchronous: let a Ctrl-C handler run.
          await yieldToEventLoop();
          throwIfInterrupted(opts.signal, `interrupted at training step ${i}: the model was not exported; the bottleneck cache is kept`);
        }
      }
      if (batch) trainBatches.release(batch);
      log.progress?.('training', i + 1, opts.steps);
      if (store) {
        await checkFinite(head, `step ${i}`, opts.learningRate);
        log.info(`Save intermediate result to : intermediate_${i}`);
        await opts.onIntermediate!(i, head);
      }
      if (stoppedEarly) break;
    }
    dual?.syncHead();
  } finally {
    dual?.dispose();
    validationBatches.dispose();
    optimizer.dispose();
  }
  if (best) head.assign(best);
  await checkFinite(head, 'the end of training', opts.learningRate);
  const final = history[history.length - 1]!;
  return patience > 0 ? { head, history, final, bestStep: stopper.bestStep, stoppedEarly } : { head, history, final };
}

/**
 * Beyond these, training has run away: a mean cross entropy of 1e4 nats, or weights
 * of 1e12 on bottleneck values of order 1, come only from a learning rate far too
 * large, long before float32 turns them into infinity and NaN.
 */
export const MAX_CROSS_ENTROPY = 1e4;
export const MAX_HEAD_WEIGHT = 1e12;

/** Training that ran off to NaN or infinity: nothing may be exported from it. */
export function divergence(what: string, learningRate: number, flag = '--learning_rate'): RetrainError {
  return new RetrainError(`training diverged (${what}): lower ${flag} (now ${learningRate}); nothing was exported`);
}

/** Weights are checked where they leave training (intermediate exports and the end); the loss at every evaluation. */
async function checkFinite(head: Head, where: string, learningRate: number): Promise<void> {
  const v = await head.values();
  const arrays = [v.weights, v.biases, ...(v.hidden ? [v.hidden.weights, v.hidden.biases] : [])];
  if (!arrays.every((a) => a.every((w) => Math.abs(w) <= MAX_HEAD_WEIGHT))) {
    throw divergence(`the head's weights are infinite, NaN or above ${MAX_HEAD_WEIGHT} at ${where}`, learningRate);
  }
}

export interface Prediction {
  file: string;
  trueIndex: number;
  predictedIndex: number;
  /** Probability of the predicted class. */
  score: number;
  probabilities: Float32Array;
}

/** Runs the head over a set in chunks; all rows when batchSize is -1, else a random sample. */
export function predictSet(head: Head, set: LabeledSet, size: number, batchSize: number, seed: number): { metrics: Metrics; predictions: Prediction[] } {
  const { x, y, idx } = batchOf(set, size, drawRows(set.y.length, batchSize, makeRng(seed, 'test')));
  const metrics = measure(head, x, y);
  const probs = head.probabilities(x);
  const flat = probs.dataSync() as Float32Array;
  tf.dispose([x, y, probs]);
  const c = head.classCount;
  const predictions: Prediction[] = [];
  idx.forEach((row, i) => {
    const p = flat.slice(i * c, (i + 1) * c);
    let best = 0;
    for (let k = 1; k < c; k++) if (p[k]! > p[best]!) best = k;
    predictions.push({ file: set.files[row]!, trueIndex: set.y[row]!, predictedIndex: best, score: p[best]!, probabilities: p });
  });
  return { metrics, predictions };
}
