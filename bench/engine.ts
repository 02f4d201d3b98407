/**
 * `node dist/bench/engine.js --engine E --image_dir D --tfhub_module M --module_cache_dir C --bottleneck_dir B`
 *
 * One engine of `npm run bench` (bench/bench.ts starts one process per engine, so
 * peak RSS and CPU time are that engine's alone). Loads the module as `retrain
 * --backend E` does and times the bottleneck stage twice on the same folder: cold
 * (empty --bottleneck_dir: decode, inference, cache writes, engine start-up) and warm
 * (every bottleneck cached). Prints one JSON line: the figures, or why the engine
 * was skipped (tfjs-node not installed).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { initBackend, type BackendChoice } from '../src/backend.js';
import { cacheBottlenecks, type Bottlenecks, type ModuleEngine } from '../src/bottleneck/index.js';
import { intArg } from '../src/cli/common.js';
import { allImages, createImageLists } from '../src/dataset/index.js';
import { errorMessage } from '../src/errors.js';
import { silentLogger, type Logger } from '../src/log.js';
import { loadModule } from '../src/module/index.js';
import { round, timePasses, type EngineFigures } from './anchor.js';

/** The engines `npm run bench` knows, each the --backend that makes retrain run the module there. */
export const ENGINES = ['onnxruntime', 'wasm', 'tensorflow', 'cpu'] as const;
export type EngineName = (typeof ENGINES)[number];

export interface EngineRun extends EngineFigures {
  /** What actually ran the module (onnxruntime may fall back to tfjs: `notes` says why). */
  ran: ModuleEngine | null;
  /** The tfjs backend of the process (onnxruntime's probe reference, and every tfjs engine). */
  tfjs_backend: string;
  module_load_s: number;
  failed_images: number;
  /** The run's warnings, e.g. why the module did not run on onnxruntime. */
  notes: string[];
}

/** A line the driver prints instead of figures. */
export interface EngineSkipped {
  engine: string;
  skipped: string;
}

/** Keeps warnings (a fallback's reason) for the report; the child's stdout is the figures alone. */
function noteLogger(notes: string[]): Logger {
  return { info() {}, warn: (m) => void notes.push(m) };
}

async function run(f: {
  engine: EngineName;
  image_dir: string;
  tfhub_module: string;
  module_cache_dir: string;
  bottleneck_dir: string;
  num_workers?: number;
  bottleneck_batch_size: number;
}): Promise<EngineRun | EngineSkipped> {
  if (f.engine === 'tensorflow') {
    // An optional dependency that often fails to install: absent is a skip, not an error.
    const pkg = '@tensorflow/tfjs-node';
    try {
      await import(pkg);
    } catch (err) {
      return { engine: f.engine, skipped: `@tensorflow/tfjs-node is not importable (${errorMessage(err).split('\n')[0]})` };
    }
  }
  const notes: string[] = [];
  const log = noteLogger(notes);
  const backend = await initBackend(f.engine as BackendChoice);
  // The folder's own warnings (few images per class) are the driver's business, not this engine's.
  const lists = await createImageLists(f.image_dir, { testingPercentage: 10, validationPercentage: 10 }, silentLogger);
  const n = allImages(lists).length;
  const t0 = performance.now();
  const extractor = await loadModule({ tfhubModule: f.tfhub_module, backend: f.engine, numWorkers: f.num_workers, moduleCacheDir: f.module_cache_dir }, log);
  const moduleLoadS = (performance.now() - t0) / 1000;
  const results: Bottlenecks[] = [];
  const figures = await timePasses(f.engine, n, 0, async () => {
    results.push(await cacheBottlenecks(lists, extractor, { bottleneckDir: f.bottleneck_dir, batchSize: f.bottleneck_batch_size, numWorkers: f.num_workers, log }));
  });
  extractor.dispose();
  const [cold, warm] = results as [Bottlenecks, Bottlenecks];
  if (warm.computed !== 0) throw new Error(`the warm pass recomputed ${warm.computed} bottlenecks`);
  return {
    ...figures,
    threads: cold.engine?.threads ?? cold.engine?.workers ?? 0,
    ran: cold.engine ?? null,
    tfjs_backend: backend.name,
    module_load_s: round(moduleLoadS, 2),
    failed_images: cold.failed.length,
    notes,
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const f = new Command('engine')
    .requiredOption('--engine <name>', ENGINES.join(', '))
    .requiredOption('--image_dir <dir>', 'folder with one subfolder of images per class')
    .requiredOption('--tfhub_module <path>', 'module, as retrain takes it')
    .requiredOption('--module_cache_dir <dir>', 'downloads and converted modules')
    .requiredOption('--bottleneck_dir <dir>', 'an empty folder: the cold pass fills it')
    .option('--num_workers <n>', 'worker threads (tfjs) or intra-op threads (onnxruntime); default one per core', intArg('--num_workers'))
    .option('--bottleneck_batch_size <n>', 'images per inference call', intArg('--bottleneck_batch_size'), 4)
    .parse()
    .opts<{ engine: EngineName; image_dir: string; tfhub_module: string; module_cache_dir: string; bottleneck_dir: string; num_workers?: number; bottleneck_batch_size: number }>();
  if (!ENGINES.includes(f.engine)) throw new Error(`--engine ${f.engine} is not one of ${ENGINES.join(', ')}`);
  process.stdout.write(JSON.stringify(await run(f)) + '\n');
}
