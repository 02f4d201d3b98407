/**
 * The README's quick start, run as written, and what makes it work offline: the
 * built-in module (found from the package, sha256-checked), the module catalog and
 * the sample photos in fixtures/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { RetrainError, UsageError } from '../src/errors.js';
import { MemoryLogger } from '../src/log.js';
import { BUILTIN_MODELS_DIR } from '../src/module/builtin.js';
import { BUILTIN_MODULE, CATALOG, catalogEntry, closestModuleNames, listModules, resolveNamedModule, type NamedModuleOptions } from '../src/module/catalog.js';
import { cacheEntryDir } from '../src/module/download.js';
import { DEFAULT_MODULE, loadFeatureExtractor } from '../src/module/index.js';
import { createImageLists } from '../src/dataset/index.js';
import { REPO_ROOT, cliEnv, makeGraphModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

const SAMPLE = path.join(REPO_ROOT, 'fixtures', 'flower_photos');
const BUILTIN_DIR = path.join(REPO_ROOT, 'models', 'mobilenet_v2_100_224_feature_vector');

/** README's fenced code blocks, comments and blank lines dropped. */
function readmeBlocks(): string[][] {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  return [...readme.matchAll(/```(?:sh|bash|console)?\n([\s\S]*?)```/g)].map((m) => m[1]!.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean));
}

/** The contributors' quick start (the first block that runs npx retrain): its install-and-run line and its test line. */
function readmeQuickStart(): { install: string; run: string; test: string } {
  const lines = readmeBlocks().find((b) => b.some((l) => l.includes('npx retrain')));
  assert.ok(lines, 'README.md has a block that runs npx retrain');
  const first = lines.find((l) => l.includes('npx retrain'))!;
  const parts = first.split('&&').map((s) => s.trim());
  const run = parts.find((p) => p.startsWith('npx retrain'))!;
  const testLine = lines.find((l) => /^npm (run )?test\b/.test(l));
  assert.ok(testLine, "the quick start gives the test command");
  return { install: parts[0]!, run, test: testLine };
}

test("README: installing comes first, for users (npm install -g, then retrain); the clone's quick start after", () => {
  const blocks = readmeBlocks();
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string };
  assert.equal(blocks[0]![0], `npm install -g ${pkg.name}`);
  assert.match(blocks[0]![1]!, /^retrain --image_dir /);
  const qs = blocks.findIndex((b) => b.some((l) => l.startsWith('npm ci')));
  assert.ok(qs > 0, 'the npm ci quick start comes after the install');
});

test('README quick start: the sample gives every class training images and a non-empty test set', async () => {
  const lists = await createImageLists(SAMPLE, { testingPercentage: 10, validationPercentage: 10 }, new MemoryLogger());
  assert.equal(lists.classes.length, 5);
  for (const c of lists.classes) assert.ok(c.training.length >= 1, `class ${c.dir} has training images`);
  assert.ok(lists.classes.reduce((n, c) => n + c.testing.length, 0) >= 1, 'the test set is not empty');
  assert.ok(lists.classes.reduce((n, c) => n + c.validation.length, 0) >= 1, 'the validation set is not empty');
  // Every photo is credited in the attribution file, as CC-BY asks.
  const credits = fs.readFileSync(path.join(SAMPLE, 'LICENSE.txt'), 'utf8');
  for (const c of lists.classes) {
    for (const f of [...c.training, ...c.validation, ...c.testing]) assert.ok(credits.includes(`${c.dir}/${f} CC-BY`), `${c.dir}/${f} is credited`);
  }
});

