/**
 * `npm run bench -- --image_dir D --tfhub_module M [--num_workers N] [--bottleneck_batch_size B]`
 *
 * Prints one JSON object: the bottleneck stage in ms per image with an empty cache
 * (cold) and a full one (warm), CPU ms per image (all threads, so it can be compared
 * on a busy machine), training steps per second, the time a cached second run takes
 * to reach its first training step (a real CLI process), peak RSS, backend and
 * workers. The machine's load average is included because the machine may be shared.
 * With --backend auto or onnxruntime the module may run on ONNX Runtime (`engine` says
 * which ran); every run also times the anchor (bench/anchor.ts, a plain ONNX Runtime +
 * sharp loop over the same images, in its own process) and prints the ratio to it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { initBackend, wantsOnnxRuntime, type BackendChoice } from '../src/backend.js';
import { cacheBottlenecks, type Bottlenecks } from '../src/bottleneck/index.js';
import { intArg } from '../src/cli/common.js';
import { createImageLists, type ImageLists } from '../src/dataset/index.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { convertModule, loadOrConvertOnnx } from '../src/module/onnx/index.js';
import { trainHead, type LabeledSet } from '../src/train/index.js';
import type { EngineFigures } from './anchor.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const cmd = new Command('bench')
  .requiredOption('--image_dir <dir>', 'folder with one subfolder of images per class')
  .requiredOption('--tfhub_module <path>', 'local TF.js module folder')
  .option('--num_workers <n>', 'bottleneck threads (default: one per core)', intArg('--num_workers'))
  .option('--bottleneck_batch_size <n>', 'images per inference call', intArg('--bottleneck_batch_size'), 4)
  .option('--how_many_training_steps <n>', 'training steps to time', intArg('--how_many_training_steps'), 4000)
  .option('--train_batch_size <n>', 'images per training step', intArg('--train_batch_size'), 100)
  .option('--backend <name>', 'compute backend', 'auto')
  .option('--no_fused', 'layers modules: time tfjs predict instead of fused kernels')
  .parse();
const f = cmd.opts<{
  image_dir: string;
  tfhub_module: string;
  num_workers?: number;
  bottleneck_batch_size: number;
  how_many_training_steps: number;
  train_batch_size: number;
  backend: BackendChoice;
  no_fused?: boolean;
}>();

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

function labeledSet(lists: ImageLists, b: Bottlenecks, category: 'training' | 'validation'): LabeledSet {
  const files: string[] = [];
  const labels: number[] = [];
  lists.classes.forEach((cls, k) =>
    cls[category].forEach((name) => {
      const file = path.resolve(lists.imageDir, cls.dir, name);
      if (b.values.has(file)) {
        files.push(file);
        labels.push(k);
      }
    }),
  );
  const x = new Float32Array(files.length * b.size);
  files.forEach((file, i) => x.set(b.values.get(file)!, i * b.size));
  return { x, y: Int32Array.from(labels), files };
}

/** The anchor over the same images, in its own process, on the module's ONNX conversion. */
async function runAnchor(extractor: Awaited<ReturnType<typeof loadFeatureExtractor>>, onnxDir: string): Promise<EngineFigures> {
  if (extractor.kind === 'saved-model' || extractor.kind === 'onnx') throw new Error('the anchor needs a TF.js module');
  const { info, files } = extractor;
  const model = await loadOrConvertOnnx(onnxDir, info.id, () => convertModule(files, { bottleneck: info.bottleneckTensor, height: info.inputHeight, width: info.inputWidth }));
  const args = [path.join(ROOT, 'dist', 'bench', 'anchor.js'), '--model', model.path, '--image_dir', f.image_dir, '--size', String(info.inputHeight)];
  if (f.num_workers) args.push('--threads', String(f.num_workers));
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the anchor failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as EngineFigures;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0]!;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-bench-'));
  try {
    const backend = await initBackend(f.backend);
    const lists = await createImageLists(f.image_dir, { testingPercentage: 10, validationPercentage: 10 }, silentLogger);
    const t0 = performance.now();
    const onnxDir = path.join(tmp, 'modules', 'onnx');
    const extractor = await loadFeatureExtractor({
      spec: f.tfhub_module,
      cacheDir: path.join(tmp, 'modules'),
      fused: !f.no_fused,
      onnx: wantsOnnxRuntime(f.backend) ? { cacheDir: onnxDir, threads: f.num_workers } : undefined,
      log: silentLogger,
    });
    const moduleLoadS = (performance.now() - t0) / 1000;
    const bottleneckDir = path.join(tmp, 'bottlenecks');
    const opts = { bottleneckDir, batchSize: f.bottleneck_batch_size, numWorkers: f.num_workers, log: silentLogger };

    const stage = async () => {
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      const b = await cacheBottlenecks(lists, extractor, opts);
      return { b, wallMs: performance.now() - w0, cpuMs: cpuMs(process.cpuUsage(c0)) };
    };
    const cold = await stage();
    const warm = await stage();
    const n = cold.b.computed;
    if (warm.b.computed !== 0) throw new Error(`warm run recomputed ${warm.b.computed} bottlenecks`);

    const engine = (await extractor.onnx?.session()) ? 'onnxruntime' : backend.name;
    const anchor = await runAnchor(extractor, onnxDir);

    const training = labeledSet(lists, warm.b, 'training');
    const s0 = performance.now();
    const sc0 = process.cpuUsage();
    await trainHead(training, labeledSet(lists, warm.b, 'validation'), lists.classes.length, warm.b.size, {
      steps: f.how_many_training_steps,
      learningRate: 0.01,
      trainBatchSize: f.train_batch_size,
      validationBatchSize: 100,
      // retrain.py's default interval, so evaluation cost is part of the figure.
      evalStepInterval: 10,
      seed: 0,
      log: silentLogger,
    }).then((r) => r.head.dispose());
    const trainS = (performance.now() - s0) / 1000;
    const trainCpuS = cpuMs(process.cpuUsage(sc0)) / 1000;
    extractor.dispose();
    const peakRssMb = process.resourceUsage().maxRSS / 1024;

    // A second run as a user starts it: a new process, every bottleneck cached.
    const summary = path.join(tmp, 'summary.json');
    const r0 = performance.now();
    const run = spawnSync(
      process.execPath,
      [
        path.join(ROOT, 'bin', 'retrain.js'),
        ...['--image_dir', f.image_dir, '--tfhub_module', f.tfhub_module, '--bottleneck_dir', bottleneckDir, '--backend', f.backend],
        ...['--how_many_training_steps', '1', '--output_graph', path.join(tmp, 'out'), '--output_labels', path.join(tmp, 'labels.txt')],
        ...['--summary_json', summary, '--module_cache_dir', path.join(tmp, 'modules')],
      ],
      { encoding: 'utf8' },
    );
    const runWallS = (performance.now() - r0) / 1000;
    if (run.status !== 0) throw new Error(`second run failed: ${run.stderr}`);
    const s = JSON.parse(fs.readFileSync(summary, 'utf8')) as { timings_s: Record<string, number>; bottlenecks: { computed: number } };
    const after = ['training', 'testing', 'export'].reduce((sum, k) => sum + (s.timings_s[k] ?? 0), 0);

    const out = {
      module: f.tfhub_module,
      format: extractor.info.format,
      fused: extractor.kind === 'layers' ? extractor.fused : null,
      images: n,
      backend: backend.name,
      engine,
      workers: cold.b.workers ?? 0,
      cores: os.availableParallelism(),
      bottleneck_batch_size: f.bottleneck_batch_size,
      module_load_s: round(moduleLoadS, 2),
      cold_ms_per_image: round(cold.wallMs / n),
      cold_cpu_ms_per_image: round(cold.cpuMs / n),
      warm_ms_per_image: round(warm.wallMs / n, 2),
      train_steps: f.how_many_training_steps,
      train_batch_size: f.train_batch_size,
      train_s: round(trainS, 2),
      train_steps_per_s: round(f.how_many_training_steps / trainS),
      train_cpu_s: round(trainCpuS, 2),
      second_run_first_step_s: round(runWallS - after, 2),
      second_run_computed: s.bottlenecks.computed,
      second_run_timings_s: s.timings_s,
      peak_rss_mb: Math.round(peakRssMb),
      anchor_cold_ms_per_image: anchor.cold_ms_per_image,
      anchor_warm_ms_per_image: anchor.warm_ms_per_image,
      cold_ratio_to_anchor: round(cold.wallMs / n / anchor.cold_ms_per_image, 2),
      load_average_before: round(loadBefore, 2),
      load_average_after: round(os.loadavg()[0]!, 2),
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
