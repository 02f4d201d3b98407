/**
 * `npm run bench [-- --image_dir D] [--tfhub_module M[,M2]] [--engines onnxruntime,wasm,tensorflow,cpu]`
 *
 * Every available engine on the same images, in one run. For each module, each in its
 * own process (so peak RSS and CPU time are its own): the anchor (bench/anchor.ts, a
 * plain ONNX Runtime + sharp loop over the module's ONNX conversion) and each engine
 * (bench/engine.ts: the bottleneck stage as `retrain --backend E` runs it, cold and
 * warm). Then, once per run, 4,000 steps of the default head on tfjs and a second
 * `retrain` process with every bottleneck cached.
 *
 * stdout: one JSON document. stderr: the same as a table, and progress.
 * Defaults: ../shared/datasets/flowers-dev and the two MobileNet V2 modules of
 * ../shared/models (layers and graph) when present, else fixtures/flower_photos and
 * the built-in module. tensorflow (tfjs-node) is skipped, saying why, when it is not
 * installed; cpu runs only when --engines names it (it is far too slow by default).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { labeledSet } from '../src/bottleneck/sets.js';
import { intArg } from '../src/cli/common.js';
import { allImages, createImageLists, type ImageLists } from '../src/dataset/index.js';
import { errorMessage } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import { DEFAULT_MODULE, loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { moduleConversion } from '../src/module/onnx/index.js';
import { round, type EngineFigures } from './anchor.js';
import { timeHeadTraining } from './head_timing.js';
import { ENGINES, type EngineName, type EngineRun, type EngineSkipped } from './engine.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const SHARED = path.resolve(ROOT, '..', 'shared');
const SHARED_IMAGES = path.join(SHARED, 'datasets', 'flowers-dev');
/** The issue's two targets: the same MobileNet V2 as a layers model and as a graph model. */
const SHARED_MODULES = ['mobilenet_v2_100_224', 'tfhub_mobilenet_v2_100_224_feature_vector'].map((m) => path.join(SHARED, 'models', m));
const DEFAULT_ENGINES: EngineName[] = ['onnxruntime', 'wasm', 'tensorflow'];

/** Repeatable and comma-separated. */
const list = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

const cmd = new Command('bench')
  .option('--image_dir <dir>', `one subfolder of images per class (default: ${path.relative(ROOT, SHARED_IMAGES)} when present, else fixtures/flower_photos)`)
  .option('--tfhub_module <module>', 'module(s) to time, repeatable or comma-separated (default: the two MobileNet V2 of ../shared/models when present, else the built-in one)', (v: string, prev?: string[]) => list(v, prev))
  .option('--engines <list>', `engines, comma-separated, from ${ENGINES.join(', ')}, or all (default: ${DEFAULT_ENGINES.join(',')})`, (v: string, prev?: string[]) => list(v, prev))
  .option('--num_workers <n>', 'tfjs worker threads and ONNX Runtime intra-op threads (default: one per core)', intArg('--num_workers'))
  .option('--bottleneck_batch_size <n>', 'images per inference call', intArg('--bottleneck_batch_size'), 4)
  .option('--how_many_training_steps <n>', 'head training steps to time (0: skip)', intArg('--how_many_training_steps'), 4000)
  .option('--train_batch_size <n>', 'images per training step', intArg('--train_batch_size'), 100)
  .option('--no_second_run', 'skip timing a second retrain process')
  .parse();
const f = cmd.opts<{
  image_dir?: string;
  tfhub_module?: string[];
  engines?: string[];
  num_workers?: number;
  bottleneck_batch_size: number;
  how_many_training_steps: number;
  train_batch_size: number;
  no_second_run?: boolean;
}>();

const imageDir = f.image_dir ?? (fs.existsSync(SHARED_IMAGES) ? SHARED_IMAGES : path.join(ROOT, 'fixtures', 'flower_photos'));
const sharedModules = SHARED_MODULES.filter((m) => fs.existsSync(path.join(m, 'model.json')));
const modules = f.tfhub_module ?? (sharedModules.length > 0 ? sharedModules : [DEFAULT_MODULE]);
const engines = (f.engines?.includes('all') ? [...ENGINES] : (f.engines ?? DEFAULT_ENGINES)) as EngineName[];
for (const e of engines) if (!ENGINES.includes(e)) cmd.error(`error: --engines ${e} is not one of ${ENGINES.join(', ')}, all`);

