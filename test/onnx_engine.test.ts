/**
 * ONNX Runtime as the bottleneck engine, through the real CLI: which engine runs is
 * logged, a module it cannot run falls back to tfjs in one line, a damaged converted
 * module is rebuilt, and one bottleneck cache serves every engine.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { HEADER_BYTES } from '../src/bottleneck/format.js';
import { folderSaveHandler } from '../src/module/io.js';
import { makeGraphModel, makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

const ENGINE_LINE = /^INFO:retrain:Module forward pass on onnxruntime \(\d+ threads?\), (converted and )?cached at (.+\.onnx)$/m;

async function setup(kind: 'layers' | 'graph' | 'unsupported') {
  const root = tempDir('onnx-engine-');
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 6 });
  const moduleDir = path.join(root, 'module');
  const module = kind === 'layers' ? await makeLayersModel(moduleDir) : kind === 'graph' ? makeGraphModel(moduleDir) : await makeUpsamplingModel(moduleDir);
  const args = (backend: string, bottlenecks = 'bn', extra: string[] = []) => [
    '--image_dir', images,
    '--tfhub_module', module,
    '--module_cache_dir', path.join(root, 'modules'),
    '--bottleneck_dir', path.join(root, bottlenecks),
    '--output_graph', path.join(root, 'out'),
    '--output_labels', path.join(root, 'labels.txt'),
    '--summary_json', path.join(root, 'summary.json'),
    '--summaries_dir', path.join(root, 'logs'),
    '--how_many_training_steps', '5',
    '--backend', backend,
    ...extra,
  ];
  const computed = () => {
    const { bottlenecks: b } = JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8')) as { bottlenecks: { computed: number; cached: number } };
    return { computed: b.computed, cached: b.cached };
  };
  /** The summary's record of what ran the module, and the report's line for it. */
  const engine = () => {
    const { bottlenecks: b } = JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8')) as { bottlenecks: { engine?: { name: string; threads?: number; workers?: number } } };
    const html = fs.readFileSync(path.join(root, 'report.html'), 'utf8');
    return { summary: b.engine, report: /<th scope="row">module engine<\/th><td>([^<]*)<\/td>/.exec(html)?.[1] };
  };
  return { root, args, computed, engine };
}

/** UpSampling2D is outside the converter's op set; tfjs runs it. */
async function makeUpsamplingModel(dir: string): Promise<string> {
  await useCpuBackend();
  const input = tf.input({ shape: [16, 16, 3] });
  const conv = tf.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(input) as tf.SymbolicTensor;
  const up = tf.layers.upSampling2d({ size: [2, 2] }).apply(conv) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(up) as tf.SymbolicTensor });
  await model.save(folderSaveHandler(dir));
  model.dispose();
  return dir;
}

/** Every cached bottleneck below `dir`, by file name. */
function readCache(dir: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const f of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!f.isFile()) continue;
    const file = path.join(f.parentPath, f.name);
    const bytes = fs.readFileSync(file);
    const values = new Float32Array(bytes.subarray(HEADER_BYTES).buffer.slice(bytes.byteOffset + HEADER_BYTES, bytes.byteOffset + bytes.length));
    out.set(path.relative(dir, file), values);
  }
  return out;
}

for (const kind of ['layers', 'graph'] as const) {
  test(`--backend auto runs a ${kind} module on onnxruntime, says so, and caches the converted module`, async () => {
    const s = await setup(kind);
    const r = runCli('retrain', s.args('auto'));
    assert.equal(r.status, 0, r.stderr);
    const m = ENGINE_LINE.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.equal(m[1], 'converted and ');
    assert.ok(m[2]!.startsWith(path.join(s.root, 'modules', 'onnx') + path.sep), m[2]);
    assert.ok(fs.existsSync(m[2]!));
    assert.doesNotMatch(r.stderr, /worker thread/);
    assert.deepEqual(s.computed(), { computed: 18, cached: 0 });
  });
}

test('a module with an op the converter lacks falls back to tfjs in one line, and the run completes', async () => {
  const s = await setup('unsupported');
  const r = runCli('retrain', s.args('onnxruntime'));
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => /onnxruntime/.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^WARNING:retrain:Module forward pass on tfjs \w+, not onnxruntime: .*does not cover: UpSampling2D$/);
  assert.deepEqual(s.computed(), { computed: 18, cached: 0 });
});

