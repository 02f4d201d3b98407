/**
 * Issue 16, sections 1 and 2: every write succeeds whole or fails loudly, an export is
 * one atomic unit (old model or new, never a mix, never nothing), concurrent runs leave
 * one run's labels and weights, and output paths are checked before any work. All
 * through the real CLI in a child process; full disks are real tmpfs mounts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import lockfile from 'proper-lockfile';
import { readModelFiles } from '../src/module/io.js';
import { makeGraphModel, makeImageDir, makeLayersModel, tempDir, useCpuBackend } from './helpers/fixtures.js';
import { hasStack, makeSlowLayersModel, runCliAsync, runCliEach, startCli, waitFor } from './helpers/faults.js';

const IS_ROOT = process.getuid?.() === 0;

let root = '';
let images = '';
let imagesC = '';
let layers = '';
let slow = '';
let graph = '';

before(async () => {
  root = tempDir('retrain-outputs-');
  images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green', 'blue'], perClass: 8 });
  imagesC = await makeImageDir(path.join(root, 'imagesC'), { classes: ['cat', 'dog'], perClass: 8, seed: 3 });
  layers = await makeLayersModel(path.join(root, 'layers'));
  slow = await makeSlowLayersModel(path.join(root, 'slow'));
  graph = makeGraphModel(path.join(root, 'graph'));
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

/** A run writing to `out` (graph, labels.txt); its caches and logs in `work`. */
function args(out: string, extra: string[] = [], o: { module?: string; images?: string; work?: string } = {}): string[] {
  const work = o.work ?? path.join(root, 'work');
  return [
    '--image_dir', o.images ?? images, '--tfhub_module', o.module ?? layers, '--bottleneck_dir', path.join(work, 'bn'),
    '--summaries_dir', path.join(work, 'logs'), '--output_graph', path.join(out, 'graph'), '--output_labels', path.join(out, 'labels.txt'),
    '--how_many_training_steps', '10', '--backend', 'cpu', '--module_cache_dir', path.join(root, 'modcache'), ...extra,
  ];
}

/** Every file below `dir` (hidden ones too) with its bytes, by relative name. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!fs.existsSync(dir)) return out;
  for (const d of fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[]) {
    if (!d.isFile()) continue;
    const full = path.join(d.parentPath, d.name);
    out[path.relative(dir, full)] = fs.readFileSync(full).toString('base64');
  }
  return out;
}

/**
 * Loads the exported model with plain tfjs and checks that it and the labels file
 * come from one run: the labels file, the labels in model.json and the number of
 * output units agree. Returns the labels.
 */
async function loadAgreeing(graphDir: string, labelsFile: string): Promise<string[]> {
  await useCpuBackend();
  const files = readModelFiles(path.join(graphDir, 'model.json'));
  const meta = (files.artifacts.userDefinedMetadata as { retrain: { labels: string[]; inputHeight: number; inputWidth: number } }).retrain;
  const model = files.json.format === 'graph-model' ? await tf.loadGraphModel(tf.io.fromMemory(files.artifacts)) : await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
  const y = model.predict(tf.zeros([1, meta.inputHeight, meta.inputWidth, 3])) as tf.Tensor;
  const units = y.shape.at(-1)!;
  const probs = await y.data();
  y.dispose();
  assert.ok([...probs].every(Number.isFinite));
  const labels = fs.readFileSync(labelsFile, 'utf8').trimEnd().split('\n');
  assert.deepEqual(labels, meta.labels, 'labels file and model.json labels differ: they come from different runs');
  assert.equal(labels.length, units, 'labels count differs from the output units');
  return labels;
}

const lastLine = (stderr: string) => stderr.trim().split('\n').at(-1)!;
const leftovers = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => /\.(staging|backup)-\d+|\.lock$/.test(n)) : []);

/** A small tmpfs; needs root and a mount namespace that allows it. */
function mountTmpfs(dir: string, opts: string): (() => void) | string {
  if (!IS_ROOT) return 'needs root to mount a tmpfs';
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    return `cannot mount a tmpfs here: ${String((err as Error).message).split('\n')[0]}`;
  }
  return () => execFileSync('umount', [dir]);
}