const loadavg = () => os.loadavg().map((l) => round(l, 2));
const say = (line: string) => process.stderr.write(`bench: ${line}\n`);

type EngineResult = (EngineRun & { cold_ratio_to_anchor: number | null }) | EngineSkipped | { engine: string; error: string };

interface ModuleResult {
  module: string;
  format?: string;
  /** Converting the module to ONNX, once (cached after: every later run reads the .onnx). */
  convert_s?: number;
  onnx_mb?: number;
  anchor: EngineFigures | { skipped: string } | { error: string };
  engines: EngineResult[];
  error?: string;
}

/** A process of its own; async, so that Ctrl-C reaches the driver while one runs. */
async function run(args: string[]): Promise<{ ok: true; stdout: string } | { ok: false; error: string }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
    return { ok: true, stdout };
  } catch (err) {
    const e = err as { code?: number | string; signal?: string; stderr?: string };
    const why = (e.stderr ?? '').trim().split('\n').filter(Boolean);
    return { ok: false, error: `${path.basename(args[0]!)} exited with ${e.signal ?? e.code}: ${why.find((l) => /Error/.test(l)) ?? why.pop() ?? 'no output'}` };
  }
}

/** Runs a bench script in its own process; its last stdout line is its JSON. */
async function child<T>(script: string, args: string[]): Promise<T | { error: string }> {
  const r = await run([path.join(HERE, script), ...args]);
  if (!r.ok) return { error: r.error };
  const last = r.stdout.trim().split('\n').pop();
  return last ? (JSON.parse(last) as T) : { error: `${script} printed nothing` };
}

/** The head on tfjs, on bottlenecks an engine left in `bottleneckDir` (all cached: nothing runs the module). */
async function timeTraining(lists: ImageLists, extractor: FeatureExtractor, bottleneckDir: string) {
  const b = await cacheBottlenecks(lists, extractor, { bottleneckDir, log: silentLogger });
  if (b.computed !== 0) throw new Error(`the training figure found ${b.computed} bottlenecks missing`);
  const training = labeledSet(lists, b, 'training');
  const { s, cpu_s } = await timeHeadTraining(training, labeledSet(lists, b, 'validation'), lists.classes.length, b.size, f.how_many_training_steps, f.train_batch_size);
  return {
    module: extractor.info.spec,
    steps: f.how_many_training_steps,
    train_batch_size: f.train_batch_size,
    shape: `${b.size} → ${lists.classes.length}`,
    train_images: training.y.length,
    s,
    steps_per_s: round(f.how_many_training_steps / s),
    cpu_s,
  };
}

/** A second run as a user starts it: a new `retrain` process, every bottleneck cached. */
async function timeSecondRun(module: string, bottleneckDir: string, tmp: string) {
  const out = path.join(tmp, 'second-run');
  fs.mkdirSync(out, { recursive: true });
  const summary = path.join(out, 'summary.json');
  const t0 = performance.now();
  const r = await run([
    path.join(ROOT, 'bin', 'retrain.js'),
    ...['--image_dir', imageDir, '--tfhub_module', module, '--bottleneck_dir', bottleneckDir, '--module_cache_dir', path.join(tmp, 'modules')],
    ...['--how_many_training_steps', '1', '--output_graph', path.join(out, 'graph'), '--output_labels', path.join(out, 'labels.txt'), '--summary_json', summary],
  ]);
  const wallS = (performance.now() - t0) / 1000;
  if (!r.ok) return { error: r.error };
  const s = JSON.parse(fs.readFileSync(summary, 'utf8')) as { timings_s: Record<string, number>; bottlenecks: { computed: number } };
  const after = ['training', 'testing', 'export', 'report'].reduce((sum, k) => sum + (s.timings_s[k] ?? 0), 0);
  return { module, first_step_s: round(wallS - after, 2), wall_s: round(wallS, 2), computed: s.bottlenecks.computed, timings_s: s.timings_s };
}

