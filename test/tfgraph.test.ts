import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import protobuf from 'protobufjs';
import * as tf from '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { exportModel } from '../src/export/index.js';
import type { HeadValues } from '../src/train/index.js';
import { exportSavedModel } from '../src/export/tf.js';
import { artifactsToGraphDef, encodeGraphDef, graphDefToArtifacts } from '../src/export/tfgraph.js';
import { unfuseForTensorFlow } from '../src/export/unfuse.js';
import type { GraphNode } from '../src/export/nodes.js';
import { loadClassifier, type Classifier } from '../src/export/load.js';
import { silentLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { REPO_ROOT, SHARED, SKIP_SHARED, makeGraphModel, makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

const PROTO = path.join(REPO_ROOT, 'protos', 'tensorflow.proto');
const RETRAIN_PY = path.join(SHARED, 'reference', 'retrain_py_flowers_mobilenet_v1_050');
const FLOWERS = path.join(SHARED, 'datasets', 'flowers-dev');

/**
 * Protobuf wire fields, read with protobufjs's bare Reader and field numbers taken
 * from TensorFlow's .proto files: a check that shares nothing with the writer.
 */
type Field = { no: number; varint?: number; bytes?: Uint8Array; f32?: number };
function wire(buf: Uint8Array): Field[] {
  const r = protobuf.Reader.create(buf);
  const out: Field[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    const no = tag >>> 3;
    switch (tag & 7) {
      case 0: out.push({ no, varint: Number(r.int64().toString()) }); break;
      case 1: r.skip(8); out.push({ no }); break;
      case 2: out.push({ no, bytes: r.bytes() }); break;
      case 5: out.push({ no, f32: r.float() }); break;
      default: throw new Error(`wire type ${tag & 7} in field ${no}`);
    }
  }
  return out;
}
const all = (fs_: Field[], no: number) => fs_.filter((f) => f.no === no);
const one = (fs_: Field[], no: number) => {
  const got = all(fs_, no);
  assert.equal(got.length, 1, `field ${no} once`);
  return got[0]!;
};
const str = (f: Field) => Buffer.from(f.bytes!).toString('utf8');
/** map<string, V> entries: key = 1, value = 2. */
function mapOf(entries: Field[]): Map<string, Field[]> {
  return new Map(entries.map((e) => {
    const kv = wire(e.bytes!);
    return [str(one(kv, 1)), wire(one(kv, 2).bytes!)];
  }));
}
/** TensorShapeProto: dim = 2, Dim.size = 1 (an absent size is 0). */
const shapeOf = (f: Field[]) => all(f, 2).map((d) => all(wire(d.bytes!), 1)[0]?.varint ?? 0);

/** GraphDef: node = 1; NodeDef: name = 1, op = 2, input = 3, attr = 5. */
function nodesOf(graphDef: Uint8Array) {
  return all(wire(graphDef), 1).map((n) => {
    const f = wire(n.bytes!);
    return { name: str(one(f, 1)), op: str(one(f, 2)), input: all(f, 3).map(str), attr: mapOf(all(f, 5)) };
  });
}

function seededHead(size: number, classes: number, seed: string): HeadValues {
  const rng = seedrandom(seed);
  return {
    weights: Float32Array.from({ length: size * classes }, () => (rng() - 0.5) * 0.5),
    biases: Float32Array.from({ length: classes }, () => (rng() - 0.5) * 0.2),
  };
}

async function probs(c: Classifier, x: tf.Tensor4D): Promise<Float32Array> {
  const y = c.run(x);
  const out = (await y.data()) as Float32Array;
  y.dispose();
  return out;
}

before(useCpuBackend);

/** Writes the same head three ways: TF.js folder, frozen .pb, SavedModel; returns the paths. */
async function exportAll(ex: FeatureExtractor, head: HeadValues, labels: string[], root: string) {
  const folder = path.join(root, 'tfjs');
  const pb = path.join(root, 'output_graph.pb');
  const saved = path.join(root, 'saved_model');
  const opts = { labels, finalTensorName: 'final_result' };
  await exportModel(ex, head, { ...opts, dir: folder });
  await exportModel(ex, head, { ...opts, dir: pb });
  await exportSavedModel(ex, head, { ...opts, dir: saved });
  return { folder, pb, saved };
}

async function assertSameProbabilities(folder: string, pb: string, x: tf.Tensor4D): Promise<void> {
  const a = await loadClassifier({ graph: folder });
  const b = await loadClassifier({ graph: pb });
  try {
    assert.deepEqual([b.spec.height, b.spec.width], [a.spec.height, a.spec.width], 'the .pb input placeholder has the module size');
    const pa = await probs(a, x);
    const pbv = await probs(b, x);
    assert.equal(pbv.length, pa.length);
    for (let i = 0; i < pa.length; i++) assert.ok(Math.abs(pa[i]! - pbv[i]!) <= 1e-5, `probability ${i}: ${pa[i]} vs ${pbv[i]}`);
    // A head that made every class equal would pass the comparison trivially.
    assert.ok(Math.max(...pa) - Math.min(...pa) > 1e-3);
  } finally {
    a.dispose();
    b.dispose();
  }
}

test('a .pb written from a graph-model module reads back with the TF.js export\'s probabilities; GraphDef and SavedModel are valid on the wire', async () => {
  const root = tempDir();
  const module = makeGraphModel(path.join(root, 'module'));
  const ex = await loadFeatureExtractor({ spec: module, cacheDir: path.join(root, 'cache'), log: silentLogger });
  try {
    const labels = ['a', 'b', 'c'];
    const head = seededHead(ex.info.bottleneckSize, labels.length, 'head');
    const { folder, pb, saved } = await exportAll(ex, head, labels, root);
    const rng = seedrandom('x');
    const x = tf.tensor4d(Float32Array.from({ length: 2 * 32 * 32 * 3 }, () => rng()), [2, 32, 32, 3]);
    await assertSameProbabilities(folder, pb, x);
    const gz = path.join(root, 'output_graph.pb.gz');
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(pb)));
    await assertSameProbabilities(folder, gz, x);
    x.dispose();

    // The GraphDef, field by field.
    const nodes = nodesOf(fs.readFileSync(pb));
    const byName = new Map(nodes.map((n) => [n.name, n]));
    assert.equal(nodes.length, byName.size, 'node names are unique');
    for (const n of nodes) {
      for (const ref of n.input) assert.ok(byName.has(ref.replace(/^\^/, '').replace(/:\d+$/, '')), `${n.name} input ${ref} exists`);
    }
    assert.equal(byName.get('final_result')?.op, 'Softmax');
    const input = nodes.filter((n) => n.op === 'Placeholder');
    assert.deepEqual(input.map((n) => n.name), ['images']);
    // AttrValue: type = 6, shape = 7; DataType DT_FLOAT = 1.
    assert.equal(one(input[0]!.attr.get('dtype')!, 6).varint, 1);
    assert.deepEqual(shapeOf(wire(one(input[0]!.attr.get('shape')!, 7).bytes!)), [-1, 32, 32, 3]);
    // The head's weights, as retrain.py names them: TensorProto dtype = 1, tensor_shape = 2, tensor_content = 4.
    const w = wire(one(byName.get('final_retrain_ops/weights/final_weights')!.attr.get('value')!, 8).bytes!);
    assert.equal(one(w, 1).varint, 1);
    assert.deepEqual(shapeOf(wire(one(w, 2).bytes!)), [ex.info.bottleneckSize, 3]);
    const content = one(w, 4).bytes!;
    assert.deepEqual(new Float32Array(Uint8Array.from(content).buffer), head.weights);
    for (const n of nodes.filter((m) => m.op === 'Const')) {
      const t = wire(one(n.attr.get('value')!, 8).bytes!);
      assert.ok(all(t, 4).length === 1 || all(t, 5).length + all(t, 7).length > 0, `Const ${n.name} carries its value`);
    }

    // The SavedModel: saved_model_schema_version = 1, meta_graphs = 2.
    assert.deepEqual(fs.readdirSync(path.join(saved, 'variables')), [], 'variables/ is empty, as TF writes for a graph without variables');
    const sm = wire(fs.readFileSync(path.join(saved, 'saved_model.pb')));
    assert.equal(one(sm, 1).varint, 1);
    const meta = wire(one(sm, 2).bytes!);
    // MetaGraphDef: meta_info_def = 1 (tags = 4), graph_def = 2, signature_def = 5.
    assert.deepEqual(all(wire(one(meta, 1).bytes!), 4).map(str), ['serve']);
    assert.deepEqual(nodesOf(one(meta, 2).bytes!).map((n) => n.name), nodes.map((n) => n.name));
    const sigs = mapOf(all(meta, 5));
    assert.deepEqual([...sigs.keys()], ['serving_default']);
    // SignatureDef: inputs = 1, outputs = 2, method_name = 3; TensorInfo: name = 1, dtype = 2, tensor_shape = 3.
    const sig = sigs.get('serving_default')!;
    assert.equal(str(one(sig, 3)), 'tensorflow/serving/predict');
    const inputs = mapOf(all(sig, 1));
    const outputs = mapOf(all(sig, 2));
    assert.deepEqual([...inputs.keys()], ['image']);
    assert.deepEqual([...outputs.keys()], ['prediction']);
    assert.equal(str(one(inputs.get('image')!, 1)), 'images:0');
    assert.equal(one(inputs.get('image')!, 2).varint, 1);
    assert.deepEqual(shapeOf(wire(one(inputs.get('image')!, 3).bytes!)), [-1, 32, 32, 3]);
    assert.equal(str(one(outputs.get('prediction')!, 1)), 'final_result:0');
    assert.deepEqual(shapeOf(wire(one(outputs.get('prediction')!, 3).bytes!)), [-1, 3]);

    // And through protobufjs with the TensorFlow schema, as a TF consumer would decode it.
    const root_ = protobuf.loadSync(PROTO);
    const SavedModel = root_.lookupType('tensorflow.SavedModel');
    const obj = SavedModel.toObject(SavedModel.decode(fs.readFileSync(path.join(saved, 'saved_model.pb'))), { enums: String, longs: Number }) as {
      savedModelSchemaVersion: number;
      metaGraphs: Array<{ signatureDef: Record<string, { inputs: Record<string, { dtype: string }> }> }>;
    };
    assert.equal(obj.savedModelSchemaVersion, 1);
    assert.equal(obj.metaGraphs[0]!.signatureDef['serving_default']!.inputs['image']!.dtype, 'DT_FLOAT');
  } finally {
    ex.dispose();
  }
});

