/**
 * The L2 head (--head l2 / l2_standardized): the same dense softmax layer as
 * retrain.py's, fitted to convergence by L-BFGS on all cached training bottlenecks at
 * once, minimising scikit-learn's multinomial LogisticRegression objective
 *   C · Σᵢ cross_entropyᵢ + ½‖W‖²   (the biases are not penalised),
 * with C chosen on the validation set, or by k-fold on the training set when the
 * validation set is small. Standardisation (x - mean) / sd is folded into W and b, so
 * the exported final layer takes the raw bottleneck like every other head.
 */
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import type { LabeledSet } from '../bottleneck/sets.js';
import { minimizeLbfgs } from './lbfgs.js';

/** Decades from 1e-3 to 1e2: wide enough for raw and standardised bottlenecks of every module measured. */
export const C_GRID = [1e-3, 1e-2, 1e-1, 1, 10, 100];
/** Below this many validation images, C is chosen by k-fold on the training set instead. */
export const MIN_VALIDATION_FOR_C = 100;
export const C_FOLDS = 3;

export interface L2Values {
  /** [inputs, classCount], row-major, as HeadValues.weights. */
  weights: Float32Array;
  biases: Float32Array;
}

export interface L2FitInfo {
  iterations: number;
  converged: boolean;
}

/** Fold of each row: each class shuffled from the seed and dealt round-robin, so every fold holds every class. */
export function assignFolds(y: Int32Array, classCount: number, folds: number, seed: number, stream = 'check_folds'): Int32Array {
  const rng = seedrandom(`${seed}:${stream}`);
  const fold = new Int32Array(y.length);
  for (let k = 0; k < classCount; k++) {
    const rows = [...y.keys()].filter((i) => y[i] === k);
    for (let i = rows.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [rows[i], rows[j]] = [rows[j]!, rows[i]!];
    }
    rows.forEach((row, i) => (fold[row] = i % folds));
  }
  return fold;
}

/** Per-input mean and standard deviation of the training rows; a constant input keeps sd 1. */
export function standardization(x: Float32Array, n: number, dim: number): { mean: Float64Array; sd: Float64Array } {
  const mean = new Float64Array(dim);
  const sd = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) mean[d]! += x[i * dim + d]!;
  for (let d = 0; d < dim; d++) mean[d]! /= Math.max(1, n);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) {
      const v = x[i * dim + d]! - mean[d]!;
      sd[d]! += v * v;
    }
  }
  for (let d = 0; d < dim; d++) {
    const s = Math.sqrt(sd[d]! / Math.max(1, n));
    sd[d] = s > 1e-12 ? s : 1;
  }
  return { mean, sd };
}

/**
 * softmax(((x - mean) / sd)·W + b) = softmax(x·W' + b') with W' = W / sd (per input row)
 * and b' = b - (mean / sd)·W: one dense layer on the raw bottleneck.
 */
export function foldStandardization(v: L2Values, mean: Float64Array, sd: Float64Array, classCount: number): L2Values {
  const dim = mean.length;
  const weights = new Float32Array(dim * classCount);
  const biases = new Float64Array(v.biases);
  for (let d = 0; d < dim; d++) {
    for (let k = 0; k < classCount; k++) {
      const w = v.weights[d * classCount + k]! / sd[d]!;
      weights[d * classCount + k] = w;
      biases[k]! -= mean[d]! * w;
    }
  }
  return { weights, biases: Float32Array.from(biases) };
}

/** Rows `rows` of a row-major matrix (all when undefined), standardised when given. */
function rowsOf(x: Float32Array, dim: number, rows: ArrayLike<number>, st?: Transform): Float32Array {
  const out = new Float32Array(rows.length * dim);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!st) out.set(x.subarray(r * dim, (r + 1) * dim), i * dim);
    else for (let d = 0; d < dim; d++) out[i * dim + d] = (x[r * dim + d]! - st.mean[d]!) / st.sd[d]!;
  }
  return out;
}

/**
 * The objective divided by C·n (the same minimiser, on the scale of a mean cross
 * entropy): mean CE + ½λ Σ penalty_d ‖W_d‖², λ = 1 / (C·n). Parameters: W class-major
 * [k][d], then b. The two products run on tfjs (4x the plain loops on wasm); the
 * softmax and the loss in float64 here.
 */
