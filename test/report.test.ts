import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { MemoryLogger } from '../src/log.js';
import { evaluate, matrixCsv, metricsCsv } from '../src/report/index.js';
import { defaultRetrainOptions, runRetrain, type RetrainResult } from '../src/retrain.js';
import { makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

test('confusion matrix and per-class metrics of a small hand-checked case', () => {
  const p = (t: string, q: string) => ({ true_label: t, predicted_label: q });
  const ev = evaluate(['a', 'b', 'c'], [p('a', 'a'), p('a', 'a'), p('a', 'b'), p('b', 'b'), p('c', 'a')]);
  assert.deepEqual(ev.matrix, [
    [2, 1, 0],
    [0, 1, 0],
    [1, 0, 0],
  ]);
  const [a, b, c] = ev.perClass;
  // a: 2 of 3 predicted "a" are right; 2 of 3 true "a" found.
  assert.deepEqual([a!.precision, a!.recall, a!.support], [2 / 3, 2 / 3, 3]);
  assert.ok(Math.abs(a!.f1! - 2 / 3) < 1e-12);
  assert.deepEqual([b!.precision, b!.recall], [1 / 2, 1]);
  assert.ok(Math.abs(b!.f1! - 2 / 3) < 1e-12);
  // c is never predicted: precision undefined, not 0.
  assert.deepEqual([c!.precision, c!.recall, c!.f1, c!.support], [null, 0, null, 1]);
  assert.equal(matrixCsv(ev), 'true\\predicted,a,b,c\na,2,1,0\nb,0,1,0\nc,1,0,0\n');
  assert.equal(metricsCsv(ev).split('\n')[3], 'c,,0.0000,,1');
});

const CHROMIUM = ['chromium', 'chromium-browser'].find((c) => spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0);

async function reportRun(): Promise<{ root: string; result: RetrainResult; html: string }> {
  await useCpuBackend();
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 14 });
  fs.writeFileSync(path.join(images, 'red', 'broken.jpg'), 'not an image');
  const model = await makeLayersModel(path.join(root, 'model'));
  const result = await runRetrain(
    {
      ...defaultRetrainOptions(),
      imageDir: images,
      tfhubModule: model,
      moduleCacheDir: path.join(root, 'cache'),
      bottleneckDir: path.join(root, 'bn'),
      outputGraph: path.join(root, 'out', 'graph'),
      outputLabels: path.join(root, 'out', 'labels.txt'),
      summariesDir: path.join(root, 'logs'),
      // Few, small steps: the head is still wrong on some test images, which the report must show.
      howManyTrainingSteps: 10,
      learningRate: 0.0005,
      evalStepInterval: 2,
      testingPercentage: 30,
      backend: 'cpu',
    },
    new MemoryLogger(),
  );
  // Default --report_dir: beside --output_graph.
  const html = fs.readFileSync(path.join(root, 'out', 'report.html'), 'utf8');
  return { root, result, html };
}

let run: Promise<{ root: string; result: RetrainResult; html: string }> | undefined;
const shared = () => (run ??= reportRun());

