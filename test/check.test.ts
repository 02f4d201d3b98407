/**
 * The dataset check on a damaged copy of ../shared's flowers-dev: photos moved into a
 * wrong class, exact copies under other names across classes and splits, one lossless
 * PNG of a JPEG. The bottlenecks are computed once (mobilenet_v2_035_224) and reused.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'csv-parse/sync';
import sharp from 'sharp';
import { CSV_COLUMNS, type DatasetCheckSummary } from '../src/check/index.js';
import { MAX_OWN } from '../src/check/mislabel.js';
import { damagedCopy, type Damage } from './helpers/damage.js';
import { runCli, SHARED, SKIP_SHARED, tempDir } from './helpers/fixtures.js';

const FLOWERS = path.join(SHARED, 'datasets', 'flowers-dev');
const MODULE = path.join(SHARED, 'models', 'mobilenet_v2_035_224');
const MOVED = 30;
const COPIES = 10;
const root = tempDir('retrain-check-');
const images = path.join(root, 'images');

interface Summary {
  split: Record<string, Record<string, string[]>>;
  dataset_check: DatasetCheckSummary;
}

function check(out: string, extra: string[] = []): { summary: Summary; stderr: string } {
  const summaryFile = path.join(out, 'summary.json');
  const r = runCli('retrain', [
    '--image_dir', images,
    '--tfhub_module', MODULE,
    '--bottleneck_dir', path.join(root, 'bottlenecks'),
    '--report_dir', out,
    '--summary_json', summaryFile,
    '--check_dataset',
    ...extra,
  ]);
  assert.equal(r.status, 0, r.stderr);
  return { summary: JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as Summary, stderr: r.stderr };
}

let first: Promise<{ damage: Damage; summary: Summary; stderr: string }> | undefined;
const damaged = () =>
  (first ??= (async () => {
    const damage = await damagedCopy(FLOWERS, images, { move: MOVED, copies: COPIES, pixelCopy: true });
    return { damage, ...check(path.join(root, 'out')) };
  })());

test('likely mislabels, flagged only on strong evidence: surest first, at least 2 in 3 of the top 30 were moved, and at least half the moved photos are flagged', { skip: SKIP_SHARED }, async (t) => {
  const { damage, summary, stderr } = await damaged();
  const found = summary.dataset_check.findings.filter((f) => f.kind === 'mislabel');
  const suspects = found.map((f) => f.images[0]!.file);
  const moved = new Set(damage.moved);
  const hits = suspects.filter((f) => moved.has(f)).length;
  const top = suspects.slice(0, MOVED).filter((f) => moved.has(f)).length;
  t.diagnostic(`${suspects.length} flagged: ${hits} of ${MOVED} moved photos (recall ${(hits / MOVED).toFixed(2)}, precision ${(hits / suspects.length).toFixed(2)}); strict precision at ${MOVED}: ${(top / MOVED).toFixed(2)}`);
  // The score is the evidence's probability of the photo's own label: at most MAX_OWN, lowest (surest) first.
  const scores = found.map((f) => f.score);
  assert.ok(scores.every((v) => v <= MAX_OWN), scores.join(' '));
  assert.deepEqual(scores, [...scores].sort((a, b) => a - b));
  // Few false alarms matter more than catching every moved photo (issue 22). This small module (0.35 width) ranks
  // less well than the built-in one, whose strict precision at 30 is 0.75 on damage seeds 4-8 (docs/benchmarks.md).
  assert.ok(top >= (2 / 3) * MOVED, `only ${top} of the top ${MOVED} flagged photos were moved`);
  assert.ok(hits >= 0.5 * MOVED, `only ${hits} of ${MOVED} moved photos flagged`);
  // A moved photo's suggestion is its own class more often than not.
  const suggestions = found.filter((f) => moved.has(f.images[0]!.file));
  const right = suggestions.filter((f) => fs.existsSync(path.join(FLOWERS, f.suggested_label!, path.basename(f.images[0]!.file)))).length;
  assert.ok(right > suggestions.length / 2, `${right} of ${suggestions.length} suggestions name the class the photo came from`);
  assert.match(stderr, /INFO:retrain:Dataset check: \d+ likely mislabels: \S+ \((training|validation|testing)\) \[looks like "/);
});

test('exact duplicates: all 10 copies found, the ones across splits marked as leaks, across classes as conflicting; a PNG of a JPEG by its pixels', { skip: SKIP_SHARED }, async () => {
  const { damage, summary, stderr } = await damaged();
  const exact = summary.dataset_check.findings.filter((f) => f.kind === 'exact_duplicate');
  for (const c of damage.copies) {
    const g = exact.find((f) => f.images.some((i) => i.file === c.copy));
    assert.ok(g, `copy ${c.copy} of ${c.source} not found`);
    assert.deepEqual(g.images.map((i) => i.file).sort(), [c.source, c.copy].sort());
    assert.equal(g.match, 'bytes');
    assert.equal(g.leak, c.leak, `${c.copy}: leak`);
    assert.equal(g.cross_class, c.crossClass, `${c.copy}: conflicting labels`);
  }
  const px = exact.find((f) => f.images.some((i) => i.file === damage.pixelCopy!.copy));
  assert.ok(px, 'the PNG with the same pixels as a JPEG');
  assert.equal(px.match, 'pixels');
  assert.deepEqual(px.images.map((i) => i.file).sort(), [damage.pixelCopy!.source, damage.pixelCopy!.copy].sort());
  assert.equal(exact.length, COPIES + 1, 'flowers-dev itself has no exact duplicates');
  const leaks = damage.copies.filter((c) => c.leak).length + (px.leak ? 1 : 0);
  assert.match(stderr, new RegExp(`Dataset check: ${COPIES + 1} exact duplicate groups \\(${leaks} leak between splits, 2 with conflicting labels\\): .*LEAK`));
  assert.ok(leaks >= 5 && leaks <= COPIES, 'the fixture spreads copies over splits');
});

test('the summary JSON and the CSV agree, row by row', { skip: SKIP_SHARED }, async () => {
  const { summary } = await damaged();
  const c = summary.dataset_check;
  assert.equal(c.csv, path.join(root, 'out', 'dataset_check.csv'));
  const rows = parse(fs.readFileSync(c.csv!, 'utf8'), { columns: true }) as Array<Record<(typeof CSV_COLUMNS)[number], string>>;
  const fromJson = c.findings.flatMap((f) =>
    f.images.map((i) => ({
      kind: f.kind,
      id: String(f.id),
      file: i.file,
      label: i.label,
      split: i.split,
      score: String(f.score),
      match: f.match ?? '',
      suggested_label: f.suggested_label ?? '',
      cross_class: String(f.cross_class),
      leak: String(f.leak),
    })),
  );
  assert.ok(fromJson.length > COPIES * 2);
  assert.deepEqual(rows, fromJson);
  // The counts are the findings, and every file is where the summary's split says.
  for (const kind of ['exact_duplicate', 'near_duplicate', 'mislabel', 'outlier'] as const) {
    assert.equal(c.counts[kind], c.findings.filter((f) => f.kind === kind).length, kind);
  }
  for (const r of rows) assert.ok(summary.split[r.split]![r.label]!.includes(path.basename(r.file)), r.file);
});

test('--exclude_list with the CSV\'s paths: a later run skips those files and finds no duplicate left', { skip: SKIP_SHARED }, async () => {
  const { damage, summary } = await damaged();
  const rows = parse(fs.readFileSync(summary.dataset_check.csv!, 'utf8'), { columns: true }) as Array<{ kind: string; file: string }>;
  const copies = new Set([...damage.copies.map((c) => c.copy), damage.pixelCopy!.copy]);
  const list = path.join(root, 'exclude.txt');
  fs.writeFileSync(list, ['# copies found by the check', ...rows.filter((r) => r.kind === 'exact_duplicate' && copies.has(r.file)).map((r) => r.file), ''].join('\n'));
  const again = check(path.join(root, 'out2'), ['--exclude_list', list]);
  const c = again.summary.dataset_check;
  assert.equal(c.images, summary.dataset_check.images - copies.size);
  assert.equal(c.counts.exact_duplicate, 0);
  const listed = Object.values(again.summary.split).flatMap((byLabel) => Object.entries(byLabel).flatMap(([label, names]) => names.map((n) => `${label}/${n}`)));
  for (const f of copies) {
    assert.ok(!listed.includes(f), `${f} is still in the run`);
    assert.ok(fs.existsSync(path.join(images, f)), `${f} was touched`);
  }
  assert.match(again.stderr, new RegExp(`INFO:retrain:Skipping ${copies.size} images listed in --exclude_list`));
});

const CHROMIUM = ['chromium', 'chromium-browser'].find((c) => spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0);

test('dataset_check.html renders in headless Chromium: thumbnails side by side, leak tags', { skip: SKIP_SHARED || (CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)') }, async () => {
  const { summary } = await damaged();
  const page = path.join(root, 'out', 'dataset_check.html');
  const html = fs.readFileSync(page, 'utf8');
  assert.doesNotMatch(html, /<script|<link|src="(?!data:)/);
  const c = summary.dataset_check;
  const shown = [...html.matchAll(/<div class="finding[^"]*" data-kind="(\w+)" data-id="(\d+)">/g)].map((m) => `${m[1]}#${m[2]}`);
  assert.deepEqual(shown, c.findings.filter((f) => f.id <= 40).map((f) => `${f.kind}#${f.id}`));
  for (const f of c.findings.filter((f) => f.kind === 'exact_duplicate')) {
    const block = html.match(new RegExp(`data-kind="exact_duplicate" data-id="${f.id}">[\\s\\S]*?</div></div>`))![0];
    assert.equal([...block.matchAll(/<img src="data:image\/jpeg;base64,/g)].length, 2);
    for (const i of f.images) assert.ok(block.includes(`${i.file}</b><br>label: ${i.label}<br><span class="split-${i.split}">`), i.file);
    assert.equal(block.includes('leak between splits'), f.leak);
  }
  const shot = path.join(root, 'check.png');
  const r = spawnSync(
    CHROMIUM!,
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', `--user-data-dir=${tempDir('chromium-')}`, '--hide-scrollbars', '--window-size=1200,1400', `--screenshot=${shot}`, `file://${page}`],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.ok(fs.existsSync(shot), `chromium wrote no screenshot: ${r.stderr}`);
  if (process.env['CHECK_SCREENSHOT']) fs.copyFileSync(shot, process.env['CHECK_SCREENSHOT']);
  const { data, info } = await sharp(shot).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let leakTag = 0;
  let colourful = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    const [r0, g0, b0] = [data[i]!, data[i + 1]!, data[i + 2]!];
    if (Math.abs(r0 - 0xdd) + Math.abs(g0 - 0x22) + Math.abs(b0 - 0x33) < 30) leakTag++;
    if (Math.max(r0, g0, b0) - Math.min(r0, g0, b0) > 60) colourful++;
  }
  assert.ok(leakTag > 300, 'red leak tags and frames drawn');
  assert.ok(colourful > 20_000, `photo thumbnails drawn (${colourful} colourful pixels)`);
});
