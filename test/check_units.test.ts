/** The dataset check's parts on data built to order: the blocked pair search, the neighbour vote, and a set with no problems. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { stampsOf, type Bottlenecks } from '../src/bottleneck/index.js';
import { checkCsv, checkDataset, defaultCheckFlags } from '../src/check/index.js';
import { blend, labelIssues, MAX_OWN, neighbourVote } from '../src/check/mislabel.js';
import { nearestNeighbours, normalizeRows, similarPairs } from '../src/check/near.js';
import { bestCandidate, lowestCrossEntropy } from '../src/train/l2.js';
import { allImages, createImageLists } from '../src/dataset/index.js';
import { MemoryLogger } from '../src/log.js';
import { makeImageDir, makeLayersModel, REPO_ROOT, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

function gaussian(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

test('similarPairs: block by block, with or without the random projection, finds exactly the pairs at or above the threshold', async () => {
  await useCpuBackend();
  const rng = seedrandom('pairs');
  const n = 1500;
  const dim = 256;
  const x = Float32Array.from({ length: n * dim }, () => gaussian(rng));
  normalizeRows(x, n, dim);
  // Plant pairs around the threshold: row b becomes row a turned by a chosen cosine, away from a's direction.
  const planted = [0.999, 0.97, 0.93, 0.905, 0.895, 0.86];
  planted.forEach((c, k) => {
    const a = x.subarray((37 * k + 5) * dim, (37 * k + 6) * dim);
    const b = x.subarray((n - 1 - 211 * k) * dim, (n - 211 * k) * dim);
    const along = a.reduce((s, v, d) => s + v * b[d]!, 0);
    for (let d = 0; d < dim; d++) b[d] = b[d]! - along * a[d]!;
    normalizeRows(b, 1, dim);
    for (let d = 0; d < dim; d++) b[d] = c * a[d]! + Math.sqrt(1 - c * c) * b[d]!;
  });
  const brute: string[] = [];
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[a * dim + d]! * x[b * dim + d]!;
      if (s >= 0.9) brute.push(`${a}-${b}`);
    }
  }
  assert.equal(brute.length, 4, 'the planted pairs above 0.9, and nothing by chance');
  for (const reducedDims of [0, 64]) {
    const pairs = await similarPairs(x, n, dim, 0.9, { reducedDims, blockRows: 400, blockColumns: 300 });
    assert.deepEqual(pairs.map((p) => `${p.a}-${p.b}`).sort(), [...brute].sort(), `reducedDims ${reducedDims}`);
  }
});

/** Bottlenecks for the files of a generated image folder: one direction per class plus bounded noise (every image equally typical). */
async function syntheticSet(mislabel: boolean, keepOfClass1 = 20) {
  await useCpuBackend();
  const root = tempDir('retrain-check-units-');
  const dir = await makeImageDir(path.join(root, 'images'), { perClass: 20 });
  for (const name of fs.readdirSync(path.join(dir, 'green')).sort().slice(keepOfClass1)) fs.rmSync(path.join(dir, 'green', name));
  const lists = await createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, new MemoryLogger());
  const rng = seedrandom('synthetic');
  const dim = 32;
  const values = new Map<string, Float32Array>();
  const refs = allImages(lists);
  refs.forEach((r, i) => {
    // With problems: the first image of class 1 looks like class 0; the first of class 2 like nothing known.
    const cls = mislabel && i === refs.findIndex((q) => q.classIndex === 1) ? 0 : r.classIndex;
    const odd = mislabel && i === refs.findIndex((q) => q.classIndex === 2);
    const v = Float32Array.from({ length: dim }, () => 0.5 * (rng() - 0.5));
    v[odd ? 20 : cls]! += 1;
    values.set(r.file, v);
  });
  const bottlenecks: Bottlenecks = { size: dim, values, computed: 0, cached: values.size, failed: [], stamps: await stampsOf([...values.keys()]) };
  return { root, lists, bottlenecks, refs };
}

test('a set with no problems: the check reports nothing, its CSV would hold only the header, and it writes no file', async () => {
  const { root, lists, bottlenecks } = await syntheticSet(false);
  const log = new MemoryLogger();
  const csv = path.join(root, 'check.csv');
  const c = await checkDataset(lists, bottlenecks, { ...defaultCheckFlags(), seed: 0, csv, log });
  assert.equal(c.images, 60);
  assert.deepEqual(c.findings, []);
  assert.deepEqual(c.counts, { exact_duplicate: 0, near_duplicate: 0, mislabel: 0, outlier: 0, leaks: 0, cross_class: 0 });
  assert.equal(checkCsv(c.findings), 'kind,id,file,label,split,score,match,suggested_label,cross_class,leak\n');
  // The report stage writes the CSV; the check itself writes nothing.
  assert.equal(c.csv, csv);
  assert.ok(!fs.existsSync(csv));
  const lines = log.lines.filter((l) => l.includes('Dataset check:'));
  assert.deepEqual(lines.map((l) => /Dataset check: (\d+) (exact|near|likely|outliers)/.exec(l)?.slice(1).join(' ')), ['0 exact', '0 near', '0 likely', '0 outliers']);
});

