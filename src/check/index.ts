/**
 * The `check` stage: looks for problems in the photos themselves, from the cached
 * bottlenecks, before any training: exact and near duplicates (and the ones that leak
 * between training/validation/testing), likely mislabels, outliers. It only reports:
 * the user decides, and a later run skips files with --exclude_list.
 */
import path from 'node:path';
import type { Bottlenecks } from '../bottleneck/index.js';
import { allImages, type ImageLists, type ImageRef } from '../dataset/index.js';
import type { Logger } from '../log.js';
import { exactDuplicates, PIXEL_CANDIDATE_COSINE, type ExactGroup } from './duplicates.js';
import { blend, KNN_K, labelIssues, MIN_CLASS_PHOTOS, neighbourVote, outOfFoldProbabilities } from './mislabel.js';
import { DisjointSets, nearestNeighbours, normalizeRows, similarPairs, type SimilarPair } from './near.js';
import { centroidScores, findOutliers } from './outliers.js';
import { FINDING_KINDS, type DatasetCheckFlags, type DatasetCheckSummary, type Finding, type FindingImage, type FindingKind } from './types.js';

export type { DatasetCheckFlags, DatasetCheckSummary, Finding, FindingImage, FindingKind } from './types.js';
export { defaultCheckFlags } from './types.js';
export { checkCsv, CSV_COLUMNS } from './csv.js';

export interface CheckOptions extends DatasetCheckFlags {
  seed: number;
  /** Where the report stage is to write the CSV (recorded in the summary); none when unset. */
  csv?: string;
  signal?: AbortSignal;
  log: Logger;
}

/** What the check step reads of the run's options (the flags of the same names). */
export interface CheckStepOptions {
  nearDuplicateThreshold: number;
  checkFolds: number;
  checkTrainingSteps: number;
  outlierZ: number;
  seed: number;
  signal?: AbortSignal;
}

/**
 * Step "check the photos" (--check_dataset, on by default before training): exact
 * and near duplicates, leaks between splits, likely mislabels and outliers, from the
 * cached bottlenecks. The CSV goes to `csv` with the report.
 */
export async function checkPhotos(lists: ImageLists, bottlenecks: Bottlenecks, o: CheckStepOptions, csv: string, log: Logger): Promise<DatasetCheckSummary> {
  const { nearDuplicateThreshold, outlierZ, seed, signal } = o;
  return checkDataset(lists, bottlenecks, { nearDuplicateThreshold, folds: o.checkFolds, steps: o.checkTrainingSteps, outlierZ, seed, csv, signal, log });
}

/** Items named per kind in the log line. */
const LOG_TOP = 3;

interface Rows {
  refs: ImageRef[];
  images: FindingImage[];
  /** Unit bottlenecks, row-major. */
  unit: Float32Array;
  y: Int32Array;
  dim: number;
}

/** The images that have a bottleneck, their finding descriptions and their unit vectors. */
function checkRows(lists: ImageLists, bottlenecks: Bottlenecks): Rows {
  const refs = allImages(lists).filter((r) => bottlenecks.values.has(r.file));
  const dim = bottlenecks.size;
  const unit = new Float32Array(refs.length * dim);
  refs.forEach((r, i) => unit.set(bottlenecks.values.get(r.file)!, i * dim));
  const images = refs.map((r) => ({
    file: path.join(lists.classes[r.classIndex]!.dir, r.name),
    label: lists.classes[r.classIndex]!.label,
    split: r.category,
  }));
  return { refs, images, unit: normalizeRows(unit, refs.length, dim), y: Int32Array.from(refs, (r) => r.classIndex), dim };
}

function finding(kind: FindingKind, rows: Rows, members: number[], score: number, extra: Partial<Finding> = {}): Finding {
  const images = members.map((m) => rows.images[m]!);
  const distinct = (k: 'label' | 'split') => new Set(images.map((i) => i[k])).size > 1;
  return { kind, id: 0, images, score, ...extra, cross_class: distinct('label'), leak: distinct('split') };
}

/** Problems first (leaks, conflicting labels), then the closest. */
const byConcern = (a: Finding, b: Finding) => Number(b.leak || b.cross_class) - Number(a.leak || a.cross_class) || b.score - a.score;

function nearGroups(rows: Rows, pairs: SimilarPair[], threshold: number, exact: ExactGroup[]): Finding[] {
  const sets = new DisjointSets(rows.images.length);
  const near = pairs.filter((p) => p.cosine >= threshold);
  for (const p of near) sets.union(p.a, p.b);
  const exactOf = new Map<number, number>();
  exact.forEach((g, k) => g.members.forEach((m) => exactOf.set(m, k)));
  const minCos = new Map<number, number>();
  for (const p of near) {
    const r = sets.find(p.a);
    minCos.set(r, Math.min(minCos.get(r) ?? 1, p.cosine));
  }
  // A group that is one exact-duplicate group is already reported as such.
  const groups = sets.groups().filter((g) => !g.every((m) => exactOf.has(m) && exactOf.get(m) === exactOf.get(g[0]!)));
  return groups.map((g) => finding('near_duplicate', rows, g, minCos.get(sets.find(g[0]!))!)).sort(byConcern);
}

