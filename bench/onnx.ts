/**
 * `node dist/bench/onnx.js --tfhub_module M --image_dir D [--limit N] [--batch B]`
 *
 * Converts the module to ONNX, then, each in its own process so RSS and CPU are its
 * own, over the same images: the anchor (bench/anchor.ts, a plain onnxruntime + sharp
 * loop) and this project's ONNX engine (the image stage's decode and resize, batches,
 * decoding overlapping inference). Prints one JSON line per engine, then the ratio.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import pLimit from 'p-limit';
import { initBackend } from '../src/backend.js';
import { decodeImage, toModuleInput, type InputSpec } from '../src/image/index.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { convertModule } from '../src/module/onnx/convert.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { imageFiles, round, timePasses, type EngineFigures } from './anchor.js';

/** The TF.js files of a module the converter reads; a SavedModel has none. */
function tfjsFiles(fe: FeatureExtractor) {
  if (fe.kind === 'saved-model' || fe.kind === 'onnx') throw new Error(`${fe.info.spec} is a ${fe.info.format}, not a TF.js model`);
  return fe.files;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));

const f = new Command('onnx')
  .requiredOption('--image_dir <dir>', 'photos, in any subfolders')
  .option('--tfhub_module <path>', 'local TF.js module folder')
  .option('--limit <n>', 'first N photos only', (v) => Number.parseInt(v, 10))
  .option('--batch <n>', 'images per inference call (engine)', (v) => Number.parseInt(v, 10), 4)
  .option('--threads <n>', 'intra-op threads (default: one per core)', (v) => Number.parseInt(v, 10))
  .option('--engine_model <file>', '(internal) run the engine on this .onnx')
  .option('--input_spec <json>', '(internal) the module input spec')
  .parse()
  .opts<{ image_dir: string; tfhub_module?: string; limit?: number; batch: number; threads?: number; engine_model?: string; input_spec?: string }>();

/** This project's engine: decode (4 at a time) and resize overlap the batches ORT runs. */
async function runEngine(model: string, files: string[], spec: InputSpec, batchSize: number, threads?: number): Promise<EngineFigures> {
  let session: Awaited<ReturnType<typeof createOnnxSession>> | undefined;
  const pixels = spec.height * spec.width * 3;
  return timePasses(`retrain-ts ONNX engine (batch ${batchSize})`, files.length, threads ?? os.availableParallelism(), async (first) => {
    if (first) session = await createOnnxSession(model, { threads });
    const s = session!;
    const decode = pLimit(4);
    const inFlight = pLimit(2);
    const batches: string[][] = [];
    for (let i = 0; i < files.length; i += batchSize) batches.push(files.slice(i, i + batchSize));
    await Promise.all(
      batches.map((b) =>
        inFlight(async () => {
          const input = new Float32Array(b.length * pixels);
          await Promise.all(b.map((file, i) => decode(async () => toModuleInput(await decodeImage(file), spec, input.subarray(i * pixels, (i + 1) * pixels)))));
          await s.run(input, b.length, spec.height, spec.width);
        }),
      ),
    );
  });
}

function child(args: string[]): EngineFigures {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args[0]} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as EngineFigures;
}

async function main(): Promise<void> {
  const files = await imageFiles(f.image_dir, f.limit);
  if (f.engine_model) {
    const figures = await runEngine(f.engine_model, files, JSON.parse(f.input_spec!) as InputSpec, f.batch, f.threads);
    process.stdout.write(JSON.stringify(figures) + '\n');
    return;
  }
  if (!f.tfhub_module) throw new Error('--tfhub_module is required');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-bench-onnx-'));
  try {
    await initBackend('wasm');
    const fe = await loadFeatureExtractor({ spec: f.tfhub_module, cacheDir: tmp, log: silentLogger });
    const t0 = performance.now();
    const bytes = await convertModule(tfjsFiles(fe), { bottleneck: fe.info.bottleneckTensor, height: fe.info.inputHeight, width: fe.info.inputWidth });
    const convertS = (performance.now() - t0) / 1000;
    const model = path.join(tmp, 'module.onnx');
    fs.writeFileSync(model, bytes);
    fe.dispose();
    const common = [...(f.limit ? ['--limit', String(f.limit)] : []), ...(f.threads ? ['--threads', String(f.threads)] : [])];
    const anchor = child([path.join(HERE, 'anchor.js'), '--model', model, '--image_dir', f.image_dir, '--size', String(fe.info.inputHeight), ...common]);
    const engine = child([
      path.join(HERE, 'onnx.js'),
      ...['--engine_model', model, '--input_spec', JSON.stringify(fe.inputSpec), '--image_dir', f.image_dir, '--batch', String(f.batch)],
      ...common,
    ]);
    for (const e of [anchor, engine]) process.stdout.write(JSON.stringify(e) + '\n');
    process.stdout.write(
      JSON.stringify({
        module: f.tfhub_module,
        format: fe.info.format,
        convert_s: round(convertS, 2),
        onnx_mb: round(bytes.length / 2 ** 20, 1),
        cold_ratio_to_anchor: round(engine.cold_ms_per_image / anchor.cold_ms_per_image, 2),
        warm_ratio_to_anchor: round(engine.warm_ms_per_image / anchor.warm_ms_per_image, 2),
      }) + '\n',
    );
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
