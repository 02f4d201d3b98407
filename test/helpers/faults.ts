/**
 * Fixtures for the bad-input and fault tests: broken and unusual image files, a
 * module slow enough to interrupt, and a CLI runner that does not block the test
 * process (so it can serve HTTP or send signals meanwhile).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import pLimit from 'p-limit';
import sharp, { type Sharp } from 'sharp';
import { folderSaveHandler } from '../../src/module/io.js';
import { REPO_ROOT, cliEnv, useCpuBackend, type CliResult } from './fixtures.js';

export interface Running {
  child: ChildProcess;
  done: Promise<CliResult & { signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Starts bin/<command>.js in a child process; `done` settles when it exits. */
export function startCli(command: 'retrain' | 'label-image', args: string[], env: NodeJS.ProcessEnv = {}, user: { uid?: number; gid?: number } = {}, cwd?: string): Running {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', `${command}.js`), ...args], {
    env: cliEnv({ CI: '1', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd,
    ...user,
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult & { signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })),
  );
  return { child, done, stderr: () => stderr };
}

export async function runCliAsync(command: 'retrain' | 'label-image', args: string[], env: NodeJS.ProcessEnv = {}, user: { uid?: number; gid?: number } = {}) {
  return startCli(command, args, env, user).done;
}

/** One run per argument list, `concurrency` at a time (independent error cases), results in order. */
export async function runCliEach(command: 'retrain' | 'label-image', argLists: string[][], env: NodeJS.ProcessEnv = {}, concurrency = os.availableParallelism()) {
  const limit = pLimit(concurrency);
  return Promise.all(argLists.map((args) => limit(() => runCliAsync(command, args, env))));
}

/** Every file below `dir`, relative, sorted. */
export function filesBelow(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)))
    .sort();
}

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** No stack trace lines ("    at f (file:1:2)") in a CLI's stderr. */
export function hasStack(text: string): boolean {
  return /^\s+at .+[:(]/m.test(text);
}

/** A layers model with a 96x96 input and a few convolutions: some milliseconds per image, so a run can be interrupted midway. */
export async function makeSlowLayersModel(dir: string, seed = 5): Promise<string> {
  await useCpuBackend();
  const init = () => tf.initializers.glorotUniform({ seed });
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [96, 96, 3], filters: 16, kernelSize: 3, activation: 'relu', name: 'c1', kernelInitializer: init() }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu', name: 'c2', kernelInitializer: init() }),
      tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu', name: 'c3', kernelInitializer: init() }),
      tf.layers.globalAveragePooling2d({ name: 'pool' }),
    ],
  });
  await model.save(folderSaveHandler(dir));
  model.dispose();
  return dir;
}

/** A small noisy RGB image as raw pixels, for sharp to encode in any format. */
export function noisyRgb(w: number, h: number, base: [number, number, number], seed = 1): Sharp {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < w * h * 3; i++) px[i] = Math.max(0, Math.min(255, base[i % 3]! + Math.round((rnd() - 0.5) * 60)));
  return sharp(px, { raw: { width: w, height: h, channels: 3 } });
}

/** A JPEG whose frame header claims `w` x `h` pixels: sharp refuses it from the header alone. */
export async function jpegClaimingSize(w: number, h: number): Promise<Buffer> {
  const buf = await noisyRgb(16, 16, [100, 100, 100]).jpeg().toBuffer();
  for (let i = 2; i < buf.length - 9; ) {
    if (buf[i] !== 0xff) throw new Error('not a JPEG marker');
    const marker = buf[i + 1]!;
    const len = buf.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xc2) {
      buf.writeUInt16BE(h, i + 5);
      buf.writeUInt16BE(w, i + 7);
      return buf;
    }
    i += 2 + len;
  }
  throw new Error('no frame header found');
}

/** A PNG whose compressed pixel data is garbage: the header is fine, decoding fails. */
export async function pngWithCorruptData(): Promise<Buffer> {
  const buf = await noisyRgb(32, 32, [50, 150, 50]).png({ compressionLevel: 0 }).toBuffer();
  const idat = buf.indexOf('IDAT');
  for (let i = idat + 12; i < idat + 200; i++) buf[i] = 0xa5;
  return buf;
}

const NOBODY_ID = 65534;

/**
 * Root ignores file permissions, so permission cases run the CLI as nobody. That
 * needs a checkout nobody can read (a clone under a private temp dir is not):
 * returns the user to run as, or why the permission cases must be skipped.
 */
export function permissionUser(): { user: { uid?: number; gid?: number }; skip: string | false } {
  if (process.getuid?.() !== 0) return { user: {}, skip: false };
  const probe = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(path.join(REPO_ROOT, 'bin', 'retrain.js'))}, require('fs').constants.R_OK)`], {
    uid: NOBODY_ID,
    gid: NOBODY_ID,
    cwd: '/',
  });
  if (probe.status === 0) return { user: { uid: NOBODY_ID, gid: NOBODY_ID }, skip: false };
  return { user: {}, skip: `running as root and the checkout ${REPO_ROOT} is not readable by nobody, so file permissions cannot be tested` };
}

/** A copy of the model folder `from` as `<root>/<name>`, with its model.json edited. */
export function copyModel(root: string, from: string, name: string, edit: (json: Record<string, any>) => void): string {
  const dir = path.join(root, name);
  fs.cpSync(from, dir, { recursive: true });
  const file = path.join(dir, 'model.json');
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(json);
  fs.writeFileSync(file, JSON.stringify(json));
  return dir;
}
