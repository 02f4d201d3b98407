/**
 * Outliers: images far from every class. Each image's score is its best cosine to a
 * class centroid (its own class's centroid taken without it); an image is an outlier
 * when that score is unusually low for this set, by a robust z-score
 * (median and MAD, so the outliers themselves do not move the bar).
 */

export interface Outlier {
  row: number;
  /** Best cosine to any class centroid. */
  score: number;
  /** How many robust standard deviations below the median it lies. */
  z: number;
}

/** Best cosine of each unit row to a class centroid, its own class left without it. */
export function centroidScores(unit: Float32Array, y: Int32Array, classCount: number, dim: number): Float32Array {
  const sums = new Float64Array(classCount * dim);
  y.forEach((k, i) => {
    for (let d = 0; d < dim; d++) sums[k * dim + d]! += unit[i * dim + d]!;
  });
  const norm2 = Array.from({ length: classCount }, (_, k) => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += sums[k * dim + d]! ** 2;
    return s;
  });
  const scores = new Float32Array(y.length);
  y.forEach((own, i) => {
    let best = -1;
    for (let k = 0; k < classCount; k++) {
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += unit[i * dim + d]! * sums[k * dim + d]!;
      let n2 = norm2[k]!;
      if (k === own) {
        // |s - x|^2 = |s|^2 - 2 x.s + |x|^2, with |x| = 1.
        n2 = n2 - 2 * dot + 1;
        dot -= 1;
      }
      if (n2 > 1e-9) best = Math.max(best, dot / Math.sqrt(n2));
    }
    scores[i] = best;
  });
  return scores;
}

const median = (xs: Float32Array | number[]) => {
  const s = Float64Array.from(xs).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Rows whose score lies more than `z` robust standard deviations (1.4826 MAD) below
 * the median, lowest first. `minSpread` keeps a very uniform set (MAD near 0) from
 * turning tiny differences into outliers.
 */
export function findOutliers(scores: Float32Array, z: number, minSpread = 0.02): Outlier[] {
  if (scores.length < 3) return [];
  const med = median(scores);
  const spread = Math.max(1.4826 * median(Array.from(scores, (s) => Math.abs(s - med))), minSpread);
  const out: Outlier[] = [];
  scores.forEach((s, row) => {
    const zs = (med - s) / spread;
    if (zs > z) out.push({ row, score: s, z: zs });
  });
  return out.sort((a, b) => a.score - b.score || a.row - b.row);
}
