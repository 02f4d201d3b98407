/**
 * Likely mislabels, flagged only on strong evidence: every photo gets class
 * probabilities from two views that never saw its label, the out-of-fold L2 head
 * (train/l2.ts) and a vote of its nearest neighbours among the other photos; their
 * blend is the evidence, and a photo is flagged when it gives the photo's own label at
 * most MAX_OWN (docs/design.md, "The mislabel check").
 */
import type { LabeledSet } from '../train/index.js';
import { C_GRID, kFoldPath, lowestCrossEntropy, type CCandidate } from '../train/l2.js';
import { throwIfInterrupted } from '../util/abort.js';

export { assignFolds } from '../train/l2.js';

export interface OutOfFoldOptions {
  folds: number;
  /** L-BFGS iterations of each fold's head, at each C (warm-started along the grid). */
  steps: number;
  seed: number;
  /** The C values tried on the first fold (CHECK_C_GRID unless given). */
  grid?: number[];
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
 * photos have the lowest cross entropy (the evidence is a probability, so calibration
 * matters more than accuracy); the whole grid on every fold cost 5x the old check.
 */
export async function outOfFoldProbabilities(x: RowReader, y: Int32Array, classCount: number, dim: number, o: OutOfFoldOptions): Promise<{ probs: Float32Array; c: CCandidate }> {
  const set: LabeledSet = { x: new Float32Array(y.length * dim), y, files: [] };
  for (let i = 0; i < y.length; i++) set.x.set(x(i), i * dim);
  const grid = o.grid ?? CHECK_C_GRID;
  const path = kFoldPath(set, dim, classCount, o.folds, o.seed, false, grid, o.signal, o.steps, true, lowestCrossEntropy);
  throwIfInterrupted(o.signal, 'interrupted during the dataset check: nothing was trained');
  const best = lowestCrossEntropy(path.candidates);
  return { probs: Float32Array.from(path.probs[grid.indexOf(best.c)]!), c: best };
}

/** Neighbours that vote (tuned on damage seeds 1-3 of flowers-dev only, bench/mislabels.ts --tune). */
export const KNN_K = 10;
/** Added to every class's vote count, so one vote short of unanimity is not certainty. */
export const KNN_SMOOTHING = 0;
/** Weight of the L2 head in the blend; the vote has the rest. */
export const L2_WEIGHT = 0.5;
/** A photo is flagged when the blend gives its own label at most this. */
export const MAX_OWN = 0.1;
/** A class with fewer photos than this is not judged: its out-of-fold heads and its neighbours see too few of it. */
export const MIN_CLASS_PHOTOS = 10;

/**
 * Each row's class shares among its neighbours (n x k, -1 for none, from
 * near.ts nearestNeighbours): (votes + smoothing) / (neighbours + smoothing · classes).
 * Out of fold by construction: a row never votes for itself.
 */
export function neighbourVote(neighbours: Int32Array, k: number, y: Int32Array, classCount: number, smoothing = KNN_SMOOTHING): Float32Array {
  const n = y.length;
  const p = new Float32Array(n * classCount);
  for (let i = 0; i < n; i++) {
    const votes = new Float64Array(classCount).fill(smoothing);
    let total = smoothing * classCount;
    for (let j = 0; j < k; j++) {
      const nb = neighbours[i * k + j]!;
      if (nb < 0) continue;
      votes[y[nb]!]! += 1;
      total += 1;
    }
    for (let c = 0; c < classCount; c++) p[i * classCount + c] = total > 0 ? votes[c]! / total : 1 / classCount;
  }
  return p;
}

/** weight · a + (1 - weight) · b, row by row. */
export function blend(a: Float32Array, b: Float32Array, weight = L2_WEIGHT): Float32Array {
  return a.map((v, i) => weight * v + (1 - weight) * b[i]!);
}

export interface LabelIssue {
  row: number;
  /** The likeliest other class. */
  suggested: number;
  /** The evidence's probability of the photo's own label: the lower, the surer the label is wrong. */
  own: number;
}

/**
 * The rows of judged classes whose own label has probability at most `maxOwn`, surest
 * first (lowest p(own), then the row), each with the likeliest other class.
 */
export function labelIssues(probs: Float32Array, y: Int32Array, classCount: number, judged: (k: number) => boolean = () => true, maxOwn = MAX_OWN): LabelIssue[] {
  const issues: LabelIssue[] = [];
  // The probabilities are float32: compare at that precision, so "at most 0.1" holds for float32(0.1).
  const limit = Math.fround(maxOwn);
  y.forEach((g, row) => {
    const own = probs[row * classCount + g]!;
    if (!judged(g) || own > limit) return;
    let suggested = -1;
    for (let k = 0; k < classCount; k++) if (k !== g && (suggested < 0 || probs[row * classCount + k]! > probs[row * classCount + suggested]!)) suggested = k;
    if (suggested >= 0) issues.push({ row, suggested, own });
  });
  return issues.sort((a, b) => a.own - b.own || a.row - b.row);
}