test('a damaged converted module is rebuilt on the next run', async () => {
  const s = await setup('layers');
  const first = runCli('retrain', s.args('onnxruntime', 'bn1'));
  assert.equal(first.status, 0, first.stderr);
  const onnxFile = ENGINE_LINE.exec(first.stderr)?.[2];
  assert.ok(onnxFile, first.stderr);
  const bytes = fs.readFileSync(onnxFile);
  fs.writeFileSync(onnxFile, bytes.subarray(0, bytes.length >> 1));
  // A fresh bottleneck dir, so the module has to run again.
  const second = runCli('retrain', s.args('onnxruntime', 'bn2'));
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stderr, /^WARNING:retrain:Rebuilt the converted module: .* does not match its checksum/m);
  assert.equal(ENGINE_LINE.exec(second.stderr)?.[2], onnxFile);
  assert.deepEqual(fs.readFileSync(onnxFile), bytes);
  const third = runCli('retrain', s.args('onnxruntime', 'bn3'));
  assert.equal(third.status, 0, third.stderr);
  assert.equal(ENGINE_LINE.exec(third.stderr)?.[1], undefined, 'the third run reads the cached conversion');
});

test('one bottleneck cache serves every engine: wasm ↔ onnxruntime reuse it, and their values agree within 1e-4', async () => {
  const s = await setup('layers');
  // wasm first, then onnxruntime reuses its cache.
  const wasm = runCli('retrain', s.args('wasm', 'bn-wasm'));
  assert.equal(wasm.status, 0, wasm.stderr);
  assert.deepEqual(s.computed(), { computed: 18, cached: 0 });
  // The summary and the report say which engine ran the module: here the wasm worker pool.
  const workers = Number(/Running the module in (\d+) worker thread/.exec(wasm.stderr)?.[1]);
  assert.ok(workers >= 1, wasm.stderr);
  assert.deepEqual(s.engine(), { summary: { name: 'wasm', workers }, report: `wasm, ${workers} worker thread${workers === 1 ? '' : 's'}` });
  const reuse = runCli('retrain', s.args('onnxruntime', 'bn-wasm'));
  assert.equal(reuse.status, 0, reuse.stderr);
  assert.deepEqual(s.computed(), { computed: 0, cached: 18 });
  // Every bottleneck cached: the module did not run, and nothing claims it did.
  assert.deepEqual(s.engine(), { summary: undefined, report: '– (every bottleneck was cached)' });
  // onnxruntime first, then wasm reuses its cache.
  const ort = runCli('retrain', s.args('onnxruntime', 'bn-ort'));
  assert.equal(ort.status, 0, ort.stderr);
  assert.match(ort.stderr, ENGINE_LINE);
  assert.deepEqual(s.computed(), { computed: 18, cached: 0 });
  const threads = Number(/Module forward pass on onnxruntime \((\d+) threads?\)/.exec(ort.stderr)?.[1]);
  assert.ok(threads >= 1, ort.stderr);
  assert.deepEqual(s.engine(), { summary: { name: 'onnxruntime', threads }, report: `onnxruntime, ${threads} thread${threads === 1 ? '' : 's'}` });
  const back = runCli('retrain', s.args('wasm', 'bn-ort'));
  assert.equal(back.status, 0, back.stderr);
  assert.deepEqual(s.computed(), { computed: 0, cached: 18 });

  const a = readCache(path.join(s.root, 'bn-wasm'));
  const b = readCache(path.join(s.root, 'bn-ort'));
  assert.equal(a.size, 18);
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let worst = 0;
  for (const [k, v] of a) {
    const w = b.get(k)!;
    for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(v[i]! - w[i]!));
  }
  assert.ok(worst <= 1e-4, `max abs difference ${worst}`);
});

test('--distortion_variants 0: fresh distortions run on onnxruntime too, and train as they do on wasm', async () => {
  const s = await setup('layers');
  const history = () => (JSON.parse(fs.readFileSync(path.join(s.root, 'summary.json'), 'utf8')) as { training: { history: Array<{ crossEntropy: number }> } }).training.history;
  const fresh = ['--flip_left_right', '--random_brightness', '20', '--distortion_variants', '0', '--seed', '3'];
  const wasm = runCli('retrain', s.args('wasm', 'bn', fresh));
  assert.equal(wasm.status, 0, wasm.stderr);
  const onWasm = history();
  // The bottleneck cache is complete: the module first runs for the distortions.
  const ort = runCli('retrain', s.args('onnxruntime', 'bn', fresh));
  assert.equal(ort.status, 0, ort.stderr);
  assert.match(ort.stderr, /Bottlenecks: 0 computed, 18 cached[^]*fresh bottlenecks at every training step[^]*Module forward pass on onnxruntime/);
  const onOrt = history();
  assert.equal(onOrt.length, onWasm.length);
  onOrt.forEach((p, i) => assert.ok(Math.abs(p.crossEntropy - onWasm[i]!.crossEntropy) <= 1e-3, `step ${i}: ${p.crossEntropy} vs ${onWasm[i]!.crossEntropy}`));
});