/** Fills the file system holding `dir` until `leave` bytes are free. */
function fill(dir: string, leave: number): string {
  const st = fs.statfsSync(dir);
  const free = st.bavail * st.bsize;
  assert.ok(free > leave, `only ${free} bytes free`);
  const filler = path.join(dir, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(free - leave, 1));
  return filler;
}

test('a full disk: re-exporting fails loudly and the previous model is kept whole; --summary_json is never cut', async (t) => {
  const disk = path.join(root, 'disk');
  const unmount = mountTmpfs(disk, 'size=2m');
  if (typeof unmount === 'string') return t.skip(unmount);
  try {
    const work = path.join(root, 'work-disk');
    const first = await runCliAsync('retrain', args(disk, [], { module: slow, work }));
    assert.equal(first.status, 0, first.stderr);
    const good = snapshot(path.join(disk, 'graph'));
    const goodLabels = fs.readFileSync(path.join(disk, 'labels.txt'), 'utf8');
    const oldSummary = '{"old": true}\n';
    fs.writeFileSync(path.join(disk, 'summary.json'), oldSummary);

    // Room for a page or so: the kernel takes part of a shard, then refuses the rest.
    const filler = fill(disk, 16 * 1024);
    const summary = path.join(work, 'summary.json');
    const again = await runCliAsync('retrain', args(disk, ['--seed', '7', '--summary_json', summary, '--eval_step_interval', '1', '--how_many_training_steps', '60'], { module: slow, work }));
    assert.equal(again.status, 1, again.stderr);
    assert.match(lastLine(again.stderr), /^retrain: error: cannot write .*disk\/graph\/(group1-shard1of1\.bin|model\.json): ENOSPC/);
    assert.ok(!hasStack(again.stderr), again.stderr);
    assert.doesNotMatch(again.stderr, /Wrote the retrained model/);
    assert.deepEqual(snapshot(path.join(disk, 'graph')), good, 'the previous model changed');
    assert.equal(fs.readFileSync(path.join(disk, 'labels.txt'), 'utf8'), goodLabels);
    await loadAgreeing(path.join(disk, 'graph'), path.join(disk, 'labels.txt'));
    assert.deepEqual(leftovers(disk), []);
    // The failed run's summary says why, and what it did before.
    const s = JSON.parse(fs.readFileSync(summary, 'utf8'));
    assert.match(s.error.message, /ENOSPC/);
    assert.equal(s.error.exit_code, 1);
    assert.equal(s.training.steps, 60);
    const summaryBytes = fs.statSync(summary).size;
    assert.ok(summaryBytes > 8192, `summary of ${summaryBytes} bytes is too small to test a cut`);

    // The same summary onto the nearly full disk: an error, and the old summary stays whole.
    fs.rmSync(filler);
    fill(disk, 4096);
    const cut = await runCliAsync('retrain', args(path.join(work, 'out'), ['--seed', '7', '--summary_json', path.join(disk, 'summary.json'), '--eval_step_interval', '1', '--how_many_training_steps', '60'], { module: slow, work }));
    assert.equal(cut.status, 1, cut.stderr);
    assert.match(lastLine(cut.stderr), /^retrain: error: cannot write .*disk\/summary\.json: ENOSPC/);
    assert.equal(fs.readFileSync(path.join(disk, 'summary.json'), 'utf8'), oldSummary);
    assert.deepEqual(fs.readdirSync(disk).filter((n) => n.startsWith('.') || /\.\d+$/.test(n)), [], 'temp files left');
  } finally {
    unmount();
  }
});

