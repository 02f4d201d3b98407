/**
 * The issues' acceptance checks on real data: ../shared's flowers-dev photos and
 * ImageNet MobileNets. Skipped, with the reason, where ../shared is absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { createImageLists, whichSet } from '../src/dataset/index.js';
import { loadModuleInput, rangeToMeanStd } from '../src/image/index.js';
import { MemoryLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { runCli, SHARED, SKIP_SHARED, tempDir } from './helpers/fixtures.js';

const FLOWERS = path.join(SHARED, 'datasets', 'flowers-dev');
const LAYERS_V2 = path.join(SHARED, 'models', 'mobilenet_v2_100_224');
const GRAPH_V2 = path.join(SHARED, 'models', 'tfhub_mobilenet_v2_100_224_feature_vector');
const REFERENCE = path.join(SHARED, 'reference', 'retrain_py_flowers_mobilenet_v1_050');
const work = tempDir('retrain-shared-');
const bottlenecks = path.join(work, 'bottlenecks');

interface Summary {
  split: Record<string, Record<string, string[]>>;
  bottlenecks: { computed: number; cached: number; failed: unknown[]; engine?: { name: string } };
  test: { accuracy: number; n: number; predictions: Array<{ file: string; predicted_label: string; score: number }> };
}
const readSummary = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Summary;

test('600 bottlenecks are computed once, then all come from the cache; the split follows the rule', { skip: SKIP_SHARED }, () => {
  const s = path.join(work, 's1.json');
  const args = ['--image_dir', FLOWERS, '--tfhub_module', LAYERS_V2, '--bottleneck_dir', bottlenecks, '--bottlenecks_only', '--summary_json', s];
  const first = runCli('retrain', args);
  assert.equal(first.status, 0, first.stderr);
  const { engine, ...counts } = readSummary(s).bottlenecks;
  assert.deepEqual(counts, { computed: 600, cached: 0, failed: [] });
  // --backend auto: the module converts, so ONNX Runtime ran it.
  assert.equal(engine?.name, 'onnxruntime');
  assert.match(first.stderr, /INFO:retrain:600 bottleneck files created\./);
  const second = runCli('retrain', args);
  assert.equal(second.status, 0, second.stderr);
  const sum = readSummary(s);
  assert.deepEqual(sum.bottlenecks, { computed: 0, cached: 600, failed: [] });

  let total = 0;
  for (const [category, byLabel] of Object.entries(sum.split)) {
    for (const [label, names] of Object.entries(byLabel)) {
      for (const name of names) {
        assert.ok(fs.existsSync(path.join(FLOWERS, label, name)), name);
        assert.equal(whichSet(name, { testingPercentage: 10, validationPercentage: 10 }), category, name);
        total++;
      }
    }
  }
  assert.equal(total, 600);
});

test('the TF Hub-style graph model gives the layers model bottlenecks within 1e-4', { skip: SKIP_SHARED }, async () => {
  await initBackend('auto');
  const log = new MemoryLogger();
  const all = await createImageLists(FLOWERS, { testingPercentage: 10, validationPercentage: 10 }, log);
  // 25 photos of each class keep this test short: the graph model runs on wasm here.
  const lists = { ...all, classes: all.classes.map((c) => ({ ...c, training: c.training.slice(0, 25), validation: [], testing: [] })) };
  const layers = await loadFeatureExtractor({ spec: LAYERS_V2, cacheDir: '', log });
  const graph = await loadFeatureExtractor({ spec: GRAPH_V2, cacheDir: '', log });
  assert.deepEqual(layers.info.inputRange, [-1, 1]);
  assert.deepEqual(graph.info.inputRange, [0, 1]);
  const a = await cacheBottlenecks(lists, layers, { bottleneckDir: bottlenecks, log });
  assert.equal(a.cached, 125, 'the layers bottlenecks come from the first test');
  const b = await cacheBottlenecks(lists, graph, { bottleneckDir: bottlenecks, log });
  assert.equal(b.computed, 125, 'a different module never reuses the cache');
  let max = 0;
  for (const [file, va] of a.values) {
    const vb = b.values.get(file)!;
    assert.equal(vb.length, 1280);
    for (let i = 0; i < va.length; i++) max = Math.max(max, Math.abs(va[i]! - vb[i]!));
  }
  assert.ok(max < 1e-4, `max abs difference ${max}`);
  layers.dispose();
  graph.dispose();
});

test('default flags: test accuracy >= 80%, label-image agrees, the export loads in plain tfjs, same seed same numbers', { skip: SKIP_SHARED }, async () => {
  const out = path.join(work, 'output_graph');
  const labels = path.join(work, 'output_labels.txt');
  const s = path.join(work, 's2.json');
  const args = ['--image_dir', FLOWERS, '--tfhub_module', LAYERS_V2, '--bottleneck_dir', bottlenecks, '--output_graph', out, '--output_labels', labels, '--summary_json', s, '--summaries_dir', path.join(work, 'logs')];
  const run1 = runCli('retrain', args);
  assert.equal(run1.status, 0, run1.stderr);
  const sum = readSummary(s);
  assert.equal(sum.bottlenecks.cached, 600);
  assert.ok(sum.test.accuracy >= 0.8, `test accuracy ${sum.test.accuracy}`);
  assert.equal(sum.test.n, Object.values(sum.split['testing']!).flat().length);
  // The labels file is byte for byte what retrain.py wrote for flower_photos.
  assert.equal(fs.readFileSync(labels, 'utf8'), fs.readFileSync(path.join(REFERENCE, 'retrained_labels.txt'), 'utf8'));

  const files = sum.test.predictions.map((p) => p.file);
  const li = runCli('label-image', ['--graph', out, '--labels', labels, '--image', ...files, '--top_k', '5', '--json']);
  assert.equal(li.status, 0, li.stderr);
  const results = JSON.parse(li.stdout) as Array<{ image: string; predictions: Array<{ index: number; label: string; score: number }> }>;
  assert.equal(results.length, files.length);
  results.forEach((r, i) => {
    assert.equal(r.image, files[i]);
    assert.equal(r.predictions[0]!.label, sum.test.predictions[i]!.predicted_label, r.image);
  });

  // The export, read with nothing but tfjs and the files, gives label-image's probabilities.
  await initBackend('auto');
  const json = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')) as tf.io.ModelJSON & { userDefinedMetadata: { retrain: { inputRange: [number, number]; labels: string[] } } };
  const weightData = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(out, p)))));
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
    }),
  );
  assert.deepEqual(json.userDefinedMetadata.retrain.labels, ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);
  const spec = { height: 224, width: 224, ...rangeToMeanStd(json.userDefinedMetadata.retrain.inputRange) };
  let max = 0;
  for (const r of results.slice(0, 20)) {
    const input = await loadModuleInput(r.image, spec);
    const probs = tf.tidy(() => (model.predict(tf.tensor4d(input, [1, 224, 224, 3])) as tf.Tensor).dataSync());
    for (const p of r.predictions) max = Math.max(max, Math.abs(probs[p.index]! - p.score));
  }
  assert.ok(max < 1e-5, `max probability difference ${max}`);
  model.dispose();

  const run2 = runCli('retrain', args);
  assert.equal(run2.status, 0, run2.stderr);
  const numbers = (t: string) => t.split('\n').filter((l) => /Step \d+: |Final test accuracy/.test(l));
  assert.equal(numbers(run1.stderr).length, 401 * 3 + 1);
  assert.deepEqual(numbers(run2.stderr), numbers(run1.stderr));
});
