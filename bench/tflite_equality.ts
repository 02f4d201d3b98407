/**
 * `node dist/bench/tflite_equality.js --dir D [--photos 20]`
 *
 * Issue 21's checks on exports that retrain wrote into D with one head (same --seed and
 * bottleneck cache): model.tflite, model.onnx, tfjs/ (a TF.js folder) and model_int8.tflite.
 * On `--photos` photos of --image_dir, fed the same decoded pixels:
 * - model.tflite under Arm NN (CpuRef) vs model.onnx under onnxruntime;
 * - label-image's reading of model.tflite (ONNX Runtime) vs the TF.js export (tfjs);
 * and on every photo: int8 vs float top-1 agreement. Prints one JSON line with the load average.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import fg from 'fast-glob';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { intArg } from '../src/cli/common.js';
import { loadClassifier, type Classifier } from '../src/export/load.js';
import { decodeImage, toModuleInput } from '../src/image/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHARED = path.resolve(ROOT, '..', 'shared');

const f = new Command('tflite_equality')
  .requiredOption('--dir <dir>', 'folder with model.tflite, model.onnx, tfjs/, model_int8.tflite')
  .option('--image_dir <dir>', 'photos, in class subfolders', path.join(SHARED, 'datasets', 'flowers-dev'))
  .option('--photos <n>', 'photos for the 1e-4 checks', intArg('--photos'), 20)
  .parse()
  .opts<{ dir: string; image_dir: string; photos: number }>();

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const argmax = (a: ArrayLike<number>) => Array.from(a).reduce((b, v, i, all) => (v > all[b]! ? i : b), 0);

async function scores(c: Classifier, x: Float32Array): Promise<Float32Array> {
  const s = await c.onnx?.session();
  if (s) return s.run(x, 1, c.spec.height, c.spec.width);
  return tf.tidy(() => c.run(tf.tensor4d(x, [1, c.spec.height, c.spec.width, 3])).dataSync() as Float32Array);
}

await initBackend('auto');
const all = (await fg('*/*.{jpg,jpeg,png}', { cwd: f.image_dir, caseSensitiveMatch: false })).sort().map((p) => path.join(f.image_dir, p));
const step = Math.max(1, Math.floor(all.length / f.photos));
const photos = all.filter((_, i) => i % step === 0).slice(0, f.photos);
const tflite = await loadClassifier({ graph: path.join(f.dir, 'model.tflite') });
const onnx = await loadClassifier({ graph: path.join(f.dir, 'model.onnx') });
const tfjs = await loadClassifier({ graph: path.join(f.dir, 'tfjs') });
const int8 = await loadClassifier({ graph: path.join(f.dir, 'model_int8.tflite') });

// Arm NN reads the decoded pixels of every photo from one raw file.
const inputs = await Promise.all(photos.map(async (p) => toModuleInput(await decodeImage(p), tflite.spec)));
const raw = path.join(os.tmpdir(), `tflite-equality-${process.pid}.raw`);
fs.writeFileSync(raw, Buffer.concat(inputs.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength))));
const arm = spawnSync('/usr/bin/python3', [path.join(ROOT, 'test/tools/armnn_run.py'), path.join(f.dir, 'model.tflite'), raw], { encoding: 'utf8', maxBuffer: 1 << 28 });
fs.rmSync(raw);
if (arm.status !== 0) throw new Error(`Arm NN failed: ${arm.stderr}`);
const armOut = (JSON.parse(arm.stdout) as { outputs: number[][] }).outputs;

let armVsOnnx = 0;
let tfliteVsTfjs = 0;
for (const [i, x] of inputs.entries()) {
  armVsOnnx = Math.max(armVsOnnx, maxDiff(armOut[i]!, await scores(onnx, x)));
  tfliteVsTfjs = Math.max(tfliteVsTfjs, maxDiff(await scores(tflite, x), await scores(tfjs, x)));
}

let agree = 0;
let floatRight = 0;
let int8Right = 0;
const classes = tflite.labels ?? [];
for (const p of all) {
  const x = toModuleInput(await decodeImage(p), tflite.spec);
  const [a, b] = [argmax(await scores(tflite, x)), argmax(await scores(int8, x))];
  const truth = classes.indexOf(path.basename(path.dirname(p)).toLowerCase().replace(/[^a-z0-9]+/g, ' '));
  if (a === b) agree++;
  if (a === truth) floatRight++;
  if (b === truth) int8Right++;
}
const size = (p: string) => fs.statSync(path.join(f.dir, p)).size;
console.log(
  JSON.stringify({
    photos: photos.length,
    armnn_tflite_vs_ort_onnx_max_abs_diff: armVsOnnx,
    label_image_tflite_vs_tfjs_max_abs_diff: tfliteVsTfjs,
    int8_top1_agreement: { n: all.length, same: agree, fraction: agree / all.length },
    accuracy_all_photos: { n: all.length, float: floatRight / all.length, int8: int8Right / all.length },
    bytes: { float: size('model.tflite'), int8: size('model_int8.tflite'), int8_over_float: size('model_int8.tflite') / size('model.tflite') },
    loadavg: os.loadavg().map((l) => Math.round(l * 100) / 100),
  }),
);
for (const c of [tflite, onnx, tfjs, int8]) c.dispose();
