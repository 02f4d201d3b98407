/**
 * Likely mislabels by confident learning (Northcutt et al.; cleanlab's
 * find_label_issues): out-of-fold probabilities from the L2 head (train/l2.ts), its C
 * chosen on those same out-of-fold predictions, then per-class thresholds and the
 * confident joint; a photo is flagged only on strong evidence (strongEvidence below).
 */
import type { LabeledSet } from '../train/index.js';
import { bestCandidate, C_GRID, kFoldPath, type CCandidate } from '../train/l2.js';
import { throwIfInterrupted } from '../util/abort.js';

export { assignFolds } from '../train/l2.js';

export interface OutOfFoldOptions {
  folds: number;
  /** L-BFGS iterations of each fold's head, at each C (warm-started along the grid). */
  steps: number;
  seed: number;
  signal?: AbortSignal;
}

/**
 * The check's C values: the run's grid without its two weakest penalties, which the
 * check's out-of-fold heads never chose (flowers-dev 0.01, fixtures 0.1) and which cost
 * the most iterations.
 */
export const CHECK_C_GRID = C_GRID.filter((c) => c <= 1);

/** One row's bottleneck; read once into the matrix the folds share. */
export type RowReader = (row: number) => Float32Array;

/**
 * N x classCount probabilities, each row from the head that never saw it: the L2 head
 * on raw bottlenecks, k-fold, at the C whose predictions on the first fold's held-out
 * photos score best (the whole grid on every fold cost 5x the old check).
 */
export async function outOfFoldProbabilities(x: RowReader, y: Int32Array, classCount: number, dim: number, o: OutOfFoldOptions): Promise<{ probs: Float32Array; c: CCandidate }> {
  const set: LabeledSet = { x: new Float32Array(y.length * dim), y, files: [] };
  for (let i = 0; i < y.length; i++) set.x.set(x(i), i * dim);
  const path = kFoldPath(set, dim, classCount, o.folds, o.seed, false, CHECK_C_GRID, o.signal, o.steps, true);
  throwIfInterrupted(o.signal, 'interrupted during the dataset check: nothing was trained');
  const best = bestCandidate(path.candidates);
  return { probs: Float32Array.from(path.probs[path.candidates.indexOf(best)]!), c: best };
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

/**
 * Strong evidence: the head that never saw the photo gives its own label at most
 * MAX_GIVEN and the suggested class at least MIN_SUGGESTED. The L2 head's probabilities
 * are fairly calibrated (its C is chosen on held-out photos), so this keeps the confident
 * joint's clear picks, not the borderline ones every real set has (docs/benchmarks.md).
 */
export const MAX_GIVEN = 0.1;
export const MIN_SUGGESTED = 0.6;
/** A class with fewer photos than this is not judged: its out-of-fold heads see too few of it. */
export const MIN_CLASS_PHOTOS = 10;

export function strongEvidence(issues: LabelIssue[], probs: Float32Array, y: Int32Array, classCount: number, judged: (k: number) => boolean): LabelIssue[] {
  return issues.filter((i) => judged(y[i.row]!) && probs[i.row * classCount + y[i.row]!]! <= MAX_GIVEN && probs[i.row * classCount + i.suggested]! >= MIN_SUGGESTED);
}
