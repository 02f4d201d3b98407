/**
 * Issue 7: interruption and faults, on a real child process. Ctrl-C stops within a
 * second and keeps finished bottlenecks; SIGKILL leaves nothing that is trusted
 * later; either way a rerun computes only the rest and ends with the same model as
 * an uninterrupted run. Shared caches, failing writes and damaged cache files too.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { HEADER_BYTES, encodeBottleneck } from '../src/bottleneck/format.js';
import { makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';
import { filesBelow, hasStack, makeSlowLayersModel, permissionUser, runCliAsync, startCli, waitFor } from './helpers/faults.js';

const IS_ROOT = process.getuid?.() === 0;
const CLASSES = 3;
const PER_CLASS = 30;
const TOTAL = CLASSES * PER_CLASS;

let root = '';
let images = '';
let model = '';
let reference: { summary: any; shard: Buffer; labels: string } | undefined;

before(async () => {
  root = tempDir('retrain-interrupt-');
  fs.chmodSync(root, 0o777);
  images = await makeImageDir(path.join(root, 'images'), { perClass: PER_CLASS, width: 120, height: 90, format: 'jpg' });
  model = await makeSlowLayersModel(path.join(root, 'model'));
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

function args(out: string, extra: string[] = []): string[] {
  return [
    '--image_dir', images, '--tfhub_module', model, '--bottleneck_dir', path.join(out, 'bottlenecks'),
    '--output_graph', path.join(out, 'graph'), '--output_labels', path.join(out, 'labels.txt'),
    '--summary_json', path.join(out, 'summary.json'), '--how_many_training_steps', '30', '--backend', 'wasm',
    '--bottleneck_batch_size', '2', ...extra,
  ];
}

/** Bottleneck files under their final names; anything else there is a temp file. */
function cacheFiles(out: string): { final: string[]; other: string[] } {
  const all = filesBelow(path.join(out, 'bottlenecks'));
  return { final: all.filter((f) => f.endsWith('.bin')), other: all.filter((f) => !f.endsWith('.bin')) };
}

function result(out: string) {
  return {
    summary: JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')),
    shard: fs.readFileSync(path.join(out, 'graph', 'group1-shard1of1.bin')),
    labels: fs.readFileSync(path.join(out, 'labels.txt'), 'utf8'),
  };
}

async function referenceRun() {
  if (!reference) {
    const out = path.join(root, 'reference');
    const r = await runCliAsync('retrain', args(out));
    assert.equal(r.status, 0, r.stderr);
    reference = result(out);
    assert.equal(reference.summary.bottlenecks.computed, TOTAL);
  }
  return reference;
}

/** The same model as an uninterrupted run: head weights bit for bit, labels, test predictions. */
function assertSameModel(out: string, ref: NonNullable<typeof reference>) {
  const got = result(out);
  assert.ok(got.shard.equals(ref.shard), 'exported weights differ from the uninterrupted run');
  assert.equal(got.labels, ref.labels);
  assert.deepEqual(got.summary.test, ref.summary.test);
  assert.deepEqual(got.summary.training.history, ref.summary.training.history);
}

async function startAndWaitForBottlenecks(out: string, atLeast: number) {
  const run = startCli('retrain', args(out));
  await waitFor(() => cacheFiles(out).final.length >= atLeast || run.child.exitCode !== null, 60_000, `${atLeast} bottleneck files`);
  assert.equal(run.child.exitCode, null, `the run ended before it could be interrupted:\n${run.stderr()}`);
  return run;
}