test('a full disk under a .pb, a SavedModel or intermediate graphs: an error, and the previous ones are kept whole', async (t) => {
  const disk = path.join(root, 'disk-tf');
  const unmount = mountTmpfs(disk, 'size=1m');
  if (typeof unmount === 'string') return t.skip(unmount);
  try {
    const work = path.join(root, 'work-disk-tf');
    const pb = path.join(disk, 'model.pb');
    const sm = path.join(disk, 'saved');
    const inter = path.join(disk, 'inter');
    const tfArgs = (seed: string, extra: string[]) => [
      ...args(disk, ['--seed', seed, '--intermediate_store_frequency', '5', '--report_dir', work, '--summary_json', path.join(work, `s${seed}.json`), ...extra], { module: graph, work }),
    ];
    const first = await runCliAsync('retrain', tfArgs('1', ['--output_graph', pb, '--saved_model_dir', sm, '--intermediate_output_graphs_dir', inter]));
    assert.equal(first.status, 0, first.stderr);
    const good = snapshot(disk);
    assert.ok(good['model.pb'] && good['saved/saved_model.pb'] && good['inter/intermediate_5.pb'], Object.keys(good).join(' '));
    fill(disk, 0);
    const elsewhere = path.join(work, 'elsewhere');
    const cases: Array<[string, string[], RegExp]> = [
      ['.pb', ['--output_graph', pb, '--output_labels', path.join(elsewhere, 'labels.txt'), '--intermediate_output_graphs_dir', path.join(elsewhere, 'inter')], /cannot write .*disk-tf\/model\.pb: ENOSPC/],
      ['SavedModel', ['--output_graph', path.join(elsewhere, 'model.pb'), '--output_labels', path.join(elsewhere, 'labels.txt'), '--saved_model_dir', sm, '--intermediate_output_graphs_dir', path.join(elsewhere, 'inter')], /cannot write .*disk-tf\/saved(\/saved_model\.pb)?: ENOSPC/],
      ['intermediate', ['--output_graph', path.join(elsewhere, 'model.pb'), '--intermediate_output_graphs_dir', inter], /cannot write .*disk-tf\/inter\/intermediate_5\.pb: ENOSPC/],
    ];
    for (const [what, extra, re] of cases) {
      const r = await runCliAsync('retrain', tfArgs('7', extra));
      assert.equal(r.status, 1, `${what}: ${r.stderr}`);
      assert.match(lastLine(r.stderr), re, what);
      assert.ok(!hasStack(r.stderr), r.stderr);
      const now = snapshot(disk);
      delete now['filler'];
      assert.deepEqual(now, good, `${what}: the previous outputs changed`);
      assert.deepEqual(fs.readdirSync(disk).filter((n) => n.startsWith('.') || /\.\d+$/.test(n)), [], `${what}: temp files left`);
    }
  } finally {
    unmount();
  }
});

test('SIGKILL at several points of an export leaves the old model or the new one, whole; the next run cleans up', async (t) => {
  const out = path.join(root, 'kill');
  const work = path.join(root, 'work-kill');
  const old = await runCliAsync('retrain', args(out, ['--seed', '1'], { module: slow, work }));
  assert.equal(old.status, 0, old.stderr);
  fs.cpSync(path.join(out, 'graph'), path.join(root, 'kill-old'), { recursive: true });
  const ref = path.join(root, 'kill-ref');
  const fresh = await runCliAsync('retrain', args(ref, ['--seed', '2'], { module: slow, work }));
  assert.equal(fresh.status, 0, fresh.stderr);
  const oldFiles = snapshot(path.join(out, 'graph'));
  const newFiles = snapshot(path.join(ref, 'graph'));
  assert.notDeepEqual(oldFiles, newFiles);

  const staging = () => fs.readdirSync(out).some((n) => n.startsWith('.graph.staging-'));
  const points: Array<[string, (stderr: string) => boolean]> = [
    ['when the staging folder appears', () => staging()],
    ['when the staged model is complete', () => fs.readdirSync(out).some((n) => n.startsWith('.graph.staging-') && fs.existsSync(path.join(out, n, 'model.json')))],
    ['right after the export', (e) => /Wrote the retrained model/.test(e)],
  ];
  const seen = new Set<string>();
  for (const [what, when] of points) {
    const run = startCli('retrain', args(out, ['--seed', '2'], { module: slow, work }));
    // Poll as fast as the event loop turns: the export lasts milliseconds.
    await new Promise<void>((resolve) => {
      const tick = () => (when(run.stderr()) || run.child.exitCode !== null ? resolve() : setImmediate(tick));
      tick();
    });
    run.child.kill('SIGKILL');
    const r = await run.done;
    const now = snapshot(path.join(out, 'graph'));
    const state = JSON.stringify(now) === JSON.stringify(oldFiles) ? 'old' : JSON.stringify(now) === JSON.stringify(newFiles) ? 'new' : 'mixed';
    assert.notEqual(state, 'mixed', `killed ${what} (${r.signal ?? r.status}): the model folder holds ${Object.keys(now).join(', ') || 'nothing'}`);
    seen.add(state);
    await loadAgreeing(path.join(out, 'graph'), path.join(out, 'labels.txt'));
    // The next run starts by cleaning up after the dead one, and ends with the new model.
    const next = await runCliAsync('retrain', args(out, ['--seed', '2'], { module: slow, work }));
    assert.equal(next.status, 0, next.stderr);
    assert.deepEqual(leftovers(out), []);
    assert.deepEqual(snapshot(path.join(out, 'graph')), newFiles);
    // Back to the old model for the next kill point.
    fs.rmSync(path.join(out, 'graph'), { recursive: true });
    fs.cpSync(path.join(root, 'kill-old'), path.join(out, 'graph'), { recursive: true });
  }
  t.diagnostic(`states after the kills: ${[...seen].join(', ')}`);
});