function objective(x: tf.Tensor2D, y: Int32Array, dim: number, classCount: number, c: number, penalty?: Float64Array) {
  const n = y.length;
  const lambda = 1 / (c * n);
  const bOff = classCount * dim;
  const w32 = new Float32Array(bOff);
  return (p: Float64Array, g: Float64Array): number => {
    w32.set(p.subarray(0, bOff));
    const logits = tf.tidy(() => tf.matMul(x, tf.tensor2d(w32, [classCount, dim]), false, true).dataSync());
    const r = new Float32Array(n * classCount);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let k = 0; k < classCount; k++) max = Math.max(max, logits[i * classCount + k]! + p[bOff + k]!);
      let sum = 0;
      for (let k = 0; k < classCount; k++) sum += Math.exp(logits[i * classCount + k]! + p[bOff + k]! - max);
      const t = y[i]!;
      loss += Math.log(sum) + max - (logits[i * classCount + t]! + p[bOff + t]!);
      for (let k = 0; k < classCount; k++) r[i * classCount + k] = (Math.exp(logits[i * classCount + k]! + p[bOff + k]! - max) / sum - (k === t ? 1 : 0)) / n;
    }
    const gw = tf.tidy(() => tf.matMul(tf.tensor2d(r, [n, classCount]), x, true, false).dataSync());
    let pen = 0;
    for (let j = 0; j < bOff; j++) {
      const q = penalty ? penalty[j % dim]! : 1;
      pen += q * p[j]! * p[j]!;
      g[j] = gw[j]! + lambda * q * p[j]!;
    }
    for (let k = 0; k < classCount; k++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += r[i * classCount + k]!;
      g[bOff + k] = s;
    }
    return loss / n + 0.5 * lambda * pen;
  };
}

/** Class-major parameters (as the objective takes them) to HeadValues' layout. */
function toValues(p: Float64Array, dim: number, classCount: number): L2Values {
  const weights = new Float32Array(dim * classCount);
  for (let k = 0; k < classCount; k++) for (let d = 0; d < dim; d++) weights[d * classCount + k] = p[k * dim + d]!;
  return { weights, biases: Float32Array.from(p.subarray(classCount * dim)) };
}

/**
 * The inputs the solver sees: (x - mean) / sd. Raw is sd 1 but still centred: the
 * penalty leaves b free, so centring poses the very same problem (the mean goes into
 * b), and it decouples W from b, which L-BFGS and float32 products need. (Scaling raw
 * inputs by their RMS with a matching per-input penalty also poses the same problem,
 * but measured on flowers-dev it took more iterations, not fewer.)
 */
interface Transform {
  mean: Float64Array;
  sd: Float64Array;
  penalty?: Float64Array;
}

function transformOf(x: Float32Array, n: number, dim: number, standardize: boolean): Transform {
  const st = standardization(x, n, dim);
  return standardize ? st : { mean: st.mean, sd: new Float64Array(dim).fill(1) };
}

/** Tolerances: the C search needs the ranking of C values, the final head the solution. */
const SEARCH = { maxIterations: 100, gradientTolerance: 1e-4 };
const FINAL = { maxIterations: 1000, gradientTolerance: 1e-5 };

/** Fits W, b on rows `rows` of `x` for one C; `init` warm-starts from an earlier fit (the C path). Parameters stay in the transform's space. */
function fitRows(x: tf.Tensor2D, y: Int32Array, dim: number, classCount: number, c: number, t: Transform, tol: typeof FINAL, init?: Float64Array): { p: Float64Array; info: L2FitInfo } {
  const r = minimizeLbfgs(objective(x, y, dim, classCount, c, t.penalty), init ?? new Float64Array(classCount * (dim + 1)), tol);
  return { p: r.x, info: { iterations: r.iterations, converged: r.converged } };
}

/** The dense layer on raw inputs from parameters in the transform's space. */
const rawValues = (p: Float64Array, t: Transform, dim: number, classCount: number): L2Values => foldStandardization(toValues(p, dim, classCount), t.mean, t.sd, classCount);

/** The L2 head for one C on a set, standardisation folded in: what the tests compare with scikit-learn. */
export function fitL2Softmax(set: Pick<LabeledSet, 'x' | 'y'>, dim: number, classCount: number, c: number, standardize: boolean): L2Values & L2FitInfo {
  const n = set.y.length;
  const t = transformOf(set.x, n, dim, standardize);
  const x = tf.tensor2d(rowsOf(set.x, dim, [...Array(n).keys()], t), [n, dim]);
  try {
    const { p, info } = fitRows(x, set.y, dim, classCount, c, t, FINAL);
    return { ...rawValues(p, t, dim, classCount), ...info };
  } finally {
    x.dispose();
  }
}