test('Ctrl-C during bottleneck creation: stops within a second, keeps finished files, exit 130; a rerun computes only the rest and gives the same model', async () => {
  const ref = await referenceRun();
  const out = path.join(root, 'sigint');
  const run = await startAndWaitForBottlenecks(out, 6);
  const t0 = performance.now();
  run.child.kill('SIGINT');
  const r = await run.done;
  const elapsed = performance.now() - t0;
  assert.equal(r.status, 130, r.stderr);
  assert.ok(elapsed < 1000, `took ${elapsed.toFixed(0)} ms to stop`);
  const lines = r.stderr.trim().split('\n');
  const m = /^retrain: error: interrupted: (\d+) new bottleneck files saved in .*bottlenecks, (\d+) still to compute; run the same command again to continue$/.exec(lines.at(-1)!);
  assert.ok(m, r.stderr);
  assert.ok(!hasStack(r.stderr));
  const saved = Number(m[1]);
  assert.equal(saved + Number(m[2]), TOTAL);
  const files = cacheFiles(out);
  assert.equal(files.final.length, saved, 'every finished bottleneck is on disk');
  assert.ok(saved < TOTAL);
  assert.deepEqual(files.other, [], 'temp files left behind');
  assert.ok(!fs.existsSync(path.join(out, 'graph')));
  // The summary says the run was interrupted.
  assert.equal(result2(out).error.exit_code, 130);

  const again = await runCliAsync('retrain', args(out));
  assert.equal(again.status, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /Recomputing/);
  const summary = result(out).summary;
  assert.deepEqual([summary.bottlenecks.cached, summary.bottlenecks.computed], [saved, TOTAL - saved]);
  assertSameModel(out, ref);
});

test('Ctrl-C during training stops within a second with exit 130 and writes no model', async () => {
  const out = path.join(root, 'sigint-training');
  const run = startCli('retrain', [...args(out), '--how_many_training_steps', '1000000', '--eval_step_interval', '50']);
  await waitFor(() => /Step 100: Train accuracy/.test(run.stderr()) || run.child.exitCode !== null, 120_000, 'training to start');
  const t0 = performance.now();
  run.child.kill('SIGINT');
  const r = await run.done;
  const elapsed = performance.now() - t0;
  assert.equal(r.status, 130, r.stderr);
  assert.ok(elapsed < 1000, `took ${elapsed.toFixed(0)} ms to stop`);
  assert.match(r.stderr.trim().split('\n').at(-1)!, /^retrain: error: interrupted at training step \d+: the model was not exported; the bottleneck cache is kept$/);
  assert.equal(cacheFiles(out).final.length, TOTAL);
  assert.ok(!fs.existsSync(path.join(out, 'graph')));
  // The summary says the run was interrupted.
  assert.equal(result2(out).error.exit_code, 130);
});

test('Ctrl-C during fine-tuning stops within 2 s with exit 130 and exports nothing; a second Ctrl-C quits at once', async () => {
  const out = path.join(root, 'sigint-finetune');
  // A small module, so that steps are short and the test measures the reaction, not a step's length.
  const small = await makeLayersModel(path.join(root, 'small-model'));
  const ft = ['--tfhub_module', small, '--fine_tune_layers', '1', '--fine_tune_steps', '1000000', '--fine_tune_batch_size', '4', '--eval_step_interval', '1'];
  const run = startCli('retrain', [...args(out), ...ft]);
  await waitFor(() => /Fine-tune epoch 1 /.test(run.stderr()) || run.child.exitCode !== null, 180_000, 'fine-tuning to start');
  const t0 = performance.now();
  run.child.kill('SIGINT');
  const r = await run.done;
  const elapsed = performance.now() - t0;
  assert.equal(r.status, 130, r.stderr);
  assert.ok(elapsed < 2000, `took ${elapsed.toFixed(0)} ms to stop`);
  assert.match(r.stderr.trim().split('\n').at(-1)!, /^retrain: error: interrupted at fine-tuning step \d+: the model was not exported/);
  assert.ok(!fs.existsSync(path.join(out, 'graph')) && !fs.existsSync(path.join(out, 'labels.txt')));

  const again = startCli('retrain', [...args(out), ...ft]);
  await waitFor(() => /Fine-tune epoch 1 /.test(again.stderr()) || again.child.exitCode !== null, 180_000, 'fine-tuning to start');
  const t1 = performance.now();
  again.child.kill('SIGINT');
  again.child.kill('SIGINT');
  const r2 = await again.done;
  assert.equal(r2.status, 130, r2.stderr);
  assert.ok(performance.now() - t1 < 2000);
  assert.ok(!fs.existsSync(path.join(out, 'graph')));
});

