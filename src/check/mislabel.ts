/**
 * Likely mislabels by confident learning (Northcutt et al.; cleanlab's
 * find_label_issues): out-of-fold probabilities from k heads, each trained on the
 * cached bottlenecks without one fold, then per-class thresholds and the confident joint.
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

/** One row's bottleneck; read per fold so that no second N x size copy is held. */
export type RowReader = (row: number) => Float32Array;

function subset(x: RowReader, y: Int32Array, dim: number, rows: number[]): LabeledSet {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(x(r), i * dim));
  return { x: out, y: Int32Array.from(rows, (r) => y[r]!), files: rows.map(String) };
}

/** N x classCount probabilities, each row from the head that never saw it. */
export async function outOfFoldProbabilities(x: RowReader, y: Int32Array, classCount: number, dim: number, o: OutOfFoldOptions): Promise<Float32Array> {
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

/** Mean p(k) over the images labelled k: cleanlab's per-class thresholds. */
export function classThresholds(probs: Float32Array, y: Int32Array, classCount: number): number[] {
  const sum = new Float64Array(classCount);
  const count = new Float64Array(classCount);
  y.forEach((k, i) => {
    sum[k]! += probs[i * classCount + k]!;
    count[k]! += 1;
  });
  return Array.from(sum, (s, k) => (count[k]! > 0 ? s / count[k]! : 1));
}

/**
 * cleanlab's confident joint, calibrated: entry [given][true] estimates how many images
 * labelled `given` belong to `true`. An image counts for the class whose probability is
 * at or above that class's threshold (the likeliest such class); rows are rescaled to
 * the number of images with that label.
 */
export function confidentJoint(probs: Float32Array, y: Int32Array, classCount: number): number[][] {
  const t = classThresholds(probs, y, classCount);
  const joint = Array.from({ length: classCount }, () => new Array<number>(classCount).fill(0));
  const given = new Array<number>(classCount).fill(0);
  y.forEach((g, i) => {
    given[g]!++;
    let best = -1;
    for (let k = 0; k < classCount; k++) {
      const p = probs[i * classCount + k]!;
      if (p >= t[k]! && (best < 0 || p > probs[i * classCount + best]!)) best = k;
    }
    if (best >= 0) joint[g]![best]!++;
  });
  return joint.map((row, g) => {
    const s = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (s > 0 ? (v * given[g]!) / s : 0));
  });
}

/**
 * cleanlab's default filter (prune_by_noise_rate): for each off-diagonal entry of the
 * calibrated confident joint, the images labelled `given` with the largest margin
 * p(true) - p(given), as many as the entry estimates. Ranked by normalized margin,
 * most negative (surest) first.
 */
export function labelIssues(probs: Float32Array, y: Int32Array, classCount: number): LabelIssue[] {
  const joint = confidentJoint(probs, y, classCount);
  const p = (i: number, k: number) => probs[i * classCount + k]!;
  const picked = new Map<number, number>();
  for (let g = 0; g < classCount; g++) {
    const rows = [...y.keys()].filter((i) => y[i] === g);
    for (let k = 0; k < classCount; k++) {
      const count = Math.round(joint[g]![k]!);
      if (k === g || count === 0) continue;
      const ranked = rows.filter((i) => p(i, k) > p(i, g)).sort((a, b) => p(b, k) - p(b, g) - (p(a, k) - p(a, g)) || a - b);
      for (const i of ranked.slice(0, count)) if (!picked.has(i) || p(i, k) > p(i, picked.get(i)!)) picked.set(i, k);
    }
  }
  const issues = [...picked].map(([row, suggested]) => {
    let other = 0;
    for (let k = 0; k < classCount; k++) if (k !== y[row]) other = Math.max(other, p(row, k));
    return { row, suggested, margin: p(row, y[row]!) - other };
  });
  return issues.sort((a, b) => a.margin - b.margin || a.row - b.row);
}