test('README quick start runs as written, offline, and label-image reads the model it writes', () => {
  const qs = readmeQuickStart();
  assert.equal(qs.install, 'npm ci', 'the quick start installs with npm ci');
  assert.equal(qs.test, 'npm test', 'CI runs the test command the README gives');
  // One private TMPDIR for both runs: the defaults (bottleneck_dir, output_graph…) live there.
  const env = cliEnv();
  const tmp = env['TMPDIR']!;
  // A download would create the module cache folder before its first request: it must never appear.
  const offline = { ...env, TFHUB_CACHE_DIR: path.join(tmp, 'no-modules') };
  const r = spawnSync('sh', ['-c', qs.run], { cwd: REPO_ROOT, env: offline, encoding: 'utf8', timeout: 10 * 60 * 1000 });
  assert.equal(r.status, 0, `${qs.run} failed:\n${r.stderr.slice(-3000)}`);
  assert.match(r.stderr, /Using the built-in module mobilenet_v2_100_224_builtin .*no download/);
  assert.match(r.stderr, /Bottlenecks: 100 computed, 0 cached, 0 failed/);
  const acc = /Final test accuracy = ([\d.]+)% \(N=(\d+)\)/.exec(r.stderr);
  assert.ok(acc, 'the run prints the final test accuracy');
  assert.ok(Number(acc[2]) >= 1);
  // Only the module's ONNX Runtime conversion is cached there (<module_cache_dir>/onnx).
  const cacheDir = path.join(tmp, 'no-modules');
  assert.deepEqual(fs.existsSync(cacheDir) ? fs.readdirSync(cacheDir).filter((n) => n !== 'onnx') : [], [], 'nothing was downloaded');

  const graph = path.join(tmp, 'output_graph');
  const labelsFile = path.join(tmp, 'output_labels.txt');
  assert.deepEqual(fs.readFileSync(labelsFile, 'utf8').trim().split('\n'), ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);
  const photo = path.join(SAMPLE, 'sunflowers', fs.readdirSync(path.join(SAMPLE, 'sunflowers')).sort()[0]!);
  const li = runCli('label-image', ['--graph', graph, '--labels', labelsFile, '--image', photo]);
  assert.equal(li.status, 0, li.stderr);
  const rows = li.stdout.trim().split('\n').map((l) => l.split(' '));
  assert.equal(rows.length, 5);
  let sum = 0;
  for (const [label, score] of rows) {
    assert.ok(['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'].includes(label!), `label ${label}`);
    sum += Number(score);
  }
  assert.ok(Math.abs(sum - 1) < 1e-3, `the five scores are a distribution (sum ${sum})`);

  // The second run takes every bottleneck from the cache (few steps: only the cache is checked here).
  const again = spawnSync('sh', ['-c', `${qs.run} --how_many_training_steps 10`], { cwd: REPO_ROOT, env: offline, encoding: 'utf8', timeout: 10 * 60 * 1000 });
  assert.equal(again.status, 0, again.stderr.slice(-3000));
  assert.match(again.stderr, /Bottlenecks: 0 computed, 100 cached, 0 failed/);
});

test('module names: an unknown short name exits 2 with one line naming the closest entries', () => {
  const r = runCli('retrain', ['--image_dir', SAMPLE, '--tfhub_module', 'mobilenet_v3']);
  assert.equal(r.status, 2);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^retrain: error: --tfhub_module mobilenet_v3 is not a known module name; closest: mobilenet_v3_large_100_224, mobilenet_v3_small_100_224,/);
  assert.match(lines[0]!, /a local model folder or a TF Hub\/Kaggle URL also works/);
  assert.deepEqual(closestModuleNames('v2_builtin').slice(0, 1), [BUILTIN_MODULE]);
  // Paths and URLs are never taken for names.
  const log = new MemoryLogger();
  for (const spec of ['./nothere', 'nothere/model.json', 'model.json', 'https://example.com/m']) {
    assert.equal(resolveNamedModule<NamedModuleOptions>({ spec, log }).spec, spec);
  }
  assert.throws(() => resolveNamedModule<NamedModuleOptions>({ spec: 'nothere', log }), UsageError);
});

test('module names: an existing folder of a catalog name stays the local module', () => {
  const cwd = process.cwd();
  const dir = tempDir();
  try {
    process.chdir(dir);
    makeGraphModel(path.join(dir, 'mobilenet_v2_100_224'));
    const r = resolveNamedModule<NamedModuleOptions>({ spec: 'mobilenet_v2_100_224', log: new MemoryLogger() });
    assert.equal(r.spec, 'mobilenet_v2_100_224');
    assert.equal(r.inputRange, undefined);
  } finally {
    process.chdir(cwd);
  }
});