async function mislabels(rows: Rows, bottlenecks: Bottlenecks, labels: string[], exact: ExactGroup[], o: CheckOptions): Promise<Finding[]> {
  const classCount = labels.length;
  const n = rows.y.length;
  const counts = new Array<number>(classCount).fill(0);
  for (const k of rows.y) counts[k]!++;
  const few = labels.filter((_, k) => counts[k]! < MIN_CLASS_PHOTOS);
  for (const label of few) {
    o.log.info(`Mislabel check: class "${label}" has only ${counts[labels.indexOf(label)]} photos: too few to judge its labels (at least ${MIN_CLASS_PHOTOS} needed)`);
  }
  if (n === 0 || few.length === classCount) return [];
  // The heads see the bottlenecks as training does: unnormalized.
  const folds = Math.max(2, Math.min(o.folds, Math.min(...counts.filter((v) => v >= MIN_CLASS_PHOTOS))));
  const { probs, c } = await outOfFoldProbabilities((i) => bottlenecks.values.get(rows.refs[i]!.file)!, rows.y, classCount, rows.dim, { folds, steps: o.steps, seed: o.seed, signal: o.signal });
  o.log.info(`Mislabel check: out-of-fold L2 heads (${folds} folds, C = ${c.c}): accuracy ${(c.accuracy * 100).toFixed(1)}% (N=${c.n})`);
  // An exact copy of a photo would vote for its label: copies do not vote for each other.
  const group = new Int32Array(n).fill(-1);
  exact.forEach((g, k) => g.members.forEach((m) => (group[m] = k)));
  const k = Math.min(KNN_K, n - 1);
  const neighbours = await nearestNeighbours(rows.unit, n, rows.dim, k, { seed: o.seed, group, signal: o.signal });
  const evidence = blend(probs, neighbourVote(neighbours, k, rows.y, classCount));
  const issues = labelIssues(evidence, rows.y, classCount, (g) => counts[g]! >= MIN_CLASS_PHOTOS);
  return issues.map((i) => finding('mislabel', rows, [i.row], i.own, { suggested_label: labels[i.suggested]! }));
}

function summarize(findings: Finding[]): DatasetCheckSummary['counts'] {
  const counts = Object.fromEntries(FINDING_KINDS.map((k) => [k, findings.filter((f) => f.kind === k).length])) as DatasetCheckSummary['counts'];
  counts.leaks = findings.filter((f) => f.leak).length;
  counts.cross_class = findings.filter((f) => f.cross_class).length;
  return counts;
}

const KIND_NAMES: Record<FindingKind, string> = {
  exact_duplicate: 'exact duplicate groups',
  near_duplicate: 'near duplicate groups',
  mislabel: 'likely mislabels',
  outlier: 'outliers',
};

function describe(f: Finding): string {
  const files = f.images.map((i) => `${i.file} (${i.split})`).join(' = ');
  const marks = [f.leak ? 'LEAK' : '', f.cross_class ? 'conflicting labels' : '', f.suggested_label ? `looks like "${f.suggested_label}"` : ''].filter(Boolean);
  return `${files} [${[...marks, `score ${f.score.toFixed(3)}`].join(', ')}]`;
}

function logFindings(findings: Finding[], log: Logger): void {
  for (const kind of FINDING_KINDS) {
    const of = findings.filter((f) => f.kind === kind);
    const leaks = of.filter((f) => f.leak).length;
    const cross = of.filter((f) => f.cross_class).length;
    const marks = kind.endsWith('duplicate') ? ` (${leaks} leak between splits, ${cross} with conflicting labels)` : '';
    const top = of.slice(0, LOG_TOP).map(describe).join('; ');
    log.info(`Dataset check: ${of.length} ${KIND_NAMES[kind]}${marks}${top ? `: ${top}${of.length > LOG_TOP ? '; ...' : ''}` : ''}`);
  }
}

/**
 * The check as one step of a run: findings in the summary's shape, and logged. It writes
 * nothing: the CSV goes with the report, so a run that fails leaves no output behind.
 */
export async function checkDataset(lists: ImageLists, bottlenecks: Bottlenecks, o: CheckOptions): Promise<DatasetCheckSummary> {
  const rows = checkRows(lists, bottlenecks);
  const labels = lists.classes.map((c) => c.label);
  const n = rows.images.length;
  const pairs = await similarPairs(rows.unit, n, rows.dim, Math.min(o.nearDuplicateThreshold, PIXEL_CANDIDATE_COSINE), { seed: o.seed, signal: o.signal });
  const files = rows.refs.map((r) => r.file);
  // Every image with a bottleneck has the stamp it was checked with.
  const hashes = files.map((f) => Buffer.from(bottlenecks.stamps.get(f)!.contentHash).toString('hex'));
  const exact = await exactDuplicates(files, hashes, pairs);
  const scores = centroidScores(rows.unit, rows.y, labels.length, rows.dim);
  const findings = [
    ...exact.map((g) => finding('exact_duplicate', rows, g.members, 1, { match: g.match })).sort(byConcern),
    ...nearGroups(rows, pairs, o.nearDuplicateThreshold, exact),
    ...(await mislabels(rows, bottlenecks, labels, exact, o)),
    ...findOutliers(scores, o.outlierZ).map((out) => finding('outlier', rows, [out.row], out.score)),
  ];
  for (const kind of FINDING_KINDS) findings.filter((f) => f.kind === kind).forEach((f, i) => (f.id = i + 1));
  logFindings(findings, o.log);
  return { image_dir: lists.imageDir, images: n, near_duplicate_threshold: o.nearDuplicateThreshold, folds: o.folds, counts: summarize(findings), findings, csv: o.csv ?? null };
}