test('retrain refuses --output_graph *.pb and --saved_model_dir for a layers-model module, before computing bottlenecks', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 4 });
  const module = await makeLayersModel(path.join(root, 'module'));
  const bottlenecks = path.join(root, 'bottlenecks');
  for (const flags of [['--output_graph', path.join(root, 'out.pb')], ['--saved_model_dir', path.join(root, 'saved')]]) {
    const r = runCli('retrain', ['--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', bottlenecks, '--output_graph', path.join(root, 'out'), '--output_labels', path.join(root, 'labels.txt'), ...flags]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`${flags[0]} .*layers-model`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(fs.existsSync(bottlenecks), false);
  }
});

test('retrain --output_graph *.pb --saved_model_dir on a graph module writes both, and label-image classifies with the .pb', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 12 });
  const module = makeGraphModel(path.join(root, 'module'));
  const pb = path.join(root, 'output_graph.pb');
  const labels = path.join(root, 'labels.txt');
  const r = runCli('retrain', [
    '--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', pb,
    '--output_labels', labels, '--saved_model_dir', path.join(root, 'saved'), '--how_many_training_steps', '200', '--learning_rate', '0.5', '--backend', 'cpu',
    '--intermediate_store_frequency', '100', '--intermediate_output_graphs_dir', path.join(root, 'intermediate'),
  ]);
  assert.equal(r.status, 0, r.stderr);
  // As retrain.py: intermediate graphs take the final graph's form.
  assert.deepEqual(fs.readdirSync(path.join(root, 'intermediate')).sort(), ['intermediate_100.pb']);
  assert.ok(fs.statSync(path.join(root, 'saved', 'saved_model.pb')).size > fs.statSync(pb).size);
  const l = runCli('label-image', ['--graph', pb, '--labels', labels, '--image', path.join(images, 'red', 'red_000.png'), '--top_k', '1', '--backend', 'cpu']);
  assert.equal(l.status, 0, l.stderr);
  assert.match(l.stdout, /^red /);
});