test('--list_modules prints the catalog: which is built in (the default) and which are downloaded', () => {
  const cache = tempDir();
  const v3 = catalogEntry('mobilenet_v3_small_100_224');
  assert.ok(v3 && v3.kind === 'download');
  makeGraphModel(cacheEntryDir(cache, v3.url));
  const r = runCli('retrain', ['--list_modules', '--module_cache_dir', cache]);
  assert.equal(r.status, 0, r.stderr);
  const rows = new Map(
    r.stdout
      .split('\n')
      .filter((l) => l.startsWith('mobilenet_'))
      .map((l) => [l.split(/\s+/)[0]!, l]),
  );
  assert.deepEqual([...rows.keys()], CATALOG.map((e) => e.name));
  assert.match(rows.get(BUILTIN_MODULE)!, /\(default\)\s+built in\s+224x224 \[0,1\]\s+.*models\/mobilenet_v2_100_224_feature_vector$/);
  assert.match(rows.get('mobilenet_v3_small_100_224')!, /\bdownloaded\s+224x224 \[0,1\]\s+https:\/\/tfhub\.dev\//);
  assert.match(rows.get('mobilenet_v2_100_224')!, /not downloaded/);
  assert.match(r.stdout, new RegExp(`cached in ${cache.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  // The library returns the same facts as data.
  const listed = listModules(cache);
  assert.deepEqual(listed.filter((m) => m.available).map((m) => m.name), [BUILTIN_MODULE, 'mobilenet_v3_small_100_224']);
});

test('the built-in module is found from the package and is the default', () => {
  assert.equal(DEFAULT_MODULE, BUILTIN_MODULE);
  assert.equal(fs.realpathSync(BUILTIN_MODELS_DIR), fs.realpathSync(path.join(REPO_ROOT, 'models')));
  const r = resolveNamedModule<NamedModuleOptions>({ spec: BUILTIN_MODULE, log: new MemoryLogger() });
  assert.equal(r.spec, BUILTIN_DIR);
  assert.deepEqual([r.inputHeight, r.inputWidth, r.inputRange], [224, 224, [0, 1]]);
});

/** A copy of the installed package (code, bin, models) beside the real node_modules. */
function copyPackage(): string {
  const pkg = tempDir('retrain-pkg-');
  for (const p of ['package.json', 'bin', 'models', 'protos', path.join('dist', 'src')]) {
    fs.cpSync(path.join(REPO_ROOT, p), path.join(pkg, p), { recursive: true });
  }
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  return pkg;
}

test('a damaged built-in module (one byte of a shard changed) stops the run with one clear error', () => {
  const pkg = copyPackage();
  const shard = path.join(pkg, 'models', 'mobilenet_v2_100_224_feature_vector', 'group1-shard2of3.bin');
  const fd = fs.openSync(shard, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, 123_457);
  b[0] = b[0]! ^ 0x01;
  fs.writeSync(fd, b, 0, 1, 123_457);
  fs.closeSync(fd);

  const env = cliEnv();
  const r = spawnSync(process.execPath, [path.join(pkg, 'bin', 'retrain.js'), '--image_dir', SAMPLE], { env, encoding: 'utf8', timeout: 5 * 60 * 1000 });
  assert.equal(r.status, 1, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('retrain: error:'));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, /the built-in module mobilenet_v2_100_224_builtin is damaged: .*group1-shard2of3\.bin has sha256 [0-9a-f]{64}, not [0-9a-f]{64}; reinstall retrain-ts/);
  assert.doesNotMatch(r.stderr, /Final test accuracy|Traceback|\n\s+at /);
  assert.equal(fs.existsSync(path.join(env['TMPDIR']!, 'output_graph')), false, 'no model is written');
  assert.equal(fs.existsSync(path.join(env['TMPDIR']!, 'bottleneck')), false, 'no bottleneck is cached');

  // A missing shard is reported the same way.
  fs.rmSync(shard);
  const models = path.join(pkg, 'models');
  assert.throws(
    () => resolveNamedModule<NamedModuleOptions>({ spec: BUILTIN_MODULE, log: new MemoryLogger() }, models),
    (e: Error) => e instanceof RetrainError && !(e instanceof UsageError) && /built-in module .* is incomplete: cannot read .*group1-shard2of3\.bin/.test(e.message),
  );
});

test("the built-in module's identity differs from the TF Hub URL's, even for identical bytes", async () => {
  await useCpuBackend();
  // A download cache whose TF Hub entry holds the very same files: the worst case for mixing.
  const cache = tempDir();
  const hub = catalogEntry('mobilenet_v2_100_224');
  assert.ok(hub && hub.kind === 'download');
  fs.cpSync(BUILTIN_DIR, cacheEntryDir(cache, hub.url), { recursive: true });
  const log = new MemoryLogger();
  const builtin = await loadFeatureExtractor({ spec: BUILTIN_MODULE, cacheDir: cache, log });
  const viaName = await loadFeatureExtractor({ spec: 'mobilenet_v2_100_224', cacheDir: cache, log });
  const viaUrl = await loadFeatureExtractor({ spec: hub.url, cacheDir: cache, log });
  try {
    assert.equal(viaName.info.spec, hub.url, 'a name resolves to its URL');
    assert.equal(viaName.info.name, viaUrl.info.name, 'a name and its URL share their bottleneck cache');
    assert.equal(viaName.info.id, viaUrl.info.id);
    assert.notEqual(builtin.info.spec, viaUrl.info.spec);
    assert.notEqual(builtin.info.name, viaUrl.info.name, 'bottleneck file names never mix');
    assert.match(builtin.info.name, /^mobilenet_v2_100_224_feature_vector-[0-9a-f]{8}$/);
    assert.match(viaUrl.info.name, /^https~tfhub\.dev~/);
    assert.equal(builtin.info.bottleneckSize, 1280);
  } finally {
    for (const ex of [builtin, viaName, viaUrl]) ex.dispose();
  }
});