test('two runs with different classes or modules writing one --output_graph: labels and weights from one run', async () => {
  const out = path.join(root, 'concurrent');
  for (let round = 0; round < 2; round++) {
    const [a, c] = await Promise.all([
      runCliAsync('retrain', args(out, [], { work: path.join(root, 'work-a') })),
      runCliAsync('retrain', args(out, [], { images: imagesC, work: path.join(root, 'work-c') })),
    ]);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(c.status, 0, c.stderr);
    const labels = await loadAgreeing(path.join(out, 'graph'), path.join(out, 'labels.txt'));
    assert.ok(['blue,green,red', 'cat,dog'].includes(labels.join(',')), labels.join(','));
    assert.deepEqual(leftovers(out), []);
  }
  // Different modules: a layers model and a graph model, with different shard layouts.
  const [l, g] = await Promise.all([
    runCliAsync('retrain', args(out, [], { work: path.join(root, 'work-a') })),
    runCliAsync('retrain', args(out, [], { module: graph, images: imagesC, work: path.join(root, 'work-g') })),
  ]);
  assert.equal(l.status, 0, l.stderr);
  assert.equal(g.status, 0, g.stderr);
  await loadAgreeing(path.join(out, 'graph'), path.join(out, 'labels.txt'));
});

test('a run waits for the lock another writer of the same --output_graph holds', async () => {
  const out = path.join(root, 'locked');
  fs.mkdirSync(out, { recursive: true });
  const target = path.join(out, 'graph');
  const release = await lockfile.lock(target, { lockfilePath: path.join(out, '.graph.lock'), realpath: false });
  const run = startCli('retrain', args(out));
  try {
    await waitFor(() => /Waiting for another run writing .*graph/.test(run.stderr()) || run.child.exitCode !== null, 120_000, 'the run to wait for the lock');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(run.child.exitCode, null, run.stderr());
    assert.ok(!fs.existsSync(target), 'exported while another run held the lock');
  } finally {
    await release();
  }
  const r = await run.done;
  assert.equal(r.status, 0, r.stderr);
  await loadAgreeing(target, path.join(out, 'labels.txt'));
});

