/**
 * Likely mislabels by confident learning (Northcutt et al.; cleanlab's
 * find_label_issues): out-of-fold probabilities from k heads, each trained on the
 * cached bottlenecks without one fold, then per-class thresholds.
 */
import seedrandom from 'seedrandom';
import { silentLogger } from '../log.js';
import { predictSet, trainHead, type LabeledSet } from '../train/index.js';
import { throwIfInterrupted } from '../util/abort.js';

export interface OutOfFoldOptions {
  folds: number;
  /** Training steps of each fold's head. */
  steps: number;
  learningRate: number;
  batchSize: number;
  seed: number;
  signal?: AbortSignal;
}

/** Fold of each row: each class is shuffled (from the seed) and dealt round-robin, so every fold holds every class. */
export function assignFolds(y: Int32Array, classCount: number, folds: number, seed: number): Int32Array {
  const rng = seedrandom(`${seed}:check_folds`);
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

function subset(x: Float32Array, y: Int32Array, dim: number, rows: number[]): LabeledSet {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(x.subarray(r * dim, (r + 1) * dim), i * dim));
  return { x: out, y: Int32Array.from(rows, (r) => y[r]!), files: rows.map(String) };
}

/** N x classCount probabilities, each row from the head that never saw it. */
export async function outOfFoldProbabilities(x: Float32Array, y: Int32Array, classCount: number, dim: number, o: OutOfFoldOptions): Promise<Float32Array> {
  const fold = assignFolds(y, classCount, o.folds, o.seed);
  const probs = new Float32Array(y.length * classCount);
  const empty: LabeledSet = { x: new Float32Array(0), y: new Int32Array(0), files: [] };
  for (let f = 0; f < o.folds; f++) {
    const held = [...fold.keys()].filter((i) => fold[i] === f);
    if (held.length === 0) continue;
    const train = subset(x, y, dim, [...fold.keys()].filter((i) => fold[i] !== f));
    const { head } = await trainHead(train, empty, classCount, dim, {
      steps: o.steps,
      learningRate: o.learningRate,
      trainBatchSize: o.batchSize,
      validationBatchSize: -1,
      evalStepInterval: o.steps,
      seed: o.seed + f,
      log: silentLogger,
    });
    const { predictions } = predictSet(head, subset(x, y, dim, held), dim, -1, o.seed);
    head.dispose();
    predictions.forEach((p, i) => probs.set(p.probabilities, held[i]! * classCount));
    throwIfInterrupted(o.signal, 'interrupted during the dataset check: nothing was trained');
  }
  return probs;
}

export interface LabelIssue {
  row: number;
  suggested: number;
  /** p(given) - max p(other): cleanlab's normalized margin; the lower, the surer the label is wrong. */
  margin: number;
}

/**
 * cleanlab's confident joint: class k's threshold is the mean p(k) over the images
 * labelled k. An image is an issue when its own label is below its threshold while
 * another class is at or above its own; ranked by margin, most negative first.
 */
export function labelIssues(probs: Float32Array, y: Int32Array, classCount: number): LabelIssue[] {
  const sum = new Float64Array(classCount);
  const count = new Float64Array(classCount);
  y.forEach((k, i) => {
    sum[k]! += probs[i * classCount + k]!;
    count[k]! += 1;
  });
  const threshold = Array.from(sum, (s, k) => (count[k]! > 0 ? s / count[k]! : 1));
  const issues: LabelIssue[] = [];
  y.forEach((given, i) => {
    const p = probs.subarray(i * classCount, (i + 1) * classCount);
    if (p[given]! >= threshold[given]!) return;
    let suggested = -1;
    let bestOther = 0;
    for (let k = 0; k < classCount; k++) {
      if (k === given) continue;
      if (p[k]! >= threshold[k]! && (suggested < 0 || p[k]! > p[suggested]!)) suggested = k;
      bestOther = Math.max(bestOther, p[k]!);
    }
    if (suggested >= 0) issues.push({ row: i, suggested, margin: p[given]! - bestOther });
  });
  return issues.sort((a, b) => a.margin - b.margin || a.row - b.row);
}
