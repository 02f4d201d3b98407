/**
 * Installed the way command-line tools are: `npm pack`, then `npm install -g` of the
 * tarball into a temporary prefix, with every host but the npm registry unreachable
 * (a local proxy refuses them and records who asked). The npm cache `npm ci` filled
 * is reused (--prefer-offline).
 *
 * 1. The plain install succeeds although onnxruntime-node's postinstall cannot reach
 *    NuGet (npm ≤ 11 runs it): npm leaves the optional engine out, and the first run
 *    says so in one line, with the command that restores it, then trains on wasm.
 * 2. That command installs the engine, fetching nothing outside the registry; the
 *    installed retrain runs the bundled sample on onnxruntime and the installed
 *    label-image classifies with the result (one image from stdin).
 * 3. The GPU opt-in asks NuGet for the CUDA provider and fails with npm's error.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, tempDir } from './helpers/fixtures.js';
import { denyingProxy, npmRegistryHost, offlineEnv, run, type DenyingProxy } from './helpers/npm.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const NUGET = /(^|\.)nuget\.org(:\d+)?$/;

let work: string;
let proxy: DenyingProxy;
let env: NodeJS.ProcessEnv;
let tarball: string;
const prefix = () => path.join(work, 'prefix');
const installed = () => path.join(prefix(), 'lib', 'node_modules', pkg.name);
const bin = (name: string) => path.join(prefix(), 'bin', name);

before(async () => {
  work = tempDir('retrain-global-');
  proxy = await denyingProxy();
  env = { ...offlineEnv(process.env, proxy, npmRegistryHost()), TMPDIR: work, TFHUB_CACHE_DIR: path.join(work, 'modules') };
  // dist/ is already built (npm test compiles first): pack it as is.
  const r = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { env, cwd: REPO_ROOT });
  assert.equal(r.status, 0, r.stderr);
  tarball = path.join(work, `${pkg.name}-${pkg.version}.tgz`);
  assert.ok(fs.existsSync(tarball), `npm pack wrote ${tarball}`);
});

after(async () => {
  await proxy?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function npmInstallGlobal(extraEnv: NodeJS.ProcessEnv = {}) {
  return run('npm', ['install', '-g', '--prefix', prefix(), '--prefer-offline', '--no-audit', '--no-fund', tarball], { env: { ...env, ...extraEnv }, cwd: work, timeoutMs: 8 * 60 * 1000 });
}

function retrainArgs(imageDir: string, out: string, steps: number): string[] {
  fs.mkdirSync(out, { recursive: true });
  return [
    '--image_dir', imageDir,
    '--how_many_training_steps', String(steps),
    '--bottleneck_dir', path.join(out, 'bottlenecks'),
    '--output_graph', path.join(out, 'graph'),
    '--output_labels', path.join(out, 'labels.txt'),
    '--summary_json', path.join(out, 'summary.json'),
    '--summaries_dir', path.join(out, 'logs'),
    '--skip_dataset_check',
  ];
}

function engineOf(out: string): { name: string } {
  return (JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as { bottlenecks: { engine: { name: string } } }).bottlenecks.engine;
}

test('npm install -g of the packed tarball works offline: without the native engine, one line says how to restore it, and the run goes on with wasm; that command gives onnxruntime', async (t) => {
  // 1. The plain install.
  const plain = await npmInstallGlobal();
  assert.equal(plain.status, 0, `npm install -g failed:\n${plain.stderr.slice(-3000)}`);
  assert.doesNotMatch(plain.stdout + plain.stderr, /npm (error|ERR!)/);
  const version = await run(bin('retrain'), ['--version'], { env });
  assert.equal(version.stdout.trim(), pkg.version);
  assert.equal((await run(bin('label-image'), ['--version'], { env })).stdout.trim(), pkg.version);

  // Without the engine (npm ≤ 11 ran its CUDA download, which failed): one line, then wasm.
  const small = path.join(work, 'small');
  for (const c of ['daisy', 'roses']) {
    fs.mkdirSync(path.join(small, c), { recursive: true });
    const dir = path.join(installed(), 'fixtures', 'flower_photos', c);
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.jpg')).slice(0, 4)) fs.copyFileSync(path.join(dir, f), path.join(small, c, f));
  }
  const hasEngine = fs.existsSync(path.join(installed(), 'node_modules', 'onnxruntime-node'));
  const npmVersion = (await run('npm', ['--version'], { env })).stdout.trim();
  t.diagnostic(`npm ${npmVersion}: the plain install ${hasEngine ? 'has' : 'lacks'} onnxruntime-node`);
  const first = await run(bin('retrain'), retrainArgs(small, path.join(work, 'run1'), 1), { env });
  assert.equal(first.status, 0, first.stderr.slice(-3000));
  const restoreLines = first.stderr.split('\n').filter((l) => l.includes('restore it with'));
  if (hasEngine) {
    // npm 12 blocks dependencies' install scripts: the engine is there from the start.
    assert.deepEqual(restoreLines, []);
    assert.equal(engineOf(path.join(work, 'run1')).name, 'onnxruntime');
  } else {
    assert.equal(restoreLines.length, 1, `one line about the missing engine:\n${first.stderr}`);
    const expected = `ONNXRUNTIME_NODE_INSTALL=skip npm install -g ${pkg.name}`;
    assert.ok(restoreLines[0]!.endsWith(`restore it with: ${expected}`), restoreLines[0]);
    assert.match(restoreLines[0]!, /^WARNING:retrain:.*onnxruntime-node, the native ONNX Runtime engine, is not installed/);
    assert.equal(engineOf(path.join(work, 'run1')).name, 'wasm');
    // Asked for by name, the missing engine is an error naming the same command.
    const asked = await run(bin('retrain'), [...retrainArgs(small, path.join(work, 'run1b'), 1), '--backend', 'onnxruntime'], { env });
    assert.equal(asked.status, 1, asked.stderr);
    assert.equal(asked.stderr.trim().split('\n').at(-1), `retrain: error: --backend onnxruntime: onnxruntime-node, the native ONNX Runtime engine, is not installed; restore it with: ${expected}`);
  }

  // 2. The restore command (onnxruntime-node's own switch), for the tarball at hand.
  const before = proxy.asked.length;
  const restored = await npmInstallGlobal({ ONNXRUNTIME_NODE_INSTALL: 'skip' });
  assert.equal(restored.status, 0, restored.stderr.slice(-3000));
  assert.deepEqual(proxy.asked.slice(before).filter((h) => NUGET.test(h)), [], 'nothing CUDA-related is fetched');
  assert.ok(fs.existsSync(path.join(installed(), 'node_modules', 'onnxruntime-node')), 'onnxruntime-node is installed');

  const out = path.join(work, 'run2');
  const sample = path.join(installed(), 'fixtures', 'flower_photos');
  const second = await run(bin('retrain'), retrainArgs(sample, out, 100), { env });
  assert.equal(second.status, 0, second.stderr.slice(-3000));
  assert.doesNotMatch(second.stderr, /restore it with|WARNING:retrain:Module forward pass on tfjs/);
  assert.equal(engineOf(out).name, 'onnxruntime');

  // label-image reads one photo from stdin and prints every class, best first.
  const photo = fs.readFileSync(path.join(sample, 'roses', '10090824183_d02c613f10_m.jpg'));
  const li = await run(bin('label-image'), ['--graph', path.join(out, 'graph'), '--labels', path.join(out, 'labels.txt'), '--image', '-'], { env, input: photo });
  assert.equal(li.status, 0, li.stderr);
  assert.equal(li.stderr, '');
  const rows = li.stdout.trim().split('\n').map((l) => l.split(' '));
  assert.deepEqual(rows.map((r) => r[0]).sort(), ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);
  const scores = rows.map((r) => Number(r[1]));
  assert.deepEqual([...scores].sort((a, b) => b - a), scores);
  assert.ok(Math.abs(scores.reduce((a, b) => a + b, 0) - 1) < 1e-3, `softmax scores sum to 1: ${li.stdout}`);
});

test('GPU opt-in: the documented command asks NuGet for the CUDA provider and, offline, fails with npm\'s error', async (t) => {
  const ortDir = path.join(installed(), 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(ortDir)) return t.skip('the install test above did not leave onnxruntime-node installed');
  // What onnxruntime-node's postinstall resolves on linux-x64 (read from the installed package itself).
  const { createRequire } = await import('node:module');
  const meta = createRequire(import.meta.url)(path.join(ortDir, 'script', 'install-metadata.js')) as {
    requirements: Record<string, string[]>;
    manifests: Record<string, Record<string, { package: string }>>;
    packages: Record<string, { name: string; versions: Array<{ feed: string; version: string }> }>;
    feeds: Record<string, { index: string }>;
  };
  assert.deepEqual(meta.requirements['linux/x64'], ['cuda12']);
  const nugetPkg = meta.packages[Object.values(meta.manifests['linux/x64:cuda12']!)[0]!.package]!;
  assert.equal(nugetPkg.name, 'Microsoft.ML.OnnxRuntime.Gpu.Linux');
  assert.deepEqual(nugetPkg.versions.map((v) => v.version), [JSON.parse(fs.readFileSync(path.join(ortDir, 'package.json'), 'utf8')).version]);
  assert.equal(meta.feeds[nugetPkg.versions[0]!.feed]!.index, 'https://api.nuget.org/v3/index.json');

  // README's command, pointed at this prefix.
  const before = proxy.asked.length;
  const r = await run('npm', ['rebuild', '-g', '--prefix', prefix(), 'onnxruntime-node', '--allow-scripts=onnxruntime-node'], { env: { ...env, ONNXRUNTIME_NODE_INSTALL: 'cuda12' }, cwd: work });
  assert.notEqual(r.status, 0, 'offline, the CUDA download fails');
  assert.match(r.stderr, /npm error path .*onnxruntime-node\b/);
  assert.match(r.stderr, /npm error command sh -c node \.\/script\/install/);
  assert.ok(proxy.asked.slice(before).some((h) => NUGET.test(h)), `NuGet was asked for: ${proxy.asked.slice(before).join(', ')}`);
  // The CPU engine stays.
  assert.ok(fs.existsSync(path.join(ortDir, 'package.json')));
});
