/**
 * `npm ci` on a clean clone fetches from the npm registry and nothing else: no package
 * comes from git, a URL or a file, and every install script is known. The one that
 * would download (onnxruntime-node's CUDA provider, from NuGet) is turned off by the
 * project's .npmrc, checked by running it with the settings npm derives from that file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT as ROOT } from './helpers/fixtures.js';

interface LockPackage {
  version?: string;
  resolved?: string;
  optional?: boolean;
  hasInstallScript?: boolean;
}

const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };

/** Packages allowed an install script, and why it fetches nothing at `npm ci`. */
const INSTALL_SCRIPTS: Record<string, string> = {
  'node_modules/onnxruntime-node': 'its CUDA download is skipped by .npmrc (checked below)',
  'node_modules/@tensorflow/tfjs-node': 'optional: its libtensorflow download may fail, and npm then leaves it out',
  'node_modules/core-js': 'prints a notice',
  'node_modules/onnx-proto/node_modules/protobufjs': 'checks its CLI dependencies',
};

test('package-lock.json: every package comes from the npm registry, and every install script is known', () => {
  for (const [name, p] of Object.entries(lock.packages)) {
    if (name === '') continue;
    if (p.resolved) assert.match(p.resolved, /^https:\/\/registry\.npmjs\.org\//, `${name} is resolved outside the npm registry`);
    assert.doesNotMatch(p.version ?? '', /^(git|https?|file):/, `${name} is installed from ${p.version}`);
    if (p.hasInstallScript) assert.ok(name in INSTALL_SCRIPTS, `${name} has an install script nobody has checked`);
  }
  assert.equal(lock.packages['node_modules/@tensorflow/tfjs-node']?.optional, true, 'tfjs-node must stay optional: its install fails offline');
});

test(".npmrc turns off onnxruntime-node's CUDA download: its postinstall then succeeds offline", () => {
  // npm passes each .npmrc key to install scripts as npm_config_<key, - as _>.
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(ROOT, '.npmrc'), 'utf8').split('\n')) {
    const m = /^\s*([\w-]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) env[`npm_config_${m[1]!.replace(/-/g, '_')}`] = m[2]!;
  }
  // Checked before running the script: without the setting it would download from NuGet wherever NuGet is reachable.
  assert.equal(env.npm_config_onnxruntime_node_install, 'skip', '.npmrc must say onnxruntime-node-install=skip');
  const dir = path.join(ROOT, 'node_modules', 'onnxruntime-node');
  const script = (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { scripts: { postinstall: string } }).scripts.postinstall;
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_config_onnxruntime|ONNXRUNTIME_NODE)/i.test(k)));
  const r = spawnSync(script, { cwd: dir, shell: true, env: { ...clean, ...env }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${script} failed: ${r.stderr}`);
  assert.doesNotMatch(r.stdout + r.stderr, /nuget|download/i);
});