test('the same set with one image of the wrong class and one unlike any class: exactly those two are reported', async () => {
  const { lists, bottlenecks, refs } = await syntheticSet(true);
  const c = await checkDataset(lists, bottlenecks, { ...defaultCheckFlags(), seed: 0, log: new MemoryLogger() });
  const rel = (i: number) => path.join(lists.classes[refs[i]!.classIndex]!.dir, refs[i]!.name);
  const wrong = refs.findIndex((q) => q.classIndex === 1);
  const odd = refs.findIndex((q) => q.classIndex === 2);
  const mislabels = c.findings.filter((f) => f.kind === 'mislabel');
  assert.deepEqual(mislabels.map((f) => [f.images[0]!.file, f.suggested_label]), [[rel(wrong), lists.classes[0]!.label]]);
  assert.deepEqual(c.findings.filter((f) => f.kind === 'outlier').map((f) => f.images[0]!.file), [rel(odd)]);
  assert.equal(c.findings.length, 2);
});

test('a class with too few photos is not judged, and the log says so: its wrong photo is not flagged', async () => {
  const { lists, bottlenecks } = await syntheticSet(true, 6);
  const log = new MemoryLogger();
  const c = await checkDataset(lists, bottlenecks, { ...defaultCheckFlags(), seed: 0, log });
  assert.equal(lists.classes[1]!.label, 'green');
  assert.ok(log.lines.some((l) => l.includes('Mislabel check: class "green" has only 6 photos: too few to judge its labels')), log.lines.join('\n'));
  assert.deepEqual(c.findings.filter((f) => f.kind === 'mislabel'), []);
});