test('label-image names every op TF.js cannot run, and rejects files that are not GraphDefs or hold functions', async () => {
  const root = tempDir();
  const G = protobuf.loadSync(PROTO).lookupType('tensorflow.GraphDef');
  const f = { type: 'DT_FLOAT' };
  const graph = G.encode(G.fromObject({
    node: [
      { name: 'input', op: 'Placeholder', attr: { dtype: f } },
      { name: 'a', op: 'MadeUpOpOne', input: ['input'], attr: { T: f } },
      { name: 'b', op: 'MadeUpOpTwo', input: ['a'], attr: { T: f } },
      { name: 'final_result', op: 'Softmax', input: ['b'], attr: { T: f } },
    ],
  })).finish();
  const file = path.join(root, 'g.pb');
  fs.writeFileSync(file, graph);
  const img = await makeImageDir(path.join(root, 'images'), { classes: ['x'], perClass: 1 });
  const image = path.join(img, 'x', 'x_000.png');
  const r = runCli('label-image', ['--graph', file, '--output_layer', 'final_result', '--image', image, '--backend', 'cpu']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /TensorFlow ops that TF\.js cannot run: MadeUpOpOne, MadeUpOpTwo/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);

  const junk = path.join(root, 'junk.pb');
  fs.writeFileSync(junk, 'this is not a protobuf at all');
  const j = runCli('label-image', ['--graph', junk, '--image', image, '--backend', 'cpu']);
  assert.equal(j.status, 1, j.stderr);
  assert.match(j.stderr, /is not a TensorFlow GraphDef/);

  const withFunctions = path.join(root, 'functions.pb');
  fs.writeFileSync(withFunctions, G.encode(G.fromObject({ node: [{ name: 'input', op: 'Placeholder', attr: { dtype: f } }], library: { function: [Buffer.from('fn')] } })).finish());
  const fn = runCli('label-image', ['--graph', withFunctions, '--image', image, '--backend', 'cpu']);
  assert.equal(fn.status, 1, fn.stderr);
  assert.match(fn.stderr, /holds TensorFlow functions/);
});