test('report.html and its CSVs show the run: curves, matrix, misclassified thumbnails, data, timings', async () => {
  const { root, result, html } = await shared();
  const s = result.summary;
  const labels = Object.keys(s.classes);
  const preds = s.test!.predictions;
  const wrong = preds.filter((p) => p.true_label !== p.predicted_label);
  assert.ok(wrong.length > 0, 'the fixture run should misclassify some test images');

  // One self-contained file: no script, no external resource.
  assert.doesNotMatch(html, /<script|<link|src="(?!data:)/);
  for (const id of ['accuracy-chart', 'cross-entropy-chart']) {
    const svg = html.match(new RegExp(`<svg id="${id}"[\\s\\S]*?</svg>`))?.[0];
    assert.ok(svg, id);
    const paths = [...svg.matchAll(/<path d="([^"]+)"[^>]*data-series="(\w+)"/g)];
    assert.deepEqual(paths.map((m) => m[2]).sort(), ['train', 'validation']);
    for (const m of paths) assert.equal(m[1]!.split(/[ML]/).length - 1, s.training!.history.length, `${id}: one vertex per evaluation`);
  }
  // Matrix cells, row by row, are the counts of (true, predicted) pairs.
  const count = (t: string, q: string) => preds.filter((p) => p.true_label === t && p.predicted_label === q).length;
  const table = html.match(/<table id="confusion-matrix"[\s\S]*?<\/table>/)![0];
  const cells = [...table.matchAll(/<td class="cell"[^>]*>(\d+)<\/td>/g)].map((m) => Number(m[1]));
  assert.deepEqual(cells, labels.flatMap((t) => labels.map((q) => count(t, q))));
  const csv = fs.readFileSync(path.join(root, 'out', 'confusion_matrix.csv'), 'utf8').trim().split('\n');
  assert.deepEqual(csv[0]!.split(',').slice(1), labels);
  assert.deepEqual(csv.slice(1).map((l) => l.split(',').slice(1).map(Number)), labels.map((t) => labels.map((q) => count(t, q))));
  const metrics = fs.readFileSync(path.join(root, 'out', 'per_class_metrics.csv'), 'utf8').trim().split('\n');
  assert.equal(metrics.length, labels.length + 1);
  for (const [k, line] of metrics.slice(1).entries()) {
    const [label, , recall, , support] = line.split(',');
    const n = preds.filter((p) => p.true_label === labels[k]).length;
    assert.equal(label, labels[k]);
    assert.equal(Number(support), n);
    if (n > 0) assert.equal(Number(recall), Number((count(labels[k]!, labels[k]!) / n).toFixed(4)));
  }

  const figures = [...html.matchAll(/<figure class="misclassified"><img src="data:image\/jpeg;base64,([^"]+)"[\s\S]*?<\/figure>/g)];
  assert.equal(figures.length, wrong.length);
  for (const [i, f] of figures.entries()) {
    const meta = await sharp(Buffer.from(f[1]!, 'base64')).metadata();
    assert.ok(meta.width! <= 112 && meta.height! <= 112 && meta.width! > 0);
    assert.ok(f[0].includes(path.basename(wrong[i]!.file)) && f[0].includes(`predicted: ${wrong[i]!.predicted_label}`));
  }
  assert.match(html, /broken\.jpg<\/td><td>[^<]+<\/td>/, 'the failed file and why');
  for (const stage of Object.keys(s.timings_s).filter((k) => k !== 'report')) assert.match(html, new RegExp(`<th scope="row">${stage}</th>`));
  assert.match(html, /--how_many_training_steps<\/th><td>10</);
});

test('report.html renders in headless Chromium with curves, matrix and thumbnails', { skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium)' }, async () => {
  const { root } = await shared();
  const shot = path.join(root, 'report.png');
  const r = spawnSync(
    CHROMIUM!,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${tempDir('chromium-')}`,
      '--hide-scrollbars',
      '--window-size=1200,1100',
      `--screenshot=${shot}`,
      `file://${path.join(root, 'out', 'report.html')}`,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.ok(fs.existsSync(shot), `chromium wrote no screenshot: ${r.stderr}`);
  if (process.env['REPORT_SCREENSHOT']) fs.copyFileSync(shot, process.env['REPORT_SCREENSHOT']);
  const { data, info } = await sharp(shot).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const near = (rgb: [number, number, number]) => {
    let n = 0;
    for (let i = 0; i < data.length; i += info.channels) {
      if (Math.abs(data[i]! - rgb[0]) + Math.abs(data[i + 1]! - rgb[1]) + Math.abs(data[i + 2]! - rgb[2]) < 30) n++;
    }
    return n;
  };
  // The curves' colours (train orange, validation blue), the matrix's diagonal green, the thumbnails' red frames.
  assert.ok(near([0xe8, 0x71, 0x0a]) > 200, 'train curves drawn');
  assert.ok(near([0x1a, 0x73, 0xe8]) > 200, 'validation curves drawn');
  assert.ok(near([0x4b, 0xa0, 0x65]) + near([0x3a, 0x9a, 0x57]) > 200, 'confusion matrix diagonal drawn');
  assert.ok(near([0xdd, 0x22, 0x33]) > 300, 'misclassified thumbnails drawn');
});

test('retrain CLI: --summaries_dir and --report_dir put the event files and the report where asked; plain log lines when not on a TTY', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 8 });
  const model = await makeLayersModel(path.join(root, 'model'));
  const r = runCli('retrain', [
    '--image_dir', images,
    '--tfhub_module', model,
    '--bottleneck_dir', path.join(root, 'bn'),
    '--output_graph', path.join(root, 'out', 'graph'),
    '--output_labels', path.join(root, 'out', 'labels.txt'),
    '--summaries_dir', path.join(root, 'tb'),
    '--report_dir', path.join(root, 'rep'),
    '--how_many_training_steps', '12',
    '--backend', 'cpu',
  ]);
  assert.equal(r.status, 0, r.stderr);
  for (const sub of ['train', 'validation']) assert.match(fs.readdirSync(path.join(root, 'tb', sub)).join(), /^events\.out\.tfevents\.\d{10}\./);
  for (const f of ['report.html', 'confusion_matrix.csv', 'per_class_metrics.csv']) assert.ok(fs.existsSync(path.join(root, 'rep', f)), f);
  assert.ok(!fs.existsSync(path.join(root, 'out', 'report.html')));
  assert.match(r.stderr, /INFO:retrain:Wrote the report to .*report\.html/);
  assert.doesNotMatch(r.stderr, /\x1b\[/, 'no terminal control codes in a pipe');
});

test('report.html shows the flags as the user gave them: no objects, no signal, the command line', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 8 });
  const model = await makeLayersModel(path.join(root, 'model'));
  const r = runCli('retrain', [
    '--image_dir', images, '--tfhub_module', model, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', path.join(root, 'out', 'graph'),
    '--output_labels', path.join(root, 'out', 'labels.txt'), '--how_many_training_steps', '4', '--flip_left_right', '--random_crop', '5',
    '--distortion_variants', '1', '--input_range', '-1,1', '--backend', 'cpu', '--num_workers', '0',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const html = fs.readFileSync(path.join(root, 'out', 'report.html'), 'utf8');
  const flags = /<table id="flags"[^]*?<\/table>/.exec(html)![0];
  assert.doesNotMatch(flags, /\[object|--signal|--distortions\b/);
  for (const [flag, value] of [['--random_crop', '5'], ['--input_range', '-1,1'], ['--flip_left_right', 'on'], ['--how_many_training_steps', '4'], ['--learning_rate', '0.01']]) {
    assert.match(flags, new RegExp(`<th scope="row">${flag}</th><td>${value}</td>`), flag);
  }
  const cmd = /<code id="command-line">([^<]*)<\/code>/.exec(html)![1]!;
  assert.match(cmd, /^retrain --image_dir /);
  for (const part of ['--random_crop 5', '--flip_left_right', '--input_range -1,1', '--distortion_variants 1']) assert.ok(cmd.includes(part), part);
  assert.doesNotMatch(cmd, /--learning_rate/, 'defaults are not part of the command as given');
});