test('the clean sample in fixtures/: at most 3 likely mislabels with the built-in module', () => {
  const root = tempDir('retrain-check-fixtures-');
  const summaryFile = path.join(root, 'summary.json');
  const r = runCli('retrain', [
    '--image_dir', path.join(REPO_ROOT, 'fixtures', 'flower_photos'), '--bottleneck_dir', path.join(root, 'bn'),
    '--report_dir', root, '--summary_json', summaryFile, '--check_dataset',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as { dataset_check: { counts: { mislabel: number } } };
  assert.ok(summary.dataset_check.counts.mislabel <= 3, `${summary.dataset_check.counts.mislabel} flagged: ${r.stderr}`);
});

test('retrain CLI: contradicting or wrong check flags and a missing --exclude_list are usage errors (exit 2, one line)', async () => {
  const root = tempDir('retrain-check-cli-');
  const dir = await makeImageDir(path.join(root, 'images'), { perClass: 4 });
  const cases: Array<[string[], RegExp]> = [
    [['--check_dataset', '--skip_dataset_check'], /--check_dataset and --skip_dataset_check contradict each other/],
    [['--check_dataset', '--bottlenecks_only'], /--check_dataset and --bottlenecks_only both stop the run early/],
    [['--near_duplicate_threshold', '1.5'], /--near_duplicate_threshold 1\.5 must be a cosine similarity/],
    [['--check_folds', '1'], /--check_folds 1 must be a whole number of at least 2/],
    [['--exclude_list', path.join(root, 'nope.txt')], /--exclude_list .*nope\.txt cannot be read \(ENOENT\)/],
  ];
  for (const [flags, message] of cases) {
    const r = runCli('retrain', ['--image_dir', dir, '--tfhub_module', path.join(root, 'no-model'), '--bottleneck_dir', path.join(root, 'bn'), ...flags]);
    assert.equal(r.status, 2, `${flags.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines.at(-1)!, new RegExp(`^retrain: error: ${message.source}`), flags.join(' '));
  }
});

test('a training run checks the photos first (summary, CSV, report section); --skip_dataset_check does not', async () => {
  const root = tempDir('retrain-check-train-');
  const dir = await makeImageDir(path.join(root, 'images'), { perClass: 10 });
  const model = await makeLayersModel(path.join(root, 'model'));
  for (const skip of [false, true]) {
    const out = path.join(root, skip ? 'skipped' : 'checked');
    const r = runCli('retrain', [
      '--image_dir', dir, '--tfhub_module', model, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', path.join(out, 'graph'),
      '--output_labels', path.join(out, 'labels.txt'), '--summary_json', path.join(out, 'summary.json'), '--how_many_training_steps', '5',
      '--check_training_steps', '5', '--backend', 'cpu', ...(skip ? ['--skip_dataset_check'] : []),
    ]);
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as { dataset_check?: { images: number }; timings_s: Record<string, number> };
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    assert.equal(summary.dataset_check?.images, skip ? undefined : 30);
    assert.equal(fs.existsSync(path.join(out, 'dataset_check.csv')), !skip);
    assert.equal(html.includes('<section id="dataset-check">'), !skip);
    assert.equal('dataset_check' in summary.timings_s, !skip);
    assert.equal(/Dataset check: \d+ exact duplicate groups/.test(r.stderr), !skip);
  }
});

/** Unit rows around one random direction per class: `perClass` rows each, noise `spread`. */
function clusters(classes: number, perClass: number, dim: number, spread: number, seed: string): { x: Float32Array; y: Int32Array } {
  const rng = seedrandom(seed);
  const centres = Array.from({ length: classes }, () => Float32Array.from({ length: dim }, () => gaussian(rng)));
  const n = classes * perClass;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let d = 0; d < dim; d++) x[i * dim + d] = centres[y[i]!]![d]! + spread * gaussian(rng);
  }
  return { x: normalizeRows(x, n, dim), y };
}

test('nearestNeighbours: the k closest other rows, closest first, never the row itself nor one of its group; shortlisted on a projection it still finds planted twins', async () => {
  await useCpuBackend();
  const n = 300;
  const dim = 64;
  const k = 5;
  const { x } = clusters(4, n / 4, dim, 1.5, 'neighbours');
  const group = new Int32Array(n).fill(-1);
  group[3] = group[17] = group[250] = 0;
  const brute = (row: number) =>
    [...Array(n).keys()]
      .filter((j) => j !== row && !(group[row]! >= 0 && group[j] === group[row]))
      .map((j) => ({ j, c: x.subarray(row * dim, (row + 1) * dim).reduce((s, v, d) => s + v * x[j * dim + d]!, 0) }))
      .sort((a, b) => b.c - a.c)
      .slice(0, k)
      .map((e) => e.j);
  const exact = await nearestNeighbours(x, n, dim, k, { group, blockRows: 70 });
  for (let row = 0; row < n; row++) assert.deepEqual(Array.from(exact.subarray(row * k, (row + 1) * k)), brute(row), `row ${row}`);
  for (const row of [3, 17, 250]) for (const j of exact.subarray(row * k, (row + 1) * k)) assert.ok(![3, 17, 250].includes(j), `${row} has ${j} of its group`);
  // Shortlisted on 32 projected dimensions, re-ranked on the full vectors: every row finds its planted twin (cosine 0.95) first.
  const twins = Float32Array.from(x);
  for (let i = 0; i < n / 2; i++) {
    const a = twins.subarray(i * dim, (i + 1) * dim);
    const b = twins.subarray((i + n / 2) * dim, (i + n / 2 + 1) * dim);
    const along = a.reduce((s, v, d) => s + v * b[d]!, 0);
    for (let d = 0; d < dim; d++) b[d] = b[d]! - along * a[d]!;
    normalizeRows(b, 1, dim);
    for (let d = 0; d < dim; d++) b[d] = 0.95 * a[d]! + Math.sqrt(1 - 0.95 * 0.95) * b[d]!;
  }
  const projected = await nearestNeighbours(twins, n, dim, k, { exactUpTo: 0, reducedDims: 32, blockRows: 70 });
  for (let row = 0; row < n; row++) {
    assert.equal(projected[row * k], (row + n / 2) % n, `row ${row}`);
    const cos = Array.from(projected.subarray(row * k, (row + 1) * k), (j) => twins.subarray(row * dim, (row + 1) * dim).reduce((s, v, d) => s + v * twins[j * dim + d]!, 0));
    assert.deepEqual(cos, [...cos].sort((p, q) => q - p), `row ${row}: closest first`);
  }
  // Fewer other rows than k: the rest is -1.
  assert.deepEqual(Array.from(await nearestNeighbours(x.subarray(0, 3 * dim), 3, dim, 4)).filter((j) => j < 0).length, 3 * 2);
});

test('neighbourVote: class shares of the neighbours, with smoothing; a row with no neighbours gets a uniform vote', () => {
  const y = Int32Array.from([0, 0, 1, 2]);
  const nb = Int32Array.from([1, 2, 3, -1, 0, 1, -1, -1, -1, -1, -1, -1]);
  const p = neighbourVote(nb, 3, y, 3, 0);
  const rows = (q: Float32Array) => [0, 1, 2, 3].map((i) => Array.from(q.subarray(i * 3, i * 3 + 3), (v) => +v.toFixed(4)));
  assert.deepEqual(rows(p), [[1 / 3, 1 / 3, 1 / 3], [1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]].map((r) => r.map((v) => +v.toFixed(4))));
  assert.deepEqual(rows(neighbourVote(nb, 3, y, 3, 1))[1], [0.6, 0.2, 0.2]);
});

test('labelIssues: rows whose own label has at most MAX_OWN, surest first, suggesting the likeliest other class; unjudged classes are skipped', () => {
  const y = Int32Array.from([0, 1, 2, 0]);
  const probs = Float32Array.from([0.05, 0.5, 0.45, /**/ 0.3, 0.3, 0.4, /**/ 0.6, 0.38, 0.02, /**/ MAX_OWN, 0.2, 0.7]);
  assert.deepEqual(labelIssues(probs, y, 3), [
    { row: 2, suggested: 0, own: probs[8]! },
    { row: 0, suggested: 1, own: probs[0]! },
    { row: 3, suggested: 2, own: probs[9]! },
  ]);
  assert.deepEqual(labelIssues(probs, y, 3, (k) => k !== 0).map((i) => i.row), [2]);
  // Even when the own label is the likeliest (many classes), the suggestion is another class.
  assert.deepEqual(labelIssues(Float32Array.from([0.1, 0.09, 0.09, 0.72]), Int32Array.from([0]), 4, () => true, 0.1), [{ row: 0, suggested: 3, own: 0.1 }].map((i) => ({ ...i, own: Float32Array.from([0.1])[0]! })));
});

test('the neighbour vote alone finds a planted mislabel in clustered data, and nothing in the same data labelled right', async () => {
  await useCpuBackend();
  const n = 200;
  const dim = 48;
  const k = 10;
  const { x, y } = clusters(4, n / 4, dim, 0.8, 'vote');
  const nb = await nearestNeighbours(x, n, dim, k);
  assert.deepEqual(labelIssues(neighbourVote(nb, k, y, 4), y, 4), []);
  const wrong = Int32Array.from(y);
  wrong[41] = (y[41]! + 1) % 4;
  const issues = labelIssues(neighbourVote(nb, k, wrong, 4), wrong, 4);
  assert.deepEqual(issues.map((i) => [i.row, i.suggested]), [[41, y[41]!]]);
  // Blended with a head that is unsure (uniform), the vote still carries it: 0.5 · 1/4 + 0.5 · 0 > MAX_OWN, so not flagged; a head that agrees flags it.
  const uniform = new Float32Array(n * 4).fill(0.25);
  assert.deepEqual(labelIssues(blend(uniform, neighbourVote(nb, k, wrong, 4)), wrong, 4), []);
  const agreeing = Float32Array.from({ length: n * 4 }, (_, j) => (j % 4 === y[Math.floor(j / 4)] ? 0.97 : 0.01));
  assert.deepEqual(labelIssues(blend(agreeing, neighbourVote(nb, k, wrong, 4)), wrong, 4).map((i) => i.row), [41]);
});

test('an exact copy does not vote for its twin: a mislabelled photo and its copy under the same wrong label are both flagged', async () => {
  const { lists, bottlenecks, refs } = await syntheticSet(false);
  // The first image of class 1 looks like class 0, and a copy of it (same values) sits in class 1 too.
  const first = refs.findIndex((q) => q.classIndex === 1);
  const second = refs.findIndex((q, i) => q.classIndex === 1 && i > first);
  const v = bottlenecks.values.get(refs[first]!.file)!;
  v.fill(0);
  v[0] = 1;
  bottlenecks.values.set(refs[second]!.file, Float32Array.from(v));
  fs.copyFileSync(refs[first]!.file, refs[second]!.file);
  bottlenecks.stamps = await stampsOf([...bottlenecks.values.keys()]);
  const c = await checkDataset(lists, bottlenecks, { ...defaultCheckFlags(), seed: 0, log: new MemoryLogger() });
  const rel = (i: number) => path.join(lists.classes[refs[i]!.classIndex]!.dir, refs[i]!.name);
  assert.deepEqual(c.findings.filter((f) => f.kind === 'exact_duplicate').map((f) => f.images.map((i) => i.file).sort()), [[rel(first), rel(second)].sort()]);
  assert.deepEqual(c.findings.filter((f) => f.kind === 'mislabel').map((f) => f.images[0]!.file).sort(), [rel(first), rel(second)].sort());
});

test('lowestCrossEntropy: the C with the best-calibrated held-out probabilities, not the most accurate', () => {
  const cands = [
    { c: 0.01, accuracy: 0.8, cross_entropy: 0.55, n: 100 },
    { c: 0.1, accuracy: 0.79, cross_entropy: 0.5, n: 100 },
    { c: 1, accuracy: 0.82, cross_entropy: 0.7, n: 100 },
  ];
  assert.equal(lowestCrossEntropy(cands).c, 0.1);
  assert.equal(bestCandidate(cands).c, 1);
});