async function benchModule(module: string, lists: ImageLists, filesList: string, tmp: string, m: number): Promise<{ result: ModuleResult; extractor?: FeatureExtractor; bottleneckDir?: string }> {
  const result: ModuleResult = { module, anchor: { skipped: 'not run' }, engines: [] };
  const moduleCache = path.join(tmp, 'modules');
  let extractor: FeatureExtractor;
  try {
    extractor = await loadFeatureExtractor({ spec: module, cacheDir: moduleCache, log: silentLogger });
  } catch (err) {
    return { result: { ...result, error: errorMessage(err).split('\n')[0]! } };
  }
  const { info } = extractor;
  result.format = info.format;
  // Converted here, into the cache the onnxruntime engine reads: its cold figure is a run
  // with the conversion cached (the first run with a module pays convert_s once more).
  if (extractor.kind === 'saved-model') result.anchor = { skipped: 'a SavedModel has no ONNX conversion' };
  // The anchor feeds NHWC in the module's range; an .onnx module may want NCHW or per-channel values.
  else if (extractor.kind === 'onnx') result.anchor = { skipped: 'the anchor runs converted TF.js modules' };
  else {
    try {
      const t0 = performance.now();
      const model = await moduleConversion(path.join(moduleCache, 'onnx'), info, extractor.files);
      result.convert_s = round((performance.now() - t0) / 1000, 2);
      result.onnx_mb = round(model.bytes.length / 2 ** 20, 1);
      say(`${module}: anchor`);
      const threads = f.num_workers ? ['--threads', String(f.num_workers)] : [];
      result.anchor = await child<EngineFigures>('anchor.js', ['--model', model.path, '--files', filesList, '--size', String(info.inputHeight), ...threads]);
    } catch (err) {
      result.anchor = { skipped: `the module does not convert to ONNX: ${errorMessage(err).split('\n')[0]}` };
    }
  }
  const anchorMs = 'cold_ms_per_image' in result.anchor ? result.anchor.cold_ms_per_image : undefined;
  let bottleneckDir: string | undefined;
  for (const engine of engines) {
    say(`${module}: ${engine}`);
    const dir = path.join(tmp, `bottlenecks-${m}-${engine}`);
    const r = await child<EngineRun | EngineSkipped>('engine.js', [
      ...['--engine', engine, '--image_dir', imageDir, '--tfhub_module', module, '--module_cache_dir', moduleCache, '--bottleneck_dir', dir],
      ...['--bottleneck_batch_size', String(f.bottleneck_batch_size)],
      ...(f.num_workers ? ['--num_workers', String(f.num_workers)] : []),
    ]);
    if ('cold_ms_per_image' in r) {
      bottleneckDir ??= dir;
      result.engines.push({ ...r, cold_ratio_to_anchor: anchorMs ? round(r.cold_ms_per_image / anchorMs, 2) : null });
    } else result.engines.push({ ...r, engine });
  }
  return { result, extractor, bottleneckDir };
}

// --- the readable table (stderr) ---

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

function describe(r: EngineRun | EngineFigures): string {
  if (!('ran' in r)) return `${r.threads} threads`;
  if (!r.ran) return '–';
  const e = r.ran;
  const how = e.threads !== undefined ? `${e.threads} threads` : e.workers ? `${e.workers} workers` : 'main thread';
  return e.name === r.engine ? how : `ran on ${e.name}, ${how}`;
}

function printTable(results: ModuleResult[], extra: string[]): void {
  const lines: string[] = [];
  for (const m of results) {
    lines.push('', `${m.module} (${m.format ?? '?'})${m.convert_s !== undefined ? `, converted to ONNX in ${m.convert_s} s (${m.onnx_mb} MB)` : ''}`);
    if (m.error) {
      lines.push(`  error: ${m.error}`);
      continue;
    }
    const rows = [['engine', 'threads', 'images', 'cold ms/img', 'warm ms/img', 'cold CPU ms/img', 'peak RSS MB', '× anchor (cold)']];
    const notes: string[] = [];
    const row = (name: string, r: EngineRun | EngineFigures, ratio: string) =>
      rows.push([name, describe(r), String(r.images), String(r.cold_ms_per_image), String(r.warm_ms_per_image), String(r.cold_cpu_ms_per_image), String(r.peak_rss_mb), ratio]);
    if ('cold_ms_per_image' in m.anchor) row('anchor', m.anchor, '1.00');
    else notes.push(`anchor: ${'error' in m.anchor ? m.anchor.error : m.anchor.skipped}`);
    for (const e of m.engines) {
      if ('cold_ms_per_image' in e) {
        row(e.engine, e, e.cold_ratio_to_anchor === null ? '–' : e.cold_ratio_to_anchor.toFixed(2));
        for (const n of e.notes) notes.push(`${e.engine}: ${n}`);
      } else notes.push(`${e.engine}: ${'skipped' in e ? `skipped: ${e.skipped}` : `error: ${e.error}`}`);
    }
    lines.push(table(rows).replace(/^/gm, '  '));
    for (const n of notes) lines.push(`  ${n}`);
  }
  lines.push('', "  (the anchor's warm pass runs every image again; an engine's warm pass reads the bottleneck cache)", ...extra);
  process.stderr.write(lines.join('\n') + '\n');
}