test('labels inside the model folder are swapped in with it', async () => {
  const out = path.join(root, 'inside');
  const graphDir = path.join(out, 'graph');
  for (const [imgs, want] of [[images, 'blue,green,red'], [imagesC, 'cat,dog']] as const) {
    const r = await runCliAsync('retrain', [...args(out, [], { images: imgs, work: path.join(root, `work-${want}`) }), '--output_labels', path.join(graphDir, 'labels.txt')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((await loadAgreeing(graphDir, path.join(graphDir, 'labels.txt'))).join(','), want);
    assert.deepEqual(fs.readdirSync(graphDir).sort(), ['group1-shard1of1.bin', 'labels.txt', 'model.json']);
  }
  // label-image refuses labels from another run, even with the same number of classes.
  const other = path.join(out, 'other-labels.txt');
  fs.writeFileSync(other, 'dog\ncat\n');
  const img = path.join(imagesC, 'cat', fs.readdirSync(path.join(imagesC, 'cat'))[0]!);
  const li = await runCliAsync('label-image', ['--graph', graphDir, '--labels', other, '--image', img, '--backend', 'cpu']);
  assert.equal(li.status, 1, li.stderr);
  assert.match(lastLine(li.stderr), /^label-image: error: --labels .*other-labels\.txt \(dog, cat\) differ from the labels stored in the model \(cat, dog\)/);
  const ok = await runCliAsync('label-image', ['--graph', graphDir, '--labels', path.join(graphDir, 'labels.txt'), '--image', img, '--backend', 'cpu']);
  assert.equal(ok.status, 0, ok.stderr);
});

test('empty path flags are usage errors, and an empty --output_graph run inside a module folder leaves the module alone', async () => {
  const mod = path.join(root, 'cwd-module');
  fs.cpSync(layers, mod, { recursive: true });
  const before = snapshot(mod);
  const out = path.join(root, 'empty');
  const flags = ['--output_graph', '--output_labels', '--summary_json', '--report_dir', '--summaries_dir', '--saved_model_dir', '--bottleneck_dir', '--intermediate_output_graphs_dir', '--tfhub_module'];
  const runs = await Promise.all(flags.map((f) => startCli('retrain', [...args(out), f, ''], {}, {}, mod).done));
  runs.forEach((r, i) => {
    assert.equal(r.status, 2, `${flags[i]}: ${r.stderr}`);
    assert.match(lastLine(r.stderr), new RegExp(`^retrain: error: ${flags[i]} is empty \\(an unset shell variable\\?\\): give a path$`));
    assert.ok(!hasStack(r.stderr));
  });
  assert.deepEqual(snapshot(mod), before);
  assert.ok(!fs.existsSync(out));
});

test('output paths among the inputs, of the wrong kind, or under a folder that cannot be written are refused before any work', async (t) => {
  const out = path.join(root, 'paths');
  fs.mkdirSync(out, { recursive: true });
  const aFile = path.join(out, 'a-file');
  fs.writeFileSync(aFile, 'x');
  const aDir = path.join(out, 'a-dir');
  fs.mkdirSync(path.join(aDir, 'x.pb'), { recursive: true });
  const logsWithFile = path.join(out, 'logs');
  fs.mkdirSync(logsWithFile);
  fs.writeFileSync(path.join(logsWithFile, 'train'), 'x');
  const foreign = path.join(out, 'foreign');
  fs.mkdirSync(foreign);
  fs.writeFileSync(path.join(foreign, 'notes.txt'), 'keep me');
  const inputs = { images: snapshot(images), layers: snapshot(layers), graph: snapshot(graph), foreign: snapshot(foreign) };

  const cases: Array<[string[], number, RegExp, string?]> = [
    [['--output_graph', layers], 2, /--output_graph .* would write over the module of --tfhub_module/],
    [['--output_labels', path.join(layers, 'model.json')], 2, /--output_labels .*model\.json would write over the module/],
    [['--output_labels', path.join(graph, 'group1-shard1of1.bin')], 2, /--output_labels .*group1-shard1of1\.bin would write over the module/, path.join(graph, 'model.json')],
    [['--output_graph', path.dirname(layers)], 2, /--output_graph .* holds (--image_dir|the module)/],
    [['--summary_json', path.join(layers, 'group1-shard1of1.bin')], 2, /--summary_json .* would write over the module/],
    [['--output_graph', path.join(images, 'red', 'out')], 2, /--output_graph .* is inside --image_dir/],
    [['--summaries_dir', images], 2, /--summaries_dir .* is inside --image_dir/],
    [['--summary_json', path.join(images, 'summary.json')], 2, /--summary_json .* is inside --image_dir/],
    [['--report_dir', path.join(images, 'green')], 2, /--report_dir .* is inside --image_dir/],
    [['--bottleneck_dir', path.join(images, 'bn')], 2, /--bottleneck_dir .* is inside --image_dir/],
    [['--output_graph', aFile], 2, /--output_graph .*a-file is a file: give a folder/],
    [['--report_dir', aFile], 2, /--report_dir .*a-file is a file: give a folder/],
    [['--summaries_dir', aFile], 2, /--summaries_dir .*a-file is a file: give a folder/],
    [['--summaries_dir', logsWithFile], 2, /--summaries_dir .*logs\/train is a file: give a folder/],
    [['--intermediate_output_graphs_dir', aFile, '--intermediate_store_frequency', '5'], 2, /--intermediate_output_graphs_dir .*a-file is a file/],
    [['--output_labels', aDir], 2, /--output_labels .*a-dir is a folder: give a file name/],
    [['--summary_json', aDir], 2, /--summary_json .*a-dir is a folder: give a file name/],
    [['--summary_json', path.join(aFile, 'summary.json')], 2, /--summary_json .*a-file\/summary\.json: .*a-file is a file, not a folder/],
    [['--output_graph', path.join(aFile, 'sub', 'graph')], 2, /--output_graph .*a-file\/sub\/graph: .*a-file is a file, not a folder/],
    [['--output_graph', path.join(aDir, 'x.pb')], 2, /--output_graph .*x\.pb is a folder: give a file name/, graph],
    [['--saved_model_dir', aFile], 2, /--saved_model_dir .*a-file is a file: give a folder/, graph],
    [['--output_graph', foreign], 2, /--output_graph .*foreign holds notes\.txt, which an export would replace/],
    [['--summary_json', path.join(out, 'same.txt'), '--output_labels', path.join(out, 'same.txt')], 2, /--summary_json and --output_labels are the same path/],
    [['--summary_json', path.join(out, 'o', 'graph', 'summary.json')], 2, /--summary_json .* is inside --output_graph .*, which an export replaces whole/],
  ];
  const ro = path.join(root, 'readonly');
  const unmount = mountTmpfs(ro, 'ro,size=64k');
  if (typeof unmount === 'function') {
    cases.push(
      [['--output_graph', path.join(ro, 'graph')], 1, /--output_graph .*readonly\/graph: cannot write in .*readonly \(EROFS\)/],
      [['--summary_json', path.join(ro, 'summary.json')], 1, /--summary_json .*: cannot write in .*readonly \(EROFS\)/],
      [['--summaries_dir', path.join(ro, 'logs')], 1, /--summaries_dir .*: cannot write in .*readonly \(EROFS\)/],
      [['--report_dir', ro], 1, /--report_dir .*: cannot write in .*readonly \(EROFS\)/],
    );
  } else t.diagnostic(`read-only cases skipped: ${unmount}`);
  try {
    // Six at a time: each run spends most of its life starting up.
    const runs = await runCliEach('retrain', cases.map(([extra, , , module], k) => args(path.join(out, 'o'), extra, { module, work: path.join(out, `work-${k}`) })), {}, 6);
    runs.forEach((r, k) => {
      const [extra, status, re] = cases[k]!;
      assert.equal(r.status, status, `${extra.join(' ')}:\n${r.stderr}`);
      assert.match(lastLine(r.stderr), new RegExp(`^retrain: error: ${re.source}`));
      assert.ok(!hasStack(r.stderr), r.stderr);
      // Refused at the start: not a single bottleneck computed.
      assert.doesNotMatch(r.stderr, /Bottlenecks:|Using backend/, extra.join(' '));
      assert.ok(!fs.existsSync(path.join(out, `work-${k}`, 'bn')), extra.join(' '));
    });
  } finally {
    if (typeof unmount === 'function') unmount();
  }
  assert.deepEqual({ images: snapshot(images), layers: snapshot(layers), graph: snapshot(graph), foreign: snapshot(foreign) }, inputs);
  assert.ok(!fs.existsSync(path.join(out, 'o')));
});

test('--summary_json is written on a failed run too, with the error', async () => {
  const out = path.join(root, 'failed');
  const summary = path.join(out, 'summary.json');
  const r = await runCliAsync('retrain', args(out, ['--summary_json', summary, '--tfhub_module', path.join(root, 'no-such-module')]));
  assert.equal(r.status, 2, r.stderr);
  const s = JSON.parse(fs.readFileSync(summary, 'utf8'));
  assert.deepEqual(s.error, { message: lastLine(r.stderr).replace(/^retrain: error: /, ''), exit_code: 2 });
  assert.equal(s.module, null);
  // A run that got further records what it did: fine-tuning more layers than the graph model has is refused once it is loaded.
  const r2 = await runCliAsync('retrain', args(out, ['--summary_json', summary, '--fine_tune_layers', '5'], { module: graph }));
  assert.notEqual(r2.status, 0, r2.stderr);
  const s2 = JSON.parse(fs.readFileSync(summary, 'utf8'));
  assert.equal(s2.error.message, lastLine(r2.stderr).replace(/^retrain: error: /, ''));
  assert.equal(s2.error.exit_code, r2.status);
  assert.ok(s2.module && s2.module.bottleneck_size > 0, JSON.stringify(s2.module));
  assert.deepEqual(Object.keys(s2.classes).sort(), ['blue', 'green', 'red']);
});
