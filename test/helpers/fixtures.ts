/**
 * Fixtures the tests generate: small images per class and tiny TF.js models of
 * both kinds. Nothing here is checked in; everything lands in a temp folder.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import seedrandom from 'seedrandom';
import { folderSaveHandler } from '../../src/module/io.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SHARED = path.resolve(REPO_ROOT, '..', 'shared');
export const HAVE_SHARED = fs.existsSync(path.join(SHARED, 'models')) && fs.existsSync(path.join(SHARED, 'datasets'));
export const SKIP_SHARED = HAVE_SHARED ? false : `../shared is absent (expected at ${SHARED}): real models and photos are needed`;

export function tempDir(prefix = 'retrain-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export async function useCpuBackend(): Promise<void> {
  tf.env().set('PROD', true);
  if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu');
  await tf.ready();
}

/** Class colours far apart, so a linear head on any reasonable features separates them. */
const PALETTE: Array<[number, number, number]> = [
  [220, 40, 40],
  [40, 200, 60],
  [40, 60, 220],
  [230, 220, 40],
  [200, 40, 210],
];

export interface ImageSetOptions {
  classes?: string[];
  perClass?: number;
  width?: number;
  height?: number;
  format?: 'jpg' | 'png';
  seed?: number;
}

/** A folder with one subfolder of noisy solid-colour images per class. */
export async function makeImageDir(root: string, opts: ImageSetOptions = {}): Promise<string> {
  const classes = opts.classes ?? ['red', 'green', 'blue'];
  const perClass = opts.perClass ?? 12;
  const w = opts.width ?? 40;
  const h = opts.height ?? 30;
  const rng = seedrandom(String(opts.seed ?? 1));
  for (const [k, cls] of classes.entries()) {
    const dir = path.join(root, cls);
    fs.mkdirSync(dir, { recursive: true });
    const base = PALETTE[k % PALETTE.length]!;
    for (let i = 0; i < perClass; i++) {
      const px = Buffer.alloc(w * h * 3);
      for (let p = 0; p < w * h; p++) {
        for (let c = 0; c < 3; c++) px[p * 3 + c] = Math.max(0, Math.min(255, base[c]! + Math.round((rng() - 0.5) * 60)));
      }
      const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
      const file = path.join(dir, `${cls}_${String(i).padStart(3, '0')}.${opts.format ?? 'png'}`);
      await (opts.format === 'jpg' ? img.jpeg({ quality: 95 }) : img.png()).toFile(file);
    }
  }
  return root;
}

/** A tiny layers model: conv → relu → global average pooling → dense softmax, input 32x32. */
export async function makeLayersModel(dir: string, seed = 7): Promise<string> {
  await useCpuBackend();
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [32, 32, 3], filters: 8, kernelSize: 3, activation: 'relu', name: 'conv', kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
      tf.layers.globalAveragePooling2d({ name: 'pool' }),
      tf.layers.dense({ units: 4, activation: 'softmax', name: 'logits', kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
    ],
  });
  await model.save(folderSaveHandler(dir));
  model.dispose();
  return dir;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/**
 * A tiny TF Hub-style graph model: images [-1,32,32,3] in [0,1] → Conv2D → Relu →
 * Mean over H,W → [N,8], written as model.json + one shard, like the converter does.
 */
export function makeGraphModel(dir: string, seed = 11): string {
  fs.mkdirSync(dir, { recursive: true });
  const rng = seedrandom(String(seed));
  const kernel = Float32Array.from({ length: 3 * 3 * 3 * 8 }, () => (rng() - 0.5) * 0.8);
  const axes = Int32Array.from([1, 2]);
  const f = { type: 'DT_FLOAT' };
  const nodes = [
    { name: 'images', op: 'Placeholder', attr: { dtype: f, shape: { shape: { dim: [{ size: '-1' }, { size: '32' }, { size: '32' }, { size: '3' }] } } } },
    { name: 'module/conv/weights', op: 'Const', attr: { dtype: f, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [3, 3, 3, 8].map((d) => ({ size: String(d) })) } } } } },
    { name: 'module_apply_default/mean/axes', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: { dim: [{ size: '2' }] } } } } },
    {
      name: 'module_apply_default/conv/Conv2D',
      op: 'Conv2D',
      input: ['images', 'module/conv/weights'],
      attr: {
        T: f,
        strides: { list: { i: ['1', '1', '1', '1'] } },
        padding: { s: b64('SAME') },
        data_format: { s: b64('NHWC') },
        dilations: { list: { i: ['1', '1', '1', '1'] } },
        use_cudnn_on_gpu: { b: true },
      },
    },
    { name: 'module_apply_default/conv/Relu', op: 'Relu', input: ['module_apply_default/conv/Conv2D'], attr: { T: f } },
    {
      name: 'module_apply_default/hub_output/feature_vector/Mean',
      op: 'Mean',
      input: ['module_apply_default/conv/Relu', 'module_apply_default/mean/axes'],
      attr: { T: f, Tidx: { type: 'DT_INT32' }, keep_dims: { b: false } },
    },
  ];
  const weights = Buffer.concat([Buffer.from(kernel.buffer), Buffer.from(axes.buffer)]);
  fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), weights);
  fs.writeFileSync(
    path.join(dir, 'model.json'),
    JSON.stringify({
      format: 'graph-model',
      generatedBy: 'test fixture',
      convertedBy: 'test fixture',
      modelTopology: { node: nodes, library: {}, versions: {} },
      weightsManifest: [
        {
          paths: ['group1-shard1of1.bin'],
          weights: [
            { name: 'module/conv/weights', shape: [3, 3, 3, 8], dtype: 'float32' },
            { name: 'module_apply_default/mean/axes', shape: [2], dtype: 'int32' },
          ],
        },
      ],
    }),
  );
  return dir;
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment for a CLI child: its own TMPDIR (writable by any user), so defaults
 * under <tmpdir> (bottleneck_dir, summaries_dir, output_graph…) never collide between tests.
 */
export function cliEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const tmp = tempDir('retrain-cli-tmp-');
  fs.chmodSync(tmp, 0o1777);
  // The module cache (downloads, ONNX conversions) too, so tests never write to the user's ~/.cache.
  return { ...process.env, TMPDIR: tmp, TFHUB_CACHE_DIR: path.join(tmp, 'modules'), ...env };
}

/** Runs one of the bin/ commands as a user would, in a child process. */
export function runCli(command: 'retrain' | 'label-image', args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', `${command}.js`), ...args], {
    encoding: 'utf8',
    env: cliEnv(env),
    timeout: 10 * 60 * 1000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
