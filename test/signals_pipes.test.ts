/**
 * Issue 16 §3: SIGTERM stops a run as Ctrl-C does (exit 143); a signal during the
 * export lets it finish whole, then exits 130/143; a reader that goes away
 * (`| head`) never kills a run, and label-image then stops quietly, as cat does.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { HEADER_BYTES } from '../src/bottleneck/format.js';
import { REPO_ROOT, cliEnv, makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';
import { filesBelow, hasStack, makeSlowLayersModel, runCliAsync, startCli, waitFor } from './helpers/faults.js';

const TOTAL = 3 * 20;
let root = '';
let images = '';
let slow = '';
let fast = '';

before(async () => {
  root = tempDir('retrain-signals-');
  images = await makeImageDir(path.join(root, 'images'), { perClass: 20, width: 60, height: 45, format: 'jpg' });
  slow = await makeSlowLayersModel(path.join(root, 'slow'));
  fast = await makeLayersModel(path.join(root, 'fast'));
  // The fast module's bottlenecks, cached once: those runs get to the export quickly.
  const r = await runCliAsync('retrain', [...args(path.join(root, 'warm'), fast), '--bottlenecks_only']);
  assert.equal(r.status, 0, r.stderr);
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

function args(out: string, module: string, extra: string[] = []): string[] {
  return [
    '--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', module === fast ? path.join(root, 'fast-bn') : path.join(out, 'bn'),
    '--output_graph', path.join(out, 'graph'),
    '--output_labels', path.join(out, 'labels.txt'), '--summaries_dir', path.join(out, 'logs'), '--how_many_training_steps', '10',
    '--backend', 'cpu', '--bottleneck_batch_size', '2', ...extra,
  ];
}

const finished = (out: string) => filesBelow(path.join(out, 'bn')).filter((f) => f.endsWith('.bin'));

/** A complete model: model.json and shards holding exactly the bytes the manifest declares. */
function assertCompleteModel(dir: string): void {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const bytes = { float32: 4, int32: 4 } as Record<string, number>;
  for (const g of json.weightsManifest) {
    const want = g.weights.reduce((s: number, w: { shape: number[]; dtype: string }) => s + w.shape.reduce((a, b) => a * b, 1) * bytes[w.dtype]!, 0);
    const got = g.paths.reduce((s: number, p: string) => s + fs.statSync(path.join(dir, p)).size, 0);
    assert.equal(got, want, `${dir}: shards hold ${got} bytes, the manifest declares ${want}`);
  }
}

test('SIGTERM during bottleneck creation: one line, finished cache files kept whole, exit 143', async () => {
  const out = path.join(root, 'term');
  const run = startCli('retrain', args(out, slow));
  await waitFor(() => finished(out).length >= 4 || run.child.exitCode !== null, 60_000, 'bottleneck files');
  assert.equal(run.child.exitCode, null, run.stderr());
  run.child.kill('SIGTERM');
  const r = await run.done;
  assert.equal(r.status, 143, r.stderr);
  assert.ok(!hasStack(r.stderr), r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('retrain: error:'));
  assert.equal(errors.length, 1, r.stderr);
  const m = /^retrain: error: interrupted: (\d+) new bottleneck files saved in .*, (\d+) still to compute; run the same command again to continue$/.exec(errors[0]!);
  assert.ok(m, r.stderr);
  assert.equal(finished(out).length, Number(m[1]));
  assert.deepEqual(filesBelow(path.join(out, 'bn')).filter((f) => !f.endsWith('.bin')), [], 'temp files left behind');
  assert.ok(!fs.existsSync(path.join(out, 'graph')));
  assertWholeCacheFiles(out);
});

/** Every cache file under its final name is whole: its header's value count matches its size. */
function assertWholeCacheFiles(out: string): void {
  for (const f of finished(out)) {
    const b = fs.readFileSync(path.join(out, 'bn', f));
    assert.equal(b.length, HEADER_BYTES + b.readUInt32LE(8) * 4, f);
  }
}

test('a second signal quits at once, and leaves no cache file that is trusted later', async () => {
  const out = path.join(root, 'twice');
  const run = startCli('retrain', args(out, slow));
  await waitFor(() => finished(out).length >= 2 || run.child.exitCode !== null, 60_000, 'bottleneck files');
  run.child.kill('SIGTERM');
  run.child.kill('SIGTERM');
  const r = await run.done;
  assert.equal(r.status, 143, r.stderr);
  assert.ok(!hasStack(r.stderr), r.stderr);
  assertWholeCacheFiles(out);
});

for (const [sig, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`${sig} during the export: the export finishes whole, then the run stops with exit ${status}`, async () => {
    const out = path.join(root, `export-${sig}`);
    const run = startCli('retrain', args(out, fast));
    // The export starts right after this line: signal at once, not at the next poll.
    let sent = false;
    run.child.stderr!.on('data', () => {
      if (!sent && /Final test accuracy/.test(run.stderr())) {
        sent = true;
        run.child.kill(sig);
      }
    });
    const r = await run.done;
    assert.ok(sent, r.stderr);
    assert.equal(r.status, status, r.stderr);
    assert.ok(!hasStack(r.stderr), r.stderr);
    const last = r.stderr.trim().split('\n').at(-1)!;
    assert.match(last, /^retrain: error: interrupted (during the export: the export was finished first, so .*graph holds the new model; the report was not written|after the model was exported: the run had finished whole)$/);
    assertCompleteModel(path.join(out, 'graph'));
    assert.equal(fs.readFileSync(path.join(out, 'labels.txt'), 'utf8'), 'blue\ngreen\nred\n');
  });
}

/** Runs `node <bin> ARGS 2>&1 | head -n` (or stdout only) in bash; returns the command's own exit status, head's lines and its stderr. */
function throughHead(bin: string, argv: string[], lines: number, both: boolean): Promise<{ status: number; head: string; stderr: string }> {
  const errFile = path.join(root, `stderr-${Math.random().toString(36).slice(2)}.txt`);
  const redirect = both ? '2>&1' : '2>"$ERR"';
  const child = spawn('bash', ['-c', `"$@" ${redirect} | head -${lines}; exit \${PIPESTATUS[0]}`, 'bash', process.execPath, path.join(REPO_ROOT, 'bin', bin), ...argv], {
    env: cliEnv({ ERR: errFile }),
  });
  let head = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (head += d));
  return new Promise((resolve) =>
    child.on('close', (status) => resolve({ status: status!, head, stderr: both ? '' : fs.readFileSync(errFile, 'utf8') })),
  );
}

test('retrain ... 2>&1 | head -2: the closed pipe does not kill the run, which ends with a model', async () => {
  const out = path.join(root, 'head');
  const r = await throughHead('retrain.js', args(out, fast), 2, true);
  assert.equal(r.head.trimEnd().split('\n').length, 2, r.head);
  assert.equal(r.status, 0, r.head);
  assertCompleteModel(path.join(out, 'graph'));
  assert.equal(fs.readFileSync(path.join(out, 'labels.txt'), 'utf8'), 'blue\ngreen\nred\n');
});

test('label-image ... | head -3 stops quietly, as cat does: exit 141, nothing on stderr', async () => {
  const out = path.join(root, 'head');
  assert.ok(fs.existsSync(path.join(out, 'graph', 'model.json')), 'needs the model of the test above');
  const r = await throughHead('label-image.js', ['--graph', path.join(out, 'graph'), '--image', images], 3, false);
  assert.equal(r.head.split('\n').length - 1, 3, r.head);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 141);
});