test('Ctrl-C during a module download stops it at once: exit 130, nothing cached', async () => {
  const json = fs.readFileSync(path.join(model, 'model.json'));
  let weightRequested = false;
  const server = http.createServer((req, res) => {
    if (req.url!.includes('model.json')) {
      res.setHeader('content-type', 'application/json');
      res.end(json);
      return;
    }
    // A weight that trickles in and never ends, like a stalled network drive.
    weightRequested = true;
    res.setHeader('content-type', 'application/octet-stream');
    res.write(Buffer.alloc(1000));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tfjs-model/slow/1`;
    const cache = path.join(root, 'download-cache');
    const run = startCli('retrain', [...args(path.join(root, 'download')), '--tfhub_module', url, '--module_cache_dir', cache]);
    await waitFor(() => weightRequested || run.child.exitCode !== null, 60_000, 'the weight request');
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    run.child.kill('SIGINT');
    const r = await run.done;
    const elapsed = performance.now() - t0;
    assert.equal(r.status, 130, r.stderr);
    assert.ok(elapsed < 1000, `took ${elapsed.toFixed(0)} ms to stop`);
    assert.match(r.stderr.trim().split('\n').at(-1)!, /^retrain: error: interrupted while downloading http:.*group1-shard1of1\.bin.*: nothing was cached; run the same command again to start over$/);
    assert.deepEqual(fs.readdirSync(cache), []);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('SIGKILL during bottleneck creation: nothing partial is trusted; a rerun computes only what is missing and gives the same model', async () => {
  const ref = await referenceRun();
  const out = path.join(root, 'sigkill');
  const run = await startAndWaitForBottlenecks(out, 10);
  run.child.kill('SIGKILL');
  const r = await run.done;
  assert.equal(r.signal, 'SIGKILL');
  const kept = cacheFiles(out).final.length;
  assert.ok(kept >= 10 && kept < TOTAL, `${kept}`);

  // Temp files the kill left are never read; old ones are removed, young ones may belong to a live run.
  const dir = path.join(out, 'bottlenecks');
  const [aFile, bFile] = cacheFiles(out).final;
  const orphan = path.join(dir, `${aFile}.123456`);
  const young = path.join(dir, `${bFile}.654321`);
  fs.writeFileSync(orphan, 'partial');
  fs.writeFileSync(young, 'partial');
  const old = new Date(Date.now() - 11 * 60 * 1000);
  fs.utimesSync(orphan, old, old);
  for (const f of cacheFiles(out).other) if (!f.endsWith('.654321')) fs.utimesSync(path.join(dir, f), old, old);
  const again = await runCliAsync('retrain', args(out));
  assert.equal(again.status, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /Recomputing/, 'a file under its final name was incomplete');
  assert.deepEqual(cacheFiles(out).other, [path.relative(dir, young)]);
  const summary = result(out).summary;
  assert.deepEqual([summary.bottlenecks.cached, summary.bottlenecks.computed], [kept, TOTAL - kept]);
  assertSameModel(out, ref);
});

test('two runs sharing one --bottleneck_dir at the same time both finish correctly', async () => {
  const ref = await referenceRun();
  const shared = path.join(root, 'shared-cache');
  const a = path.join(root, 'concurrent-a');
  const b = path.join(root, 'concurrent-b');
  const withShared = (out: string) => [...args(out), '--bottleneck_dir', shared];
  const [ra, rb] = await Promise.all([runCliAsync('retrain', withShared(a)), runCliAsync('retrain', withShared(b))]);
  assert.equal(ra.status, 0, ra.stderr);
  assert.equal(rb.status, 0, rb.stderr);
  for (const out of [a, b]) {
    const s = result(out).summary;
    assert.equal(s.bottlenecks.cached + s.bottlenecks.computed, TOTAL);
    assert.deepEqual(s.bottlenecks.failed, []);
    assertSameModel(out, ref);
  }
  const all = filesBelow(shared);
  assert.equal(all.length, TOTAL);
  assert.ok(all.every((f) => f.endsWith('.bin')));
  // A third run trusts every file the two wrote.
  const c = await runCliAsync('retrain', [...withShared(path.join(root, 'concurrent-c')), '--bottlenecks_only']);
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stderr, new RegExp(`Bottlenecks: 0 computed, ${TOTAL} cached, 0 failed`));
});

test('a cached bottleneck changed on disk (truncated, wrong length, wrong module, garbage) is detected and recomputed', async () => {
  const out = path.join(root, 'damaged');
  const first = await runCliAsync('retrain', [...args(out), '--bottlenecks_only']);
  assert.equal(first.status, 0, first.stderr);
  const dir = path.join(out, 'bottlenecks');
  const names = cacheFiles(out).final;
  const originals = new Map(names.map((n) => [n, fs.readFileSync(path.join(dir, n))]));
  const [truncated, wrongLength, wrongModule, garbage] = names;
  const at = (n: string) => path.join(dir, n!);
  fs.truncateSync(at(truncated!), originals.get(truncated!)!.length - 4);
  const orig = originals.get(wrongLength!)!;
  const moduleId = orig.subarray(28, 44).toString('hex');
  const stamp = { size: orig.readDoubleLE(12), mtimeMs: orig.readDoubleLE(20), contentHash: orig.subarray(48, 64) };
  fs.writeFileSync(at(wrongLength!), encodeBottleneck(new Float32Array(7), moduleId, stamp));
  const other = Buffer.from(originals.get(wrongModule!)!);
  other[30] = other[30]! ^ 0xff;
  fs.writeFileSync(at(wrongModule!), other);
  fs.writeFileSync(at(garbage!), 'x'.repeat(HEADER_BYTES + 10));

  const r = await runCliAsync('retrain', [...args(out), '--bottlenecks_only']);
  assert.equal(r.status, 0, r.stderr);
  const reasons: Array<[string, RegExp]> = [
    [truncated!, /wrong length \(truncated\?\)/],
    [wrongLength!, /holds 7 values, the module gives 32/],
    [wrongModule!, /made by another module/],
    [garbage!, /not a bottleneck file/],
  ];
  for (const [name, re] of reasons) {
    const line = r.stderr.split('\n').find((l) => l.includes(`Recomputing ${at(name)}:`));
    assert.ok(line, `no warning for ${name}:\n${r.stderr}`);
    assert.match(line, re);
  }
  const s = result2(out);
  assert.deepEqual([s.bottlenecks.computed, s.bottlenecks.cached], [4, TOTAL - 4]);
  for (const [name] of reasons) assert.ok(fs.readFileSync(at(name)).equals(originals.get(name)!), `${name} not restored`);
});

function result2(out: string) {
  return JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
}

test('a path that cannot be written is refused at the start, naming it, and nothing is half-written', async () => {
  const blocker = path.join(root, 'a-file');
  fs.writeFileSync(blocker, 'x');
  const cache = path.join(root, 'reference', 'bottlenecks');
  const cases: Array<[string, string[], RegExp]> = [
    ['bn', ['--bottleneck_dir', path.join(blocker, 'bottlenecks')], /^retrain: error: --bottleneck_dir .*a-file\/bottlenecks: .*a-file is a file, not a folder/],
    ['graph', ['--bottleneck_dir', cache, '--output_graph', path.join(blocker, 'graph')], /^retrain: error: --output_graph .*a-file\/graph: .*a-file is a file, not a folder/],
    ['summary', ['--bottleneck_dir', cache, '--summary_json', path.join(blocker, 'summary.json')], /^retrain: error: --summary_json .*a-file\/summary\.json: .*a-file is a file, not a folder/],
  ];
  const runs = await Promise.all(cases.map(([name, extra]) => runCliAsync('retrain', [...args(path.join(root, `writefail-${name}`)), ...extra])));
  runs.forEach((r, i) => {
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr.trim().split('\n').at(-1)!, cases[i]![2]);
    assert.ok(!hasStack(r.stderr), r.stderr);
  });
  // Refused before anything is written (a summary too: the run's paths are not trusted).
  assert.deepEqual(filesBelow(path.join(root, 'writefail-bn')), []);
  assert.deepEqual(filesBelow(path.join(root, 'writefail-graph')), []);
  assert.deepEqual(filesBelow(path.join(root, 'writefail-summary')), []);
  assert.equal(fs.readFileSync(blocker, 'utf8'), 'x');
});

test('a read-only output folder: one line naming the path, exit 1, no temp files', { skip: permissionUser().skip }, async () => {
  // Root ignores permissions, so as root the run is made as nobody.
  const out = path.join(root, 'readonly');
  fs.mkdirSync(out);
  fs.chmodSync(out, 0o555);
  const cache = path.join(root, 'ro-cache');
  fs.mkdirSync(cache, { mode: 0o777 });
  fs.chmodSync(cache, 0o777);
  const r = await runCliAsync(
    'retrain',
    [...args(out), '--bottleneck_dir', cache, '--summary_json', path.join(cache, 'summary.json'), '--output_graph', path.join(out, 'graph')],
    { HOME: root },
    permissionUser().user,
  );
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr.trim().split('\n').at(-1)!, /^retrain: error: --output_graph .*readonly\/graph: cannot write in .*readonly \(EACCES\)/);
  assert.ok(!hasStack(r.stderr));
  assert.deepEqual(fs.readdirSync(out), []);
});

/** A tiny tmpfs to fill up; needs root and a mount namespace that allows it. */
function tinyDisk(dir: string, bytes: number): (() => void) | string {
  if (!IS_ROOT) return 'needs root to mount a small tmpfs';
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    return `cannot mount a tmpfs here: ${String((err as Error).message).split('\n')[0]}`;
  }
  return () => execFileSync('umount', [dir]);
}

test('a full disk: one line naming the file, exit 1, no partial file left', async (t) => {
  const cacheDisk = path.join(root, 'full-cache');
  const graphDisk = path.join(root, 'full-graph');
  const unmountCache = tinyDisk(cacheDisk, 32 * 1024);
  if (typeof unmountCache === 'string') return t.skip(unmountCache);
  const unmountGraph = tinyDisk(graphDisk, 40 * 1024);
  try {
    if (typeof unmountGraph === 'string') return t.skip(unmountGraph);
    const out = path.join(root, 'full-out');
    const [cacheRun, graphRun] = await Promise.all([
      runCliAsync('retrain', [...args(out), '--bottleneck_dir', cacheDisk]),
      runCliAsync('retrain', [...args(out), '--bottleneck_dir', path.join(root, 'full-ok-cache'), '--output_graph', path.join(graphDisk, 'graph')]),
    ]);
    assert.equal(cacheRun.status, 1, cacheRun.stderr);
    assert.match(cacheRun.stderr.trim().split('\n').at(-1)!, /^retrain: error: cannot write .*full-cache\/.+\.bin: ENOSPC/);
    assert.equal(graphRun.status, 1, graphRun.stderr);
    assert.match(graphRun.stderr.trim().split('\n').at(-1)!, /^retrain: error: cannot write .*full-graph\/graph\/(group1-shard1of1\.bin|model\.json): ENOSPC/);
    for (const r of [cacheRun, graphRun]) assert.ok(!hasStack(r.stderr), r.stderr);
    // Every bottleneck that made it is whole and trusted later; no temp file is left.
    const kept = filesBelow(cacheDisk);
    assert.ok(kept.length > 0 && kept.every((f) => f.endsWith('.bin')), kept.join(' '));
    assert.deepEqual(filesBelow(graphDisk), []);
    // The failed export's summary says why.
    assert.match(JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).error.message, /ENOSPC/);
  } finally {
    if (typeof unmountGraph === 'function') unmountGraph();
    unmountCache();
  }
});