async function main(): Promise<number> {
  const loadBefore = loadavg();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-bench-'));
  // Ctrl-C reaches the children too (same process group); this leaves no temp folder behind.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      fs.rmSync(tmp, { recursive: true, force: true });
      process.exit(128 + os.constants.signals[sig]);
    });
  }
  try {
    // tfjs here converts modules and trains the head: the backend `retrain --backend auto` trains on.
    const backend = await initBackend('auto');
    const lists = await createImageLists(imageDir, { testingPercentage: 10, validationPercentage: 10 }, silentLogger);
    const files = allImages(lists).map((r) => r.file);
    const filesList = path.join(tmp, 'images.txt');
    fs.writeFileSync(filesList, files.join('\n') + '\n');
    // Read once, so that the first process timed does not pay for the disk alone.
    for (const file of files) fs.readFileSync(file);
    say(`${files.length} images in ${imageDir}; modules: ${modules.join(', ')}; engines: ${engines.join(', ')}`);

    const results: ModuleResult[] = [];
    let training: Awaited<ReturnType<typeof timeTraining>> | { skipped: string } | { error: string } = { skipped: 'no engine computed bottlenecks' };
    let secondRun: Awaited<ReturnType<typeof timeSecondRun>> | { skipped: string } = { skipped: 'no engine computed bottlenecks' };
    for (const [m, module] of modules.entries()) {
      const { result, extractor, bottleneckDir } = await benchModule(module, lists, filesList, tmp, m);
      results.push(result);
      // Once per run, on the first module an engine ran: these are tfjs and the CLI, not the module's engine.
      if (extractor && bottleneckDir && 'skipped' in training) {
        if (f.how_many_training_steps > 0) {
          say(`${module}: head training, ${f.how_many_training_steps} steps`);
          training = await timeTraining(lists, extractor, bottleneckDir).catch((err: unknown) => ({ error: errorMessage(err) }));
        } else training = { skipped: '--how_many_training_steps 0' };
        if (f.no_second_run) secondRun = { skipped: '--no_second_run' };
        else {
          say(`${module}: second retrain run, bottlenecks cached`);
          secondRun = await timeSecondRun(module, bottleneckDir, tmp);
        }
      }
      extractor?.dispose();
    }

    const out = {
      image_dir: imageDir,
      images: files.length,
      bottleneck_batch_size: f.bottleneck_batch_size,
      num_workers: f.num_workers ?? null,
      machine: { cores: os.availableParallelism(), cpu_model: os.cpus()[0]?.model ?? null, memory_gb: round(os.totalmem() / 2 ** 30, 1), platform: `${os.platform()} ${os.arch()}`, node: process.version },
      load_average_before: loadBefore,
      load_average_after: loadavg(),
      modules: results,
      head_training: { tfjs_backend: backend.name, ...training },
      second_run: secondRun,
    };
    const t = out.head_training;
    const s = out.second_run;
    printTable(results, [
      '',
      'steps' in t ? `head training (tfjs ${t.tfjs_backend}, ${t.module}): ${t.steps} steps, batch ${t.train_batch_size}, ${t.shape}: ${t.s} s (${t.steps_per_s} steps/s, ${t.cpu_s} CPU s)` : `head training: ${'error' in t ? `error: ${t.error}` : `skipped: ${t.skipped}`}`,
      'first_step_s' in s ? `second retrain run (${s.module}), ${s.computed} bottlenecks computed: first training step after ${s.first_step_s} s` : `second retrain run: ${'error' in s ? `error: ${s.error}` : `skipped: ${s.skipped}`}`,
      `machine: ${out.machine.cores} cores, ${out.machine.cpu_model}; load average ${loadBefore.join(' ')} → ${out.load_average_after.join(' ')}`,
    ]);
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    // Skipped engines are expected; an engine that failed is not.
    const failed = results.some((r) => r.error || 'error' in r.anchor || r.engines.some((e) => 'error' in e)) || 'error' in training || 'error' in secondRun;
    return failed ? 1 : 0;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
