/**
 * `node dist/bench/anchor.js --model M.onnx (--image_dir D | --files LIST) [--limit N] [--threads T]`
 *
 * The anchor the engines are compared with: the plainest ONNX Runtime + sharp loop,
 * one image at a time: read, decode and resize to the model's size with sharp, scale
 * to [-1, 1], run. Two passes over the same images: cold (first, session created in
 * it) and warm. Prints one JSON line: ms per image, CPU ms per image (all threads),
 * peak RSS and the load average (the machine may be shared). `--files` (one path a
 * line) makes it run on exactly the images an engine of `npm run bench` ran on.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import fg from 'fast-glob';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

export interface EngineFigures {
  engine: string;
  images: number;
  threads: number;
  cold_ms_per_image: number;
  warm_ms_per_image: number;
  cold_cpu_ms_per_image: number;
  warm_cpu_ms_per_image: number;
  peak_rss_mb: number;
  load_average: number[];
}

export const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

/** Times `pass` twice (cold, warm) over `n` images and reports per-image figures. */
export async function timePasses(engine: string, n: number, threads: number, pass: (first: boolean) => Promise<void>): Promise<EngineFigures> {
  const time = async (first: boolean) => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await pass(first);
    return { ms: (performance.now() - t0) / n, cpu: cpuMs(process.cpuUsage(c0)) / n };
  };
  const cold = await time(true);
  const warm = await time(false);
  return {
    engine,
    images: n,
    threads,
    cold_ms_per_image: round(cold.ms),
    warm_ms_per_image: round(warm.ms),
    cold_cpu_ms_per_image: round(cold.cpu),
    warm_cpu_ms_per_image: round(warm.cpu),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    load_average: os.loadavg().map((l) => round(l, 2)),
  };
}

export async function imageFiles(dir: string, limit?: number): Promise<string[]> {
  const files = (await fg('**/*.{jpg,jpeg,JPG,JPEG,png}', { cwd: dir, absolute: true })).sort();
  return limit ? files.slice(0, limit) : files;
}

export async function runAnchor(model: string, files: string[], threads = os.availableParallelism(), size = 224): Promise<EngineFigures> {
  let session: ort.InferenceSession | undefined;
  const figures = await timePasses('anchor (onnxruntime + sharp loop)', files.length, threads, async (first) => {
    if (first) session = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, executionProviders: ['cpu'] });
    const s = session!;
    for (const file of files) {
      const { data } = await sharp(file).removeAlpha().resize(size, size, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
      const x = new Float32Array(data.length);
      for (let i = 0; i < data.length; i++) x[i] = data[i]! / 127.5 - 1;
      const out = await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', x, [1, size, size, 3]) });
      out[s.outputNames[0]!]!.dispose();
    }
  });
  await session?.release();
  return figures;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const f = new Command('anchor')
    .requiredOption('--model <file>', '.onnx model taking [N, S, S, 3] NHWC float')
    .option('--image_dir <dir>', 'photos, in any subfolders')
    .option('--files <list>', 'a text file naming the photos, one path a line (instead of --image_dir)')
    .option('--limit <n>', 'first N photos only', (v) => Number.parseInt(v, 10))
    .option('--threads <n>', 'intra-op threads (default: one per core)', (v) => Number.parseInt(v, 10))
    .option('--size <n>', 'input height and width', (v) => Number.parseInt(v, 10), 224)
    .parse()
    .opts<{ model: string; image_dir?: string; files?: string; limit?: number; threads?: number; size: number }>();
  if (!f.image_dir === !f.files) throw new Error('give one of --image_dir and --files');
  const files = f.files ? fs.readFileSync(f.files, 'utf8').split('\n').filter(Boolean).slice(0, f.limit) : await imageFiles(f.image_dir!, f.limit);
  const figures = await runAnchor(f.model, files, f.threads, f.size);
  process.stdout.write(JSON.stringify(figures) + '\n');
}
