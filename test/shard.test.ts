import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { shardOf } from '../src/bottleneck/shard.js';
import { defaultRetrainOptions, validateRetrainOptions } from '../src/flags/retrain.js';
import { UsageError } from '../src/errors.js';
import { REPO_ROOT, makeGraphModel, makeImageDir, runCli, tempDir } from './helpers/fixtures.js';

let root: string;
let images: string;
let model: string;

before(async () => {
  root = tempDir();
  images = await makeImageDir(path.join(root, 'images'), { perClass: 16 });
  model = makeGraphModel(path.join(root, 'model'));
});

/** Runs retrain in a child process without waiting, so several run side by side. */
function retrainAsync(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'retrain.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

function summary(file: string): { bottlenecks: { computed: number; cached: number } } {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

test('shards partition the images: each in exactly one, none empty', () => {
  const names = Array.from({ length: 300 }, (_, i) => `img_${i}.jpg`);
  const counts = [0, 0, 0];
  for (const n of names) counts[shardOf('cls', n, 3)]!++;
  assert.equal(counts.reduce((a, b) => a + b), 300);
  for (const c of counts) assert.ok(c > 60, `unbalanced shards: ${counts}`);
  // The class folder is part of the key: the same name in two classes may land apart.
  assert.ok(names.some((n) => shardOf('a', n, 3) !== shardOf('b', n, 3)));
});

test('shard flags are checked', () => {
  const check = (shardIndex: number, shardCount: number, bottlenecksOnly: boolean) =>
    validateRetrainOptions({ ...defaultRetrainOptions(), imageDir: 'x', shardIndex, shardCount, bottlenecksOnly });
  assert.doesNotThrow(() => check(0, 1, false));
  assert.doesNotThrow(() => check(2, 3, true));
  assert.throws(() => check(3, 3, true), UsageError);
  assert.throws(() => check(-1, 3, true), UsageError);
  assert.throws(() => check(0, 0, true), UsageError);
  assert.throws(() => check(0, 2, false), (e: unknown) => e instanceof UsageError && /--bottlenecks_only/.test(e.message));
});

test('two shard processes side by side fill the cache; a normal run then computes nothing', async () => {
  const bn = path.join(root, 'bottlenecks');
  const common = ['--image_dir', images, '--tfhub_module', model, '--bottleneck_dir', bn, '--backend', 'cpu', '--bottleneck_batch_size', '4'];
  const shards = await Promise.all(
    [0, 1].map((i) =>
      retrainAsync([...common, '--bottlenecks_only', '--shard_index', String(i), '--shard_count', '2', '--summary_json', path.join(root, `shard${i}.json`)]),
    ),
  );
  shards.forEach((r, i) => assert.equal(r.status, 0, `shard ${i}: ${r.stderr}`));
  const computed = [0, 1].map((i) => summary(path.join(root, `shard${i}.json`)).bottlenecks.computed);
  assert.equal(computed[0]! + computed[1]!, 48);
  assert.ok(computed.every((c) => c > 0), `a shard computed nothing: ${computed}`);

  const out = path.join(root, 'summary.json');
  const r = runCli('retrain', [
    ...common,
    '--how_many_training_steps', '5',
    '--output_graph', path.join(root, 'out'),
    '--output_labels', path.join(root, 'labels.txt'),
    '--summary_json', out,
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(summary(out).bottlenecks, { computed: 0, cached: 48, failed: [] });
});

test('--shard_count without --bottlenecks_only is a usage error', () => {
  const r = runCli('retrain', ['--image_dir', images, '--tfhub_module', model, '--shard_index', '0', '--shard_count', '2']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--bottlenecks_only/);
});

test('--num_workers below 0 is a usage error', () => {
  const r = runCli('retrain', ['--image_dir', images, '--tfhub_module', model, '--num_workers', '-1']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--num_workers -1/);
});