test('label-image runs retrain.py\'s own output graph on flowers-dev photos', { skip: SKIP_SHARED }, async () => {
  const classes = fs.readFileSync(path.join(RETRAIN_PY, 'retrained_labels.txt'), 'utf8').trim().split('\n');
  // Every 6th photo of each class: 20 per class, spread over the folder.
  const root = tempDir();
  for (const c of classes) {
    fs.mkdirSync(path.join(root, c));
    const files = fs.readdirSync(path.join(FLOWERS, c)).filter((f) => f.endsWith('.jpg')).sort();
    files.filter((_, i) => i % 6 === 0).forEach((f) => fs.symlinkSync(path.join(FLOWERS, c, f), path.join(root, c, f)));
  }
  const r = runCli('label-image', [
    '--graph', path.join(RETRAIN_PY, 'rounded_graph.pb.gz'), '--labels', path.join(RETRAIN_PY, 'retrained_labels.txt'),
    '--input_layer', 'input', '--output_layer', 'final_result', '--input_mean', '128', '--input_std', '128',
    '--input_height', '224', '--input_width', '224', '--top_k', '1', '--json', '--image', root,
  ]);
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout) as Array<{ image: string; predictions: Array<{ label: string; score: number }> }>;
  assert.equal(results.length, 100);
  const correct = results.filter((x) => path.basename(path.dirname(x.image)) === x.predictions[0]!.label).length;
  // retrain.py reported 87% validation accuracy for this model; all 600 flowers-dev photos give 89.8% here.
  assert.ok(correct >= 85, `${correct}/100 correct`);

  // Its input has no shape, so label_image.py's 299 default does not fit: say which flags to check.
  const d = runCli('label-image', ['--graph', path.join(RETRAIN_PY, 'rounded_graph.pb.gz'), '--image', results[0]!.image]);
  assert.equal(d.status, 1, d.stderr);
  assert.match(d.stderr, /fails on a 299x299 input .*--input_height/);
});

test('a .pb written from the real TF Hub MobileNet V2 graph module matches its TF.js export', { skip: SKIP_SHARED }, async () => {
  const root = tempDir();
  const ex = await loadFeatureExtractor({
    spec: path.join(SHARED, 'models', 'tfhub_mobilenet_v2_100_224_feature_vector'),
    cacheDir: path.join(root, 'cache'),
    log: silentLogger,
  });
  try {
    const labels = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'];
    const head = seededHead(ex.info.bottleneckSize, labels.length, 'mobilenet');
    const { folder, pb } = await exportAll(ex, head, labels, root);
    const ops = new Set(nodesOf(fs.readFileSync(pb)).map((n) => n.op));
    for (const fused of ['_FusedConv2D', 'FusedDepthwiseConv2dNative', '_FusedMatMul']) assert.ok(!ops.has(fused), `${fused} is unfused for TensorFlow`);
    const rng = seedrandom('photo');
    const x = tf.tensor4d(Float32Array.from({ length: 224 * 224 * 3 }, () => rng()), [1, 224, 224, 3]);
    await assertSameProbabilities(folder, pb, x);
    x.dispose();
  } finally {
    ex.dispose();
  }
});

