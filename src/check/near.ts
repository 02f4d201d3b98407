/**
 * Near duplicates: pairs of images whose bottlenecks point the same way. The
 * cosine matrix is never held whole: rows are compared block by block with one
 * matrix product each, so memory is the unit vectors plus one block of products.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import { throwIfInterrupted, yieldToEventLoop } from '../util/abort.js';

export interface SimilarPair {
  a: number;
  b: number;
  cosine: number;
}

/** Above this many pairs the threshold is too low to mean "duplicate". */
export const MAX_PAIRS = 1_000_000;

/** Rows of `x` (n x dim, row-major) scaled to length 1, in place; all-zero rows stay zero. */
export function normalizeRows(x: Float32Array, n: number, dim: number): Float32Array {
  for (let i = 0; i < n; i++) {
    const row = x.subarray(i * dim, (i + 1) * dim);
    let s = 0;
    for (let k = 0; k < dim; k++) s += row[k]! * row[k]!;
    if (s > 0) {
      const inv = 1 / Math.sqrt(s);
      for (let k = 0; k < dim; k++) row[k]! *= inv;
    }
  }
  return x;
}

export interface PairSearchOptions {
  /**
   * Compare seeded random projections of this many dimensions first (0: the full
   * bottleneck), then confirm each candidate pair on the full vectors: at 1280 values
   * a full comparison of 3,670 images costs ~17 GFLOP, ten times what the check may take.
   */
  reducedDims?: number;
  seed?: number;
  /** Rows per block; a block of products is blockRows x blockColumns floats. */
  blockRows?: number;
  blockColumns?: number;
  signal?: AbortSignal;
}

export const DEFAULT_REDUCED_DIMS = 128;

/**
 * How far below the threshold a projected cosine may fall for a true pair: five standard
 * deviations of a Gaussian projection's cosine, (1 - c^2) / sqrt(m) at c = the threshold.
 */
export function projectionMargin(threshold: number, dims: number): number {
  return (5 * (1 - threshold * threshold)) / Math.sqrt(dims);
}

/** Unit rows of x·R, R a seeded Gaussian dim x dims matrix (Johnson–Lindenstrauss). */
export function randomProjection(unit: Float32Array, n: number, dim: number, dims: number, seed: number): Float32Array {
  const r = tf.randomNormal<tf.Rank.R2>([dim, dims], 0, 1, 'float32', seed + 1);
  const x = new Float32Array(n * dims);
  // Chunk by chunk, so that the backend never holds a second copy of all the bottlenecks.
  const chunk = 8192;
  for (let i = 0; i < n; i += chunk) {
    const h = Math.min(chunk, n - i);
    const part = tf.tidy(() => tf.matMul(tf.tensor2d(unit.subarray(i * dim, (i + h) * dim), [h, dim]), r));
    x.set(part.dataSync() as Float32Array, i * dims);
    part.dispose();
  }
  r.dispose();
  return normalizeRows(x, n, dims);
}

/** One block of cosines: rows i..i+h against columns j..j+w, row-major in `v`. */
interface ProductBlock {
  i: number;
  h: number;
  j: number;
  w: number;
  v: Float32Array;
}

/**
 * The products of row blocks of `x` (n x dim) with column blocks of its transpose;
 * `firstColumn(i)` lets a caller skip the lower triangle. After each row block it
 * yields to the event loop and stops once `signal` is aborted (Ctrl-C).
 */
async function* productBlocks(x: Float32Array, n: number, dim: number, rows: number, cols: number, firstColumn: (i: number) => number, signal?: AbortSignal): AsyncGenerator<ProductBlock> {
  const all = tf.tensor2d(x, [n, dim]);
  // Transposed once: on wasm a product with transposeB is several times slower (measured 0.8 s against 0.1 s at 600 x 1280).
  const allT = tf.transpose(all);
  try {
    for (let i = 0; i < n; i += rows) {
      const h = Math.min(rows, n - i);
      const a = all.slice([i, 0], [h, dim]);
      try {
        for (let j = firstColumn(i); j < n; j += cols) {
          const w = Math.min(cols, n - j);
          const s = tf.tidy(() => tf.matMul(a, allT.slice([0, j], [dim, w])));
          const v = (await s.data()) as Float32Array;
          s.dispose();
          yield { i, h, j, w, v };
        }
      } finally {
        a.dispose();
      }
      await yieldToEventLoop();
      throwIfInterrupted(signal, 'interrupted during the dataset check: nothing was trained');
    }
  } finally {
    tf.dispose([all, allT]);
  }
}

/** Every pair i < j of unit rows with cosine >= threshold, block by block. */
async function blockSearch(unit: Float32Array, n: number, dim: number, threshold: number, opts: PairSearchOptions): Promise<SimilarPair[]> {
  const pairs: SimilarPair[] = [];
  // Only columns from the row block on: the upper triangle.
  for await (const { i, h, j, w, v } of productBlocks(unit, n, dim, opts.blockRows ?? 2048, opts.blockColumns ?? 2048, (i) => i, opts.signal)) {
    for (let r = 0; r < h; r++) {
      const base = r * w;
      for (let c = Math.max(0, i + r + 1 - j); c < w; c++) {
        const cos = v[base + c]!;
        if (cos >= threshold) pairs.push({ a: i + r, b: j + c, cosine: Math.min(1, cos) });
      }
    }
    if (pairs.length > MAX_PAIRS) {
      throw new UsageError(`--near_duplicate_threshold ${threshold} links over ${MAX_PAIRS} pairs of images: raise it (near duplicates are above 0.9)`);
    }
  }
  return pairs;
}