/** Softmax probabilities of a dense layer in HeadValues' layout, n x classCount. */
export function denseProbabilities(v: L2Values, x: Float32Array, n: number, dim: number, classCount: number): Float64Array {
  const out = new Float64Array(n * classCount);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let k = 0; k < classCount; k++) {
      let s = v.biases[k]!;
      for (let d = 0; d < dim; d++) s += x[i * dim + d]! * v.weights[d * classCount + k]!;
      out[i * classCount + k] = s;
      max = Math.max(max, s);
    }
    let sum = 0;
    for (let k = 0; k < classCount; k++) sum += out[i * classCount + k] = Math.exp(out[i * classCount + k]! - max);
    for (let k = 0; k < classCount; k++) out[i * classCount + k]! /= sum;
  }
  return out;
}

export interface CCandidate {
  c: number;
  accuracy: number;
  cross_entropy: number;
  /** Images scored: the validation set, or every training image once (k-fold). */
  n: number;
}

/** How the head's C was chosen, for the log and --summary_json. */
export interface L2Choice {
  standardized: boolean;
  c: number;
  chosen_by: 'validation' | 'k_fold' | 'flag';
  folds?: number;
  candidates: CCandidate[];
  iterations: number;
  converged: boolean;
}

/** Scores probabilities of rows `rows` against their labels into running sums. */
function score(probs: Float64Array, y: Int32Array, rows: ArrayLike<number>, classCount: number, acc: { right: number; ce: number }): void {
  for (let i = 0; i < rows.length; i++) {
    const t = y[rows[i]!]!;
    let best = 0;
    for (let k = 1; k < classCount; k++) if (probs[i * classCount + k]! > probs[i * classCount + best]!) best = k;
    if (best === t) acc.right++;
    acc.ce -= Math.log(Math.max(probs[i * classCount + t]!, 1e-12));
  }
}

/**
 * Probabilities for the rows of `held` from heads fitted on `fit` along the C grid
 * (warm-started, smallest C first): one n_held x classCount array per C.
 */
function pathProbabilities(
  set: LabeledSet,
  dim: number,
  classCount: number,
  fit: number[],
  held: number[],
  standardize: boolean,
  grid: number[],
  maxIterations = SEARCH.maxIterations,
  start?: Float64Array,
): { probs: Float64Array[]; params: Float64Array[] } {
  const t = transformOf(rowsOf(set.x, dim, fit), fit.length, dim, standardize);
  const x = tf.tensor2d(rowsOf(set.x, dim, fit, t), [fit.length, dim]);
  const y = Int32Array.from(fit, (r) => set.y[r]!);
  const xh = rowsOf(set.x, dim, held);
  const probs: Float64Array[] = [];
  const params: Float64Array[] = [];
  let init = start;
  try {
    for (const c of grid) {
      const { p } = fitRows(x, y, dim, classCount, c, t, { ...SEARCH, maxIterations }, init);
      init = p;
      params.push(p);
      probs.push(denseProbabilities(rawValues(p, t, dim, classCount), xh, held.length, dim, classCount));
    }
  } finally {
    x.dispose();
  }
  return { probs, params };
}

/** The best candidate: highest accuracy, then lowest cross entropy, then the smaller C (the simpler head). */
export function bestCandidate(cands: CCandidate[]): CCandidate {
  return cands.reduce((a, b) => (b.accuracy > a.accuracy || (b.accuracy === a.accuracy && b.cross_entropy < a.cross_entropy) ? b : a));
}

/** The candidate with the lowest held-out cross entropy, then the smaller C: the best-calibrated probabilities, which the dataset check reads. */
export function lowestCrossEntropy(cands: CCandidate[]): CCandidate {
  return cands.reduce((a, b) => (b.cross_entropy < a.cross_entropy ? b : a));
}

/**
 * Out-of-fold probabilities for every row of `set` at every C of the grid (k-fold), and
 * each C's score on them. The dataset check uses the probabilities of the best C.
 */