test('fused TF.js ops written as plain TensorFlow ops compute the same values', async () => {
  const rng = seedrandom('fused');
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng() - 0.5);
  const f = { type: 'DT_FLOAT' };
  const s = (v: string) => Buffer.from(v).toString('base64');
  const list = (xs: number[]) => ({ list: { i: xs.map(String) } });
  const c = (name: string, shape: number[], dtype = 'DT_FLOAT'): GraphNode => ({
    name, op: 'Const', attr: { dtype: { type: dtype }, value: { tensor: { dtype, tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } } },
  });
  const nodes: GraphNode[] = [
    { name: 'x', op: 'Placeholder', attr: { dtype: f, shape: { shape: { dim: [-1, 8, 8, 3].map((d) => ({ size: String(d) })) } } } },
    c('dw', [3, 3, 3, 2]), c('dwb', [6]), c('cw', [1, 1, 6, 4]), c('cb', [4]), c('axes', [2], 'DT_INT32'), c('mw', [4, 5]), c('mb', [5]),
    {
      name: 'dwconv', op: 'FusedDepthwiseConv2dNative', input: ['x', 'dw', 'dwb'],
      attr: { T: f, strides: list([1, 1, 1, 1]), dilations: list([1, 1, 1, 1]), padding: { s: s('SAME') }, data_format: { s: s('NHWC') }, num_args: { i: '1' }, fused_ops: { list: { s: [s('BiasAdd'), s('Relu6')] } } },
    },
    {
      name: 'conv', op: '_FusedConv2D', input: ['dwconv', 'cw', 'cb'],
      attr: { T: f, strides: list([1, 2, 2, 1]), dilations: list([1, 1, 1, 1]), padding: { s: s('VALID') }, data_format: { s: s('NHWC') }, num_args: { i: '1' }, fused_ops: { list: { s: [s('BiasAdd')] } } },
    },
    { name: 'mean', op: 'Mean', input: ['conv', 'axes'], attr: { T: f, Tidx: { type: 'DT_INT32' }, keep_dims: { b: false } } },
    {
      name: 'out', op: '_FusedMatMul', input: ['mean', 'mw', 'mb'],
      attr: { T: f, transpose_a: { b: false }, transpose_b: { b: false }, num_args: { i: '1' }, fused_ops: { list: { s: [s('BiasAdd'), s('Relu')] } } },
    },
  ];
  const parts = [rand(54), rand(6), rand(24), rand(4), Int32Array.from([1, 2]), rand(20), rand(5)];
  const weightData = Buffer.concat(parts.map((p) => Buffer.from(p.buffer)));
  const fused: tf.io.ModelArtifacts = {
    modelTopology: { node: nodes, versions: {} },
    weightSpecs: [
      { name: 'dw', shape: [3, 3, 3, 2], dtype: 'float32' }, { name: 'dwb', shape: [6], dtype: 'float32' },
      { name: 'cw', shape: [1, 1, 6, 4], dtype: 'float32' }, { name: 'cb', shape: [4], dtype: 'float32' },
      { name: 'axes', shape: [2], dtype: 'int32' }, { name: 'mw', shape: [4, 5], dtype: 'float32' }, { name: 'mb', shape: [5], dtype: 'float32' },
    ],
    weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
  };
  const plainNodes = unfuseForTensorFlow(nodes);
  assert.deepEqual(plainNodes.filter((n) => /Fused/.test(n.op)), []);
  const pb = encodeGraphDef(await artifactsToGraphDef({ ...fused, modelTopology: { node: plainNodes, versions: {} } }));
  const plain = graphDefToArtifacts(pb, 'unfused.pb');
  const x = tf.tensor4d(rand(2 * 8 * 8 * 3), [2, 8, 8, 3]);
  const outputs: Float32Array[] = [];
  for (const a of [fused, plain]) {
    const m = await tf.loadGraphModel(tf.io.fromMemory(a));
    const y = m.execute({ x }, 'out') as tf.Tensor;
    outputs.push((await y.data()) as Float32Array);
    y.dispose();
    m.dispose();
  }
  x.dispose();
  assert.equal(outputs[1]!.length, 10);
  assert.ok(outputs[0]!.some((v) => v > 0), 'the Relu lets something through');
  for (let i = 0; i < 10; i++) assert.ok(Math.abs(outputs[0]![i]! - outputs[1]![i]!) <= 1e-5, `${outputs[0]![i]} vs ${outputs[1]![i]}`);
});