function dot(unit: Float32Array, dim: number, a: number, b: number): number {
  let s = 0;
  for (let k = 0, i = a * dim, j = b * dim; k < dim; k++) s += unit[i + k]! * unit[j + k]!;
  return s;
}

/** Every pair i < j of unit rows (n x dim) with cosine >= threshold; memory O(n·dim + block²). */
export async function similarPairs(unit: Float32Array, n: number, dim: number, threshold: number, opts: PairSearchOptions = {}): Promise<SimilarPair[]> {
  const dims = opts.reducedDims ?? DEFAULT_REDUCED_DIMS;
  if (dims <= 0 || dims >= dim) return blockSearch(unit, n, dim, threshold, opts);
  const projected = randomProjection(unit, n, dim, dims, opts.seed ?? 0);
  const candidates = await blockSearch(projected, n, dims, threshold - projectionMargin(threshold, dims), opts);
  return candidates
    .map((p) => ({ a: p.a, b: p.b, cosine: Math.min(1, dot(unit, dim, p.a, p.b)) }))
    .filter((p) => p.cosine >= threshold);
}

/** Union-find over n items with path halving. */
export class DisjointSets {
  private readonly parent: Int32Array;
  constructor(n: number) {
    this.parent = Int32Array.from({ length: n }, (_, i) => i);
  }
  find(i: number): number {
    const p = this.parent;
    while (p[i] !== i) {
      p[i] = p[p[i]!]!;
      i = p[i]!;
    }
    return i;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    // The smaller index roots the set, so groups come out in a stable order.
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
  /** Sets of more than one item, each sorted, ordered by their first item. */
  groups(): number[][] {
    const by = new Map<number, number[]>();
    for (let i = 0; i < this.parent.length; i++) {
      const r = this.find(i);
      const g = by.get(r);
      if (g) g.push(i);
      else by.set(r, [i]);
    }
    return [...by.values()].filter((g) => g.length > 1).sort((x, y) => x[0]! - y[0]!);
  }
}

export interface NeighbourOptions {
  /** Shortlist on seeded random projections of this many dimensions when n exceeds EXACT_NEIGHBOURS_UP_TO, then re-rank on the full vectors. */
  reducedDims?: number;
  seed?: number;
  /** Rows that may not be each other's neighbours besides a row and itself: the same non-negative group (exact duplicates). */
  group?: Int32Array;
  /** Up to this many rows, no shortlist (EXACT_NEIGHBOURS_UP_TO unless given). */
  exactUpTo?: number;
  blockRows?: number;
  signal?: AbortSignal;
}

/** Up to this many rows every cosine is computed on the full vectors (600 photos: under a second). */
export const EXACT_NEIGHBOURS_UP_TO = 2000;
export const NEIGHBOUR_REDUCED_DIMS = 256;
/** Candidates kept per neighbour wanted when shortlisting on projections. */
const SHORTLIST = 5;

/**
 * The k nearest other rows of each unit row by cosine, closest first: n x k indices,
 * -1 where a row has fewer than k others. A row is never its own neighbour, nor one in
 * its group. Block by block, so memory is the rows plus one block of products.
 */
export async function nearestNeighbours(unit: Float32Array, n: number, dim: number, k: number, opts: NeighbourOptions = {}): Promise<Int32Array> {
  const out = new Int32Array(n * Math.max(k, 0)).fill(-1);
  if (k <= 0 || n < 2) return out;
  const dims = opts.reducedDims ?? NEIGHBOUR_REDUCED_DIMS;
  const shortlist = n > (opts.exactUpTo ?? EXACT_NEIGHBOURS_UP_TO) && dims > 0 && dims < dim;
  const search = shortlist ? randomProjection(unit, n, dim, dims, opts.seed ?? 0) : unit;
  const sdim = shortlist ? dims : dim;
  const m = shortlist ? SHORTLIST * k : k;
  const group = opts.group;
  const candIdx = new Int32Array(m);
  const candCos = new Float32Array(m);
  // Every column at once: a row's candidates come from one block of products.
  for await (const { i, h, v } of productBlocks(search, n, sdim, opts.blockRows ?? 256, n, () => 0, opts.signal)) {
    for (let r = 0; r < h; r++) {
      const row = i + r;
      const g = group ? group[row]! : -1;
      // Insertion into the m best so far, closest first.
      let filled = 0;
      for (let j = 0; j < n; j++) {
        if (j === row || (g >= 0 && group![j] === g)) continue;
        const c = v[r * n + j]!;
        if (filled === m && c <= candCos[m - 1]!) continue;
        let p = filled < m ? filled++ : m - 1;
        while (p > 0 && candCos[p - 1]! < c) {
          candCos[p] = candCos[p - 1]!;
          candIdx[p] = candIdx[p - 1]!;
          p--;
        }
        candCos[p] = c;
        candIdx[p] = j;
      }
      let best = Array.from(candIdx.subarray(0, filled));
      if (shortlist) best = best.map((j) => ({ j, c: dot(unit, dim, row, j) })).sort((a, b) => b.c - a.c || a.j - b.j).map((e) => e.j);
      out.set(best.slice(0, k), row * k);
    }
  }
  return out;
}
