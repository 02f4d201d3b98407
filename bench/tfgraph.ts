/**
 * TensorFlow interop figures (needs ../shared): load time of retrain.py's frozen
 * graph, label-image throughput and accuracy with it on flowers-dev, and the time
 * and size of writing a .pb and a SavedModel from the TF Hub MobileNet V2 module.
 * Run: npx tsc -p tsconfig.json && node dist/bench/tfgraph.js [repeats]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/backend.js';
import { exportModel } from '../src/export/index.js';
import { exportSavedModel } from '../src/export/tf.js';
import { classifyImage, expandImageArgs } from '../src/label_image.js';
import { loadClassifier } from '../src/export/load.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';

const SHARED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared');
const REF = path.join(SHARED, 'reference', 'retrain_py_flowers_mobilenet_v1_050');
const repeats = Number(process.argv[2] ?? 3);

function dirBytes(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((s, f) => s + dirBytes(path.join(p, f)), 0);
}

const backend = await initBackend('auto');
console.log(`backend ${backend.name}, ${os.cpus().length} cpus`);
const images = await expandImageArgs([path.join(SHARED, 'datasets', 'flowers-dev')]);

for (let r = 1; r <= repeats; r++) {
  let t0 = performance.now();
  const c = await loadClassifier({
    graph: path.join(REF, 'rounded_graph.pb.gz'),
    labels: path.join(REF, 'retrained_labels.txt'),
    inputLayer: 'input',
    outputLayer: 'final_result',
    inputMean: 128,
    inputStd: 128,
    inputHeight: 224,
    inputWidth: 224,
  });
  const loadS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  let correct = 0;
  for (const img of images) {
    const res = await classifyImage(c, img, 1);
    if (res.predictions[0]!.label === path.basename(path.dirname(img))) correct++;
  }
  const classifyS = (performance.now() - t0) / 1000;
  c.dispose();
  console.log(
    `run ${r}: retrain.py graph load ${loadS.toFixed(2)} s; ${images.length} photos in ${classifyS.toFixed(1)} s ` +
      `(${(images.length / classifyS).toFixed(1)}/s); top-1 ${correct}/${images.length} = ${((100 * correct) / images.length).toFixed(1)}%`,
  );
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tfgraph-'));
const ex = await loadFeatureExtractor({ spec: path.join(SHARED, 'models', 'tfhub_mobilenet_v2_100_224_feature_vector'), cacheDir: tmp, log: silentLogger });
const rng = seedrandom('bench');
const classes = 5;
const head = {
  weights: Float32Array.from({ length: ex.info.bottleneckSize * classes }, () => rng() - 0.5),
  biases: Float32Array.from({ length: classes }, () => rng() - 0.5),
};
const opts = { labels: ['a', 'b', 'c', 'd', 'e'], finalTensorName: 'final_result' };
for (let r = 1; r <= repeats; r++) {
  const times: Record<string, number> = {};
  for (const [name, dir, fn] of [
    ['tfjs', path.join(tmp, `tfjs${r}`), exportModel],
    ['pb', path.join(tmp, `g${r}.pb`), exportModel],
    ['saved_model', path.join(tmp, `sm${r}`), exportSavedModel],
  ] as const) {
    const t0 = performance.now();
    await fn(ex, head, { ...opts, dir });
    times[name] = (performance.now() - t0) / 1000;
    times[`${name}_MB`] = dirBytes(dir) / 1e6;
  }
  console.log(
    `run ${r}: MobileNet V2 export: TF.js folder ${times['tfjs']!.toFixed(2)} s (${times['tfjs_MB']!.toFixed(2)} MB), ` +
      `.pb ${times['pb']!.toFixed(2)} s (${times['pb_MB']!.toFixed(2)} MB), SavedModel ${times['saved_model']!.toFixed(2)} s (${times['saved_model_MB']!.toFixed(2)} MB)`,
  );
}
ex.dispose();
fs.rmSync(tmp, { recursive: true, force: true });
