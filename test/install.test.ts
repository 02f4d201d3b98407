/**
 * `npm ci` on a clean clone fetches from the npm registry and nothing else: no package
 * comes from git, a URL or a file, and every dependency install script is listed in
 * package.json's allowScripts (allowed or denied), with its reason in docs/design.md.
 * The installed-as-a-tool side is test/global_install.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT as ROOT, tempDir } from './helpers/fixtures.js';
import { npmEnv } from './helpers/npm.js';

interface LockPackage {
  version?: string;
  resolved?: string;
  optional?: boolean;
  hasInstallScript?: boolean;
}

const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  allowScripts?: Record<string, boolean>;
  optionalDependencies?: Record<string, string>;
  dependencies?: Record<string, string>;
};
const allow = pkg.allowScripts ?? {};

/** node_modules/a/node_modules/@s/b → @s/b */
const nameOf = (lockPath: string) => lockPath.slice(lockPath.lastIndexOf('node_modules/') + 'node_modules/'.length);

test('package-lock.json: every package comes from the npm registry, and allowScripts covers every install script', () => {
  const withScripts = new Set<string>();
  for (const [name, p] of Object.entries(lock.packages)) {
    if (name === '') continue;
    if (p.resolved) assert.match(p.resolved, /^https:\/\/registry\.npmjs\.org\//, `${name} is resolved outside the npm registry`);
    assert.doesNotMatch(p.version ?? '', /^(git|https?|file):/, `${name} is installed from ${p.version}`);
    if (p.hasInstallScript) {
      withScripts.add(nameOf(name));
      assert.equal(typeof allow[nameOf(name)], 'boolean', `${name} has an install script that allowScripts does not list`);
    }
  }
  // Name-only entries (any version): a pinned one would go stale at the next upgrade.
  assert.deepEqual(Object.keys(allow).sort(), [...withScripts].sort(), 'allowScripts lists exactly the packages with install scripts');
});

test("the engines whose install scripts download are optional: a failed download leaves them out, not the whole install", () => {
  for (const name of ['onnxruntime-node', '@tensorflow/tfjs-node']) {
    assert.ok(pkg.optionalDependencies?.[name], `${name} is an optional dependency`);
    assert.equal(pkg.dependencies?.[name], undefined);
    assert.equal(lock.packages[`node_modules/${name}`]?.optional, true, `${name} is optional in package-lock.json`);
  }
  // onnxruntime-node's postinstall only fetches the CUDA provider (NuGet): never in a clone.
  assert.equal(allow['onnxruntime-node'], false);
});

test("docs/design.md gives the reason for each allowScripts entry", () => {
  const design = fs.readFileSync(path.join(ROOT, 'docs', 'design.md'), 'utf8');
  const start = design.indexOf('## Installing as a command-line tool');
  assert.ok(start >= 0, 'docs/design.md has the install section');
  const section = design.slice(start, design.indexOf('\n## ', start + 1));
  for (const [name, allowed] of Object.entries(allow)) {
    const row = section.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
    assert.ok(row, `docs/design.md has a row for ${name}`);
    assert.match(row, allowed ? /\| allowed \|/ : /\| denied \|/, `the row for ${name} says ${allowed ? 'allowed' : 'denied'}`);
  }
});

test('npm finds nothing of ours to warn about: no unknown config, no install script left unreviewed', (t) => {
  assert.ok(!fs.existsSync(path.join(ROOT, '.npmrc')) || !/onnxruntime/.test(fs.readFileSync(path.join(ROOT, '.npmrc'), 'utf8')), ".npmrc holds no onnxruntime-node key (npm warns about unknown keys)");
  const r = spawnSync('npm', ['install-scripts', 'ls'], { cwd: ROOT, encoding: 'utf8', env: npmEnv(process.env), timeout: 60_000 });
  if (r.status !== 0 && /Unknown command|not a valid command/i.test(r.stdout + r.stderr)) return t.skip(`this npm has no install-scripts command (npm ≥ 11.16): ${r.stderr.split('\n')[0]}`);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /not yet covered|Unknown (project|user|env|cli) config ".*onnxruntime/i);
});

test('the missing-engine line names the command for how this copy was installed', async () => {
  const { restoreCommand, OnnxRuntimeMissingError } = await import('../src/module/onnx/runtime.js');
  assert.equal(restoreCommand(ROOT), 'ONNXRUNTIME_NODE_INSTALL=skip npm ci', 'a clone');
  const prefix = tempDir();
  const installed = path.join(prefix, 'lib', 'node_modules', 'retrain-ts');
  fs.mkdirSync(installed, { recursive: true });
  fs.writeFileSync(path.join(installed, 'package.json'), JSON.stringify({ name: 'retrain-ts' }));
  assert.equal(restoreCommand(installed), 'ONNXRUNTIME_NODE_INSTALL=skip npm install -g retrain-ts', 'a global (or npx) install');
  const e = new OnnxRuntimeMissingError('is not installed', restoreCommand(installed));
  assert.equal(e.exitCode, 1);
  assert.equal(e.message, 'onnxruntime-node, the native ONNX Runtime engine, is not installed; restore it with: ONNXRUNTIME_NODE_INSTALL=skip npm install -g retrain-ts');
  fs.rmSync(prefix, { recursive: true, force: true });
});
