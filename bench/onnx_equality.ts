/**
 * `node dist/bench/onnx_equality.js [--image_dir D] [--models_dir M] [--models a,b]`
 *
 * For each module: every photo's bottleneck on ONNX Runtime (the converted module)
 * and on tfjs (plain predict/execute, wasm), and the largest absolute difference.
 * Prints one JSON line per module, with the load average (the machine is shared).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import fg from 'fast-glob';
import { initBackend } from '../src/backend.js';
import { intArg } from '../src/cli/common.js';
import { loadModuleInput } from '../src/image/index.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { convertModule } from '../src/module/onnx/convert.js';
import { engineMaxAbsDiff } from '../src/module/onnx/probe.js';
import { createOnnxSession } from '../src/module/onnx/session.js';

/** The TF.js files of a module the converter reads; a SavedModel has none. */
function tfjsFiles(fe: FeatureExtractor) {
  if (fe.kind === 'saved-model' || fe.kind === 'onnx') throw new Error(`${fe.info.spec} is a ${fe.info.format}, not a TF.js model`);
  return fe.files;
}

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..', 'shared');

const f = new Command('onnx_equality')
  .option('--image_dir <dir>', 'photos, in any subfolders', path.join(SHARED, 'datasets', 'flowers-dev'))
  .option('--models_dir <dir>', 'folder of TF.js module folders', path.join(SHARED, 'models'))
  .option('--models <list>', 'comma-separated module folder names (default: all)')
  .option('--batch <n>', 'photos per inference call', intArg('--batch'), 20)
  .parse()
  .opts<{ image_dir: string; models_dir: string; models?: string; batch: number }>();

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  await initBackend('wasm');
  const files = (await fg('**/*.{jpg,jpeg,JPG,JPEG,png}', { cwd: f.image_dir, absolute: true })).sort();
  const names = f.models ? f.models.split(',') : fs.readdirSync(f.models_dir).filter((d) => fs.existsSync(path.join(f.models_dir, d, 'model.json'))).sort();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'onnx-equality-'));
  try {
    for (const name of names) {
      const t0 = performance.now();
      const fe = await loadFeatureExtractor({ spec: path.join(f.models_dir, name), cacheDir: work, fused: false, log: silentLogger });
      const { inputHeight: h, inputWidth: w } = fe.info;
      const session = await createOnnxSession(await convertModule(tfjsFiles(fe), { bottleneck: fe.info.bottleneckTensor, height: h, width: w }));
      let max = 0;
      let worst = '';
      for (let i = 0; i < files.length; i += f.batch) {
        const chunk = files.slice(i, i + f.batch);
        const batch = new Float32Array(chunk.length * h * w * 3);
        for (const [k, file] of chunk.entries()) batch.set(await loadModuleInput(file, fe.inputSpec), k * h * w * 3);
        const d = await engineMaxAbsDiff(session, (x) => fe.extract(x), batch, chunk.length, h, w);
        if (d > max) [max, worst] = [d, path.relative(f.image_dir, chunk[0]!)];
      }
      await session.dispose();
      fe.dispose();
      const line = {
        module: name,
        format: fe.info.format,
        bottleneck: fe.info.bottleneckTensor,
        size: fe.info.bottleneckSize,
        images: files.length,
        max_abs_diff: Number(max.toExponential(3)),
        worst_batch_starts_at: worst,
        within_1e_4: max <= 1e-4,
        seconds: round((performance.now() - t0) / 1000, 1),
        load_average: os.loadavg().map((l) => round(l, 2)),
      };
      process.stdout.write(JSON.stringify(line) + '\n');
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
