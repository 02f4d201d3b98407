/**
 * Equality on ../shared's real modules and photos: ONNX Runtime's bottlenecks equal
 * tfjs' within 1e-4. Skipped, with the reason, where ../shared is absent.
 * bench/onnx_equality.ts runs the same check over all 600 photos.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { initBackend } from '../src/backend.js';
import { loadModuleInput } from '../src/image/index.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { convertModule } from '../src/module/onnx/convert.js';
import { engineMaxAbsDiff } from '../src/module/onnx/probe.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { SHARED, SKIP_SHARED, tempDir } from './helpers/fixtures.js';

/** The TF.js files of a module the converter reads; a SavedModel has none. */
function tfjsFiles(fe: FeatureExtractor) {
  if (fe.kind === 'saved-model' || fe.kind === 'onnx') throw new Error(`${fe.info.spec} is a ${fe.info.format}, not a TF.js model`);
  return fe.files;
}

const MODELS = ['mobilenet_v1_075_224', 'mobilenet_v1_100_224', 'mobilenet_v2_035_224', 'mobilenet_v2_100_224', 'tfhub_mobilenet_v2_100_224_feature_vector'];
const FLOWERS = path.join(SHARED, 'datasets', 'flowers-dev');
const TOL = 1e-4;

/** The first photo of each class. */
function photos(): string[] {
  return fs
    .readdirSync(FLOWERS, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((cls) => path.join(FLOWERS, cls, fs.readdirSync(path.join(FLOWERS, cls)).filter((f) => /\.jpe?g$/i.test(f)).sort()[0]!));
}

before(async () => {
  if (!SKIP_SHARED) await initBackend('wasm');
});

for (const name of MODELS) {
  test(`${name}: ONNX Runtime bottlenecks equal tfjs' within ${TOL} on real photos`, { skip: SKIP_SHARED }, async () => {
    const work = tempDir('retrain-onnx-shared-');
    // Plain tfjs predict as the reference, not the fused kernels.
    const fe = await loadFeatureExtractor({ spec: path.join(SHARED, 'models', name), cacheDir: work, fused: false, log: silentLogger });
    const { inputHeight: h, inputWidth: w } = fe.info;
    const session = await createOnnxSession(await convertModule(tfjsFiles(fe), { bottleneck: fe.info.bottleneckTensor, height: h, width: w }));
    try {
      const files = photos();
      const batch = new Float32Array(files.length * h * w * 3);
      for (const [i, f] of files.entries()) batch.set(await loadModuleInput(f, fe.inputSpec), i * h * w * 3);
      const d = await engineMaxAbsDiff(session, (x) => fe.extract(x), batch, files.length, h, w);
      assert.ok(d <= TOL, `max abs diff ${d} over ${files.length} photos`);
    } finally {
      await session.dispose();
      fe.dispose();
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
}
