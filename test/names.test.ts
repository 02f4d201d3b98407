/**
 * Issue 16 §5: file names and odd files, through the real CLIs. Names that are not
 * UTF-8 or are very long work; names cannot break or forge log lines; link loops,
 * huge files and swapped cache files are refused with a reason, and the run goes on.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { MAX_CACHE_NAME_BYTES } from '../src/bottleneck/format.js';
import { nameBytes, nameFromBytes } from '../src/util/fsname.js';
import { REPO_ROOT, cliEnv, makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';
import { filesBelow, hasStack, noisyRgb, runCliAsync } from './helpers/faults.js';

let root = '';
let images = '';
let model = '';
let red = '';
/** `caf\xe9.png`: Latin-1 bytes, not UTF-8. */
const CAFE = Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from('.png')]);
const LONG = `${'x'.repeat(230)}.png`;
const LONG_UTF8 = `${'é'.repeat(110)}.png`;
const FORGED = 'evil\nWARNING:retrain:forged line\x1b[31m.png';

before(async () => {
  root = tempDir('retrain-names-');
  images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green'], perClass: 8 });
  model = await makeLayersModel(path.join(root, 'model'));
  red = path.join(images, 'red');
  const photo = fs.readFileSync(path.join(red, 'red_000.png'));
  fs.writeFileSync(Buffer.concat([Buffer.from(red + '/'), CAFE]), photo);
  fs.writeFileSync(path.join(red, LONG), photo);
  fs.writeFileSync(path.join(red, LONG_UTF8), photo);
  fs.writeFileSync(path.join(red, FORGED), 'not an image');
  fs.symlinkSync('loop.png', path.join(red, 'loop.png'));
  fs.symlinkSync('loopdir', path.join(images, 'loopdir'));
  // Sparse: 1.9 GB long, a few KB on disk. One that is all zeros under the size limit, too.
  for (const [name, size] of [['huge.jpg', 1.9e9], ['zeros.jpg', 200e6]] as const) {
    const fd = fs.openSync(path.join(red, name), 'w');
    fs.ftruncateSync(fd, size);
    fs.closeSync(fd);
  }
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

function args(out: string, extra: string[] = []): string[] {
  return [
    '--image_dir', images, '--tfhub_module', model, '--bottleneck_dir', path.join(out, 'bn'), '--output_graph', path.join(out, 'graph'),
    '--output_labels', path.join(out, 'labels.txt'), '--summary_json', path.join(out, 'summary.json'), '--summaries_dir', path.join(out, 'logs'),
    '--how_many_training_steps', '5', '--backend', 'cpu', '--num_workers', '0', '--validation_percentage', '0', '--testing_percentage', '0', ...extra,
  ];
}

test('names read as bytes map back to the same bytes, whatever the bytes', () => {
  for (let seed = 1; seed < 300; seed++) {
    const b = Buffer.from(Array.from({ length: seed % 17 }, (_, i) => (seed * 131 + i * 71) % 256));
    assert.ok(nameBytes(nameFromBytes(b)).equals(b), b.toString('hex'));
  }
  assert.equal(nameFromBytes(Buffer.from('ünïcödé 写真 😀.png')), 'ünïcödé 写真 😀.png');
  assert.equal(nameFromBytes(CAFE), 'caf\udce9.png');
});

test('retrain: a name that is not UTF-8 and long names are used; a newline cannot forge a log line; link loops and huge files are skipped with a reason', async () => {
  const out = path.join(root, 'run');
  const r = await runCliAsync('retrain', args(out));
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!hasStack(r.stderr), r.stderr);
  // Every log line is one of ours: the name's newline is escaped, so no forged line starts.
  for (const line of r.stderr.trimEnd().split('\n')) assert.match(line, /^(INFO|WARNING):retrain:/, line);
  assert.doesNotMatch(r.stderr, /^WARNING:retrain:forged/m);
  assert.doesNotMatch(r.stderr, /\x1b/);
  assert.match(r.stderr, /Skipping .*evil\\nWARNING:retrain:forged line\\x1b\[31m\.png: not an image sharp can decode/);
  assert.match(r.stderr, /Skipping .*loopdir: cannot read: a symlink loop/);
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  const failed = new Map<string, string>(summary.bottlenecks.failed.map((f: { file: string; reason: string }) => [path.basename(f.file), f.reason]));
  assert.deepEqual([...failed.keys()].sort(), [FORGED, 'huge.jpg', 'loop.png', 'zeros.jpg'].sort());
  assert.match(failed.get('loop.png')!, /symlink loop/);
  assert.match(failed.get('huge.jpg')!, /1812 MB, over the 256 MB limit for an image/);
  assert.match(failed.get('zeros.jpg')!, /unknown file header/);
  // 8 plain images, café, and the two long names.
  assert.equal(summary.bottlenecks.computed, 8 + 8 + 3);

  const cache = filesBelow(path.join(out, 'bn'));
  for (const f of cache) assert.ok(Buffer.byteLength(path.basename(f)) <= MAX_CACHE_NAME_BYTES, f);
  // Short names keep retrain.py's `<image>_<module>.bin`, so existing caches stay valid.
  assert.ok(cache.some((f) => /^red\/red_000\.png_model[^/]*\.bin$/.test(f)), cache.join('\n'));
  assert.ok(cache.some((f) => /^red\/caf_\.png_model.*~[0-9a-f]{16}\.bin$/.test(f)), cache.join('\n'));

  const again = await runCliAsync('retrain', args(out));
  assert.equal(again.status, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /Recomputing/);
  const s2 = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.deepEqual([s2.bottlenecks.cached, s2.bottlenecks.computed], [19, 0]);
});

/** Runs label-image with `caf\xe9.png` as a raw-byte argument, as a shell passes it. */
function labelCafe(graph: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn('bash', ['-c', `exec "$0" "$1" --graph "$2" --image "$(printf '%s/caf\\xe9.png' "$3")" "$3"`, process.execPath, path.join(REPO_ROOT, 'bin', 'label-image.js'), graph, red], {
    env: cliEnv({ CI: '1' }),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

test('label-image: a name that is not UTF-8 works as an argument and inside a folder; odd files are skipped with a reason', async () => {
  // The model of the test above.
  const l = await labelCafe(path.join(root, 'run', 'graph'));
  // Exit 1: the folder holds files that are not images; each is named once, in one line.
  assert.equal(l.status, 1, l.stderr);
  assert.ok(!hasStack(l.stderr), l.stderr);
  const blocks = l.stdout.trim().split('\n\n');
  const cafe = blocks.filter((b) => b.split('\n')[0]!.endsWith('/caf\\xe9.png'));
  assert.equal(cafe.length, 2, l.stdout);
  for (const b of cafe) assert.match(b.split('\n')[1]!, /^(red|green) \d/);
  assert.ok(blocks.some((b) => b.startsWith(path.join(red, LONG))));
  for (const line of l.stderr.trimEnd().split('\n')) assert.match(line, /^WARNING:label-image:Skipping /, line);
  assert.match(l.stderr, /loop\.png: cannot read: a symlink loop/);
  assert.match(l.stderr, /huge\.jpg: file is 1812 MB, over the 256 MB limit/);
  assert.match(l.stderr, /evil\\nWARNING:retrain:forged/);
});

test('a cache file swapped for another image\'s, with the same size and mtime, is not trusted', async () => {
  const dir = path.join(root, 'swap-images');
  const out = path.join(root, 'swap');
  fs.mkdirSync(path.join(dir, 'a'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'b'), { recursive: true });
  // Uncompressed TIFFs of one size: the same byte count whatever the pixels.
  for (let i = 0; i < 4; i++) {
    await noisyRgb(40, 30, [200, 40, 40], i + 1).tiff({ compression: 'none' }).toFile(path.join(dir, 'a', `a${i}.tif`));
    await noisyRgb(40, 30, [40, 40, 200], i + 9).tiff({ compression: 'none' }).toFile(path.join(dir, 'b', `b${i}.tif`));
  }
  const a0 = path.join(dir, 'a', 'a0.tif');
  const b0 = path.join(dir, 'b', 'b0.tif');
  assert.equal(fs.statSync(a0).size, fs.statSync(b0).size);
  const when = new Date('2024-01-02T03:04:05Z');
  fs.utimesSync(a0, when, when);
  fs.utimesSync(b0, when, when);
  const swapArgs = ['--image_dir', dir, '--tfhub_module', model, '--bottleneck_dir', path.join(out, 'bn'), '--bottlenecks_only', '--backend', 'cpu', '--num_workers', '0', '--summary_json', path.join(out, 's.json')];
  const first = await runCliAsync('retrain', swapArgs);
  assert.equal(first.status, 0, first.stderr);
  const cache = filesBelow(path.join(out, 'bn'));
  const cacheA = path.join(out, 'bn', cache.find((f) => f.startsWith('a/a0.tif_'))!);
  const cacheB = path.join(out, 'bn', cache.find((f) => f.startsWith('b/b0.tif_'))!);
  const ownB = fs.readFileSync(cacheB);
  fs.copyFileSync(cacheA, cacheB);
  const r = await runCliAsync('retrain', swapArgs);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /Recomputing .*b0\.tif_.*\.bin: made from other image content/);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 's.json'), 'utf8')).bottlenecks.computed, 1);
  assert.ok(fs.readFileSync(cacheB).equals(ownB), 'the recomputed file is b0\'s own');
});