for (const kind of ['layers', 'graph'] as const) {
  test(`label-image runs a retrained ${kind} model on onnxruntime, with tfjs' scores`, async () => {
    const s = await setup(kind);
    const r = runCli('retrain', s.args('wasm'));
    assert.equal(r.status, 0, r.stderr);
    const label = (backend: string) => {
      const li = runCli('label-image', ['--graph', path.join(s.root, 'out'), '--image', path.join(s.root, 'images'), '--top_k', '3', '--json', '--backend', backend, '--module_cache_dir', path.join(s.root, 'modules')]);
      assert.equal(li.status, 0, li.stderr);
      return { stderr: li.stderr, results: JSON.parse(li.stdout) as Array<{ image: string; predictions: Array<{ label: string; score: number }> }> };
    };
    const ort = label('onnxruntime');
    assert.match(ort.stderr, /^INFO:label-image:Classifier on onnxruntime \(\d+ threads?\), converted and cached at .*\.onnx$/m);
    const wasm = label('wasm');
    assert.doesNotMatch(wasm.stderr, /onnxruntime/);
    assert.equal(ort.results.length, 18);
    ort.results.forEach((o, i) => {
      const w = wasm.results[i]!;
      assert.equal(o.image, w.image);
      assert.deepEqual(o.predictions.map((p) => p.label), w.predictions.map((p) => p.label));
      o.predictions.forEach((p, k) => assert.ok(Math.abs(p.score - w.predictions[k]!.score) <= 1e-4, `${o.image}: ${p.score} vs ${w.predictions[k]!.score}`));
    });
  });
}

test('--output_graph out.onnx: final_result with the labels inside; label-image and plain onnxruntime-node give the TF.js export\'s scores', async () => {
  const s = await setup('layers');
  const onnxFile = path.join(s.root, 'model.onnx');
  const tfjs = runCli('retrain', s.args('wasm', 'bn', ['--seed', '5']));
  assert.equal(tfjs.status, 0, tfjs.stderr);
  const r = runCli('retrain', [...s.args('wasm', 'bn', ['--seed', '5']), '--output_graph', onnxFile, '--intermediate_store_frequency', '0']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.statSync(onnxFile).isFile());

  const label = (graph: string) => {
    const li = runCli('label-image', ['--graph', graph, '--image', path.join(s.root, 'images'), '--top_k', '3', '--json', '--backend', 'wasm']);
    assert.equal(li.status, 0, li.stderr);
    return JSON.parse(li.stdout) as Array<{ image: string; predictions: Array<{ label: string; score: number }> }>;
  };
  const fromOnnx = label(onnxFile);
  const fromTfjs = label(path.join(s.root, 'out'));
  assert.equal(fromOnnx.length, 18);
  fromOnnx.forEach((o, i) => {
    const t = fromTfjs[i]!;
    assert.deepEqual(o.predictions.map((p) => p.label), t.predictions.map((p) => p.label));
    o.predictions.forEach((p, k) => assert.ok(Math.abs(p.score - t.predictions[k]!.score) <= 1e-4, `${o.image}: ${p.score} vs ${t.predictions[k]!.score}`));
  });

  // No project code: onnxruntime-node alone reads the classes and scores a batch.
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(onnxFile);
  assert.deepEqual(session.outputNames, ['final_result']);
  const x = new Float32Array(2 * 32 * 32 * 3).map((_, i) => ((i % 97) / 48.5) - 1);
  const out = (await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, [2, 32, 32, 3]) }))['final_result']!;
  assert.deepEqual(out.dims, [2, 3]);
  const p = out.data as Float32Array;
  assert.ok(Math.abs(p[0]! + p[1]! + p[2]! - 1) < 1e-5);
  await session.release();
});
