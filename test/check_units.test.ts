/** The dataset check's parts on data built to order: the blocked pair search, and a set with no problems. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { stampsOf, type Bottlenecks } from '../src/bottleneck/index.js';
import { checkCsv, checkDataset, defaultCheckFlags } from '../src/check/index.js';
import { normalizeRows, similarPairs } from '../src/check/near.js';
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
