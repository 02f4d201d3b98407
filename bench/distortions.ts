/**
 * Distortion benchmark on ../shared: wall time of the training steps and test accuracy
 * without distortions, with cached variants (--distortion_variants K) and with fresh
 * distortions every step (--distortion_variants 0, retrain.py's way; slow).
 *
 *   node dist/bench/distortions.js [--steps 500] [--variants 10] [--modes plain,variants,fresh]
 *     [--module ../shared/models/mobilenet_v2_100_224] [--crop 10 --scale 10 --brightness 10] [--bottleneck_dir DIR]
 *
 * Bottlenecks land in a temp folder unless --bottleneck_dir reuses a cache, so the first
 * mode also pays for the plain ones (printed separately as the bottleneck stage).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MemoryLogger } from '../src/log.js';
import { defaultRetrainOptions, runRetrain, type RetrainOptions } from '../src/retrain.js';
import { SHARED } from '../test/helpers/fixtures.js';

const { values: a } = parseArgs({
  options: {
    steps: { type: 'string', default: '500' },
    variants: { type: 'string', default: '10' },
    modes: { type: 'string', default: 'plain,variants,fresh' },
    module: { type: 'string', default: path.join(SHARED, 'models', 'mobilenet_v2_100_224') },
    images: { type: 'string', default: path.join(SHARED, 'datasets', 'flowers-dev') },
    crop: { type: 'string', default: '10' },
    scale: { type: 'string', default: '10' },
    brightness: { type: 'string', default: '10' },
    seed: { type: 'string', default: '0' },
    bottleneck_dir: { type: 'string' },
  },
});

if (!fs.existsSync(a.images!) || !fs.existsSync(a.module!)) {
  console.log(`skipped: ${a.images} or ${a.module} is absent (../shared is needed)`);
  process.exit(0);
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-bench-distort-'));
const base: RetrainOptions = {
  ...defaultRetrainOptions(),
  imageDir: a.images!,
  tfhubModule: a.module!,
  moduleCacheDir: path.join(root, 'modules'),
  bottleneckDir: a.bottleneck_dir ?? path.join(root, 'bottlenecks'),
  outputGraph: path.join(root, 'out'),
  outputLabels: path.join(root, 'labels.txt'),
  intermediateOutputGraphsDir: path.join(root, 'intermediate'),
  howManyTrainingSteps: Number(a.steps),
  seed: Number(a.seed),
};
const distortions = { flipLeftRight: true, randomCrop: Number(a.crop), randomScale: Number(a.scale), randomBrightness: Number(a.brightness) };
const configs: Record<string, Partial<RetrainOptions>> = {
  plain: {},
  variants: { ...distortions, distortionVariants: Number(a.variants) },
  fresh: { ...distortions, distortionVariants: 0 },
};

console.log(`steps ${a.steps}, distortions flip + crop ${a.crop}% + scale ${a.scale}% + brightness ${a.brightness}%, module ${a.module}`);
console.log('mode                 bottlenecks_s  distorted_s  training_s  total_s  test_accuracy');
for (const mode of a.modes!.split(',')) {
  const o = configs[mode];
  if (!o) throw new Error(`unknown mode ${mode}: use plain, variants or fresh`);
  const t0 = performance.now();
  const { summary } = await runRetrain({ ...base, ...o }, new MemoryLogger());
  const total = (performance.now() - t0) / 1000;
  const t = summary.timings_s;
  const label = mode === 'variants' ? `variants (K=${a.variants})` : mode === 'fresh' ? 'fresh (K=0)' : 'plain';
  const f = (v: number | undefined, w: number) => (v === undefined ? '-' : v.toFixed(1)).padStart(w);
  console.log(
    `${label.padEnd(20)} ${f(t['bottlenecks'], 13)} ${f(t['distorted_bottlenecks'], 12)} ${f(t['training'], 11)} ${f(total, 8)}  ` +
      `${((summary.test?.accuracy ?? NaN) * 100).toFixed(1)}% (N=${summary.test?.n})`,
  );
}
fs.rmSync(root, { recursive: true, force: true });