export function kFoldPath(
  set: LabeledSet,
  dim: number,
  classCount: number,
  folds: number,
  seed: number,
  standardize: boolean,
  grid = C_GRID,
  signal?: AbortSignal,
  maxIterations?: number,
  /** Choose C on the first fold's held-out rows, and fit the other folds at that C only (the dataset check: a third of the fits). */
  chooseOnFirstFold = false,
  choose: (cands: CCandidate[]) => CCandidate = bestCandidate,
): { candidates: CCandidate[]; probs: Float64Array[] } {
  const n = set.y.length;
  const fold = assignFolds(set.y, classCount, folds, seed, 'l2_folds');
  const probs = grid.map(() => new Float64Array(n * classCount));
  const sums = grid.map(() => ({ right: 0, ce: 0 }));
  let scored = 0;
  let cands: CCandidate[] | undefined;
  // The first fold's head at the chosen C starts the other folds' (their data overlap by (k-2)/k).
  let start: Float64Array | undefined;
  for (let f = 0; f < folds; f++) {
    const held = [...fold.keys()].filter((i) => fold[i] === f);
    if (held.length === 0) continue;
    const fit = [...fold.keys()].filter((i) => fold[i] !== f);
    const best = cands ? grid.indexOf(choose(cands).c) : -1;
    const path = pathProbabilities(set, dim, classCount, fit, held, standardize, best >= 0 ? [grid[best]!] : grid, maxIterations, best >= 0 ? start : undefined);
    path.probs.forEach((p, i) => {
      const j = best >= 0 ? best : i;
      if (best < 0) score(p, set.y, held, classCount, sums[j]!);
      held.forEach((r, h) => probs[j]!.set(p.subarray(h * classCount, (h + 1) * classCount), r * classCount));
    });
    if (best < 0) scored += held.length;
    if (chooseOnFirstFold && !cands) {
      cands = grid.map((c, j) => ({ c, accuracy: sums[j]!.right / scored, cross_entropy: sums[j]!.ce / scored, n: scored }));
      start = path.params[grid.indexOf(choose(cands).c)];
    }
    signal?.throwIfAborted();
  }
  return { candidates: cands ?? grid.map((c, j) => ({ c, accuracy: sums[j]!.right / n, cross_entropy: sums[j]!.ce / n, n })), probs };
}

/**
 * The L2 head of a run: C from --head_c, else chosen on the validation set (when it has
 * at least MIN_VALIDATION_FOR_C images), else by C_FOLDS-fold on the training set; then
 * fitted on the training set. Deterministic: the folds come from the seed.
 */
export function trainL2Head(training: LabeledSet, validation: LabeledSet, dim: number, classCount: number, o: { standardize: boolean; c?: number; seed: number; signal?: AbortSignal }): { values: L2Values; choice: L2Choice } {
  let chosen_by: L2Choice['chosen_by'];
  let candidates: CCandidate[] = [];
  let c: number;
  const all = [...training.y.keys()];
  if (o.c !== undefined) {
    chosen_by = 'flag';
    c = o.c;
  } else if (validation.y.length >= MIN_VALIDATION_FOR_C) {
    chosen_by = 'validation';
    // Fit on training, score on validation: one set of rows as both (held rows appended).
    const joined: LabeledSet = { x: concat(training.x, validation.x), y: Int32Array.from([...training.y, ...validation.y]), files: [] };
    const held = [...validation.y.keys()].map((i) => i + training.y.length);
    const path = pathProbabilities(joined, dim, classCount, all, held, o.standardize, C_GRID);
    candidates = C_GRID.map((cc, j) => {
      const s = { right: 0, ce: 0 };
      score(path.probs[j]!, joined.y, held, classCount, s);
      return { c: cc, accuracy: s.right / held.length, cross_entropy: s.ce / held.length, n: held.length };
    });
    c = bestCandidate(candidates).c;
  } else {
    chosen_by = 'k_fold';
    const folds = Math.max(2, Math.min(C_FOLDS, smallestClass(training.y, classCount)));
    candidates = kFoldPath(training, dim, classCount, folds, o.seed, o.standardize, C_GRID, o.signal).candidates;
    c = bestCandidate(candidates).c;
    o.signal?.throwIfAborted();
    const fit = fitL2Softmax(training, dim, classCount, c, o.standardize);
    return { values: fit, choice: { standardized: o.standardize, c, chosen_by, folds, candidates, iterations: fit.iterations, converged: fit.converged } };
  }
  const fit = fitL2Softmax(training, dim, classCount, c, o.standardize);
  return { values: fit, choice: { standardized: o.standardize, c, chosen_by, candidates, iterations: fit.iterations, converged: fit.converged } };
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function smallestClass(y: Int32Array, classCount: number): number {
  const counts = new Array<number>(classCount).fill(0);
  for (const k of y) counts[k]!++;
  return Math.min(...counts.filter((v) => v > 0));
}
