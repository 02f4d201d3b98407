/**
 * src/graph/from_onnx.ts: .onnx modules read into the shared Graph. Tiny models in the
 * shapes torchvision (NCHW) and Keras/tf2onnx (NHWC input, Transpose) export are
 * generated here with the project's builder; the Graph written back to ONNX must give
 * the original's outputs on onnxruntime, and a .tflite export of an .onnx module must
 * classify as its .onnx export does.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import seedrandom from 'seedrandom';
import { UnsupportedOpsError } from '../src/graph/errors.js';
import { fromOnnx } from '../src/graph/from_onnx.js';
import { toOnnx } from '../src/graph/to_onnx.js';
import { GraphBuilder, IR_VERSION, OPSET, decodeModel, encodeModel, valueInfo } from '../src/module/onnx/builder.js';
import { transposeArray } from '../src/graph/tensor.js';
import { foldForInference } from '../src/graph/fold.js';
import { withHead } from '../src/graph/head.js';
import { toTflite } from '../src/graph/to_tflite.js';
import { SKIP_ARMNN, runArmnn } from './helpers/armnn.js';
import { makeImageDir, runCli, tempDir } from './helpers/fixtures.js';

type Dim = number | string;

function shapeInfo(name: string, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  const info = valueInfo(name, dims.map((d) => (typeof d === 'number' ? d : -1)));
  info.type!.tensorType!.shape!.dim!.forEach((d, i) => typeof dims[i] === 'string' && (d.dimParam = dims[i] as string));
  return info;
}

function modelOf(g: GraphBuilder, input: onnxProto.onnx.IValueInfoProto, out: string, outDims: Dim[]): Uint8Array {
  return encodeModel({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    graph: { name: 'fixture', node: g.nodes, initializer: g.initializers, input: [input], output: [shapeInfo(out, outDims)] },
  });
}

const H = 16;
const W = 12;

/**
 * A torchvision-like backbone, NCHW: conv+BN+ReLU, max pool with pads 1 (ResNet's stem), depthwise conv+ReLU6 (Clip),
 * pointwise conv with a per-channel Add, Mul by a scalar and Sigmoid, two pooled
 * branches (Pad+MaxPool, AveragePool) concatenated, GlobalAveragePool, Flatten, Gemm.
 */
function torchvisionLike(seed = 1): Uint8Array {
  const rng = seedrandom(String(seed));
  const rand = (n: number, scale = 0.5) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
  const g = new GraphBuilder();
  g.reserve(['image']);
  const conv = (x: string, w: Float32Array, dims: number[], attrs: Record<string, { i: number } | { ints: number[] }>, name: string, bias = true) =>
    g.node('Conv', [x, g.floatConst(`${name}.weight`, w, dims), ...(bias ? [g.floatConst(`${name}.bias`, rand(dims[0]!), [dims[0]!])] : [])], name, attrs);
  let x = conv('image', rand(8 * 3 * 9), [8, 3, 3, 3], { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] } }, 'conv1', false);
  x = g.node('BatchNormalization', [x, g.floatConst('bn.w', rand(8, 1).map((v) => v + 1.5), [8]), g.floatConst('bn.b', rand(8), [8]), g.floatConst('bn.m', rand(8), [8]), g.floatConst('bn.v', rand(8).map((v) => v + 1), [8])], 'bn1', { epsilon: { f: 1e-5 } });
  x = g.node('Relu', [x], 'relu1');
  x = g.node('MaxPool', [x], 'stem_pool', { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] } });
  x = conv(x, rand(8 * 9, 1), [8, 1, 3, 3], { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, group: { i: 8 } }, 'dw');
  x = g.node('Clip', [x, g.floatConst('zero', Float32Array.of(0), []), g.floatConst('six', Float32Array.of(6), [])], 'relu6');
  x = conv(x, rand(16 * 8), [16, 8, 1, 1], { kernel_shape: { ints: [1, 1] } }, 'pw', false);
  x = g.node('Add', [x, g.floatConst('shift', rand(16), [16, 1, 1])], 'shift');
  x = g.node('Mul', [g.floatConst('gain', Float32Array.of(0.7), []), x], 'gain');
  x = g.node('Sigmoid', [x], 'sig');
  const padded = g.node('Pad', [x, g.int64Const('pads', [0, 0, 1, 0, 0, 0, 0, 1])], 'pad', { mode: { s: 'constant' } });
  const a = g.node('MaxPool', [padded], 'maxpool', { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } });
  const b = g.node('AveragePool', [x], 'avgpool', { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } });
  x = g.node('Concat', [a, b], 'cat', { axis: { i: 1 } });
  x = g.node('GlobalAveragePool', [x], 'gap');
  x = g.node('Flatten', [x], 'flat', { axis: { i: 1 } });
  x = g.node('Gemm', [x, g.floatConst('fc.weight', rand(5 * 32), [5, 32]), g.floatConst('fc.bias', rand(5), [5])], 'fc', { transB: { i: 1 } });
  return modelOf(g, shapeInfo('image', ['N', 3, H, W]), x, ['N', 5]);
}

/** A Keras/tf2onnx-like backbone: NHWC input, Transpose to NCHW, conv, ReduceMean over H, W, MatMul + Add, output [N, D, 1, 1]. */
function kerasLike(): Uint8Array {
  const rng = seedrandom('keras');
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
  const g = new GraphBuilder();
  g.reserve(['x']);
  let x = g.node('Transpose', ['x'], 'to_nchw', { perm: { ints: [0, 3, 1, 2] } });
  x = g.node('Conv', [x, g.floatConst('k', rand(4 * 3 * 4), [4, 3, 2, 2]), g.floatConst('kb', rand(4), [4])], 'conv', { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } });
  x = g.node('Relu', [x], 'relu');
  x = g.node('ReduceMean', [x], 'mean', { axes: { ints: [2, 3] }, keepdims: { i: 0 } });
  x = g.node('MatMul', [x, g.floatConst('w', rand(4 * 6), [4, 6])], 'mm');
  x = g.node('Add', [x, g.floatConst('b', rand(6), [6])], 'add');
  x = g.node('Reshape', [x, g.int64Const('shape', [0, 6, 1, 1])], 'out4d');
  return modelOf(g, shapeInfo('x', ['N', H, W, 3]), x, ['N', 6, 1, 1]);
}

async function run(bytes: Uint8Array, data: Float32Array, dims: number[]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(bytes);
  try {
    const out = await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', data, dims) });
    return out[s.outputNames[0]!]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
}

test('from_onnx: an NCHW and an NHWC backbone, read to the Graph and written back, give the original outputs on onnxruntime', async () => {
  const rng = seedrandom('images');
  const n = 2;
  const nhwc = Float32Array.from({ length: n * H * W * 3 }, () => rng() * 2 - 1);
  const nchw = transposeArray(nhwc, [n, H, W, 3], [0, 3, 1, 2]);

  const torch = torchvisionLike();
  const graph = fromOnnx(decodeModel(torch), { height: H, width: W });
  assert.deepEqual(graph.nodes.find((x) => x.op === 'input')!.shape, [-1, H, W, 3]);
  const ops = new Set(graph.nodes.map((x) => x.op));
  for (const op of ['conv2d', 'depthwise_conv2d', 'batch_norm', 'max_pool', 'avg_pool', 'pad', 'concat', 'mean', 'dense']) assert.ok(ops.has(op as never), `${op} in ${[...ops]}`);
  const want = await run(torch, nchw, [n, 3, H, W]);
  const got = await run(encodeModel(toOnnx(graph)), nhwc, [n, H, W, 3]);
  assert.equal(want.length, n * 5);
  assert.ok(maxDiff(want, got) < 1e-4, `NCHW model: ${maxDiff(want, got)}`);

  const keras = kerasLike();
  const kg = fromOnnx(decodeModel(keras), { height: H, width: W });
  assert.deepEqual(kg.nodes.find((x) => x.name === kg.output)!.shape, [-1, 6]);
  const kWant = await run(keras, nhwc, [n, H, W, 3]);
  const kGot = await run(encodeModel(toOnnx(kg)), nhwc, [n, H, W, 3]);
  assert.ok(maxDiff(kWant, kGot) < 1e-4, `NHWC model: ${maxDiff(kWant, kGot)}`);
});

test('an NCHW .onnx backbone with a head, written as TFLite, runs on Arm NN as the original runs on onnxruntime (1e-4)', { skip: SKIP_ARMNN }, async () => {
  const rng = seedrandom('armnn');
  const n = 2;
  const nhwc = Float32Array.from({ length: n * H * W * 3 }, () => rng() * 2 - 1);
  const torch = torchvisionLike(4);
  const features = await run(torch, transposeArray(nhwc, [n, H, W, 3], [0, 3, 1, 2]), [n, 3, H, W]);
  const head = { weights: Float32Array.from({ length: 5 * 3 }, () => rng() * 2 - 1), biases: Float32Array.from({ length: 3 }, () => rng() - 0.5) };
  // The head on the original's features: softmax(x · W + b), W [5, 3].
  const want = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const logits = [0, 1, 2].map((c) => head.biases[c]! + [0, 1, 2, 3, 4].reduce((s, k) => s + features[i * 5 + k]! * head.weights[k * 3 + c]!, 0));
    const m = Math.max(...logits);
    const e = logits.map((l) => Math.exp(l - m));
    e.forEach((v, c) => (want[i * 3 + c] = v / e.reduce((a, b) => a + b, 0)));
  }
  const graph = foldForInference(withHead(fromOnnx(decodeModel(torch), { height: H, width: W }), head));
  const r = runArmnn(toTflite(graph), nhwc);
  const got = Float32Array.from(r.outputs.flat());
  assert.ok(maxDiff(got, want) < 1e-4, `Arm NN differs by ${maxDiff(got, want)}`);
});

test('from_onnx: ops it cannot map are named together, and a channel-order flatten of a spatial value is refused', () => {
  const g = new GraphBuilder();
  g.reserve(['x']);
  let x = g.node('LRN', ['x'], 'lrn', { size: { i: 3 } });
  x = g.node('Softplus', [x], 'softplus');
  x = g.node('GlobalAveragePool', [x], 'gap');
  x = g.node('Flatten', [x], 'flat');
  const model = decodeModel(modelOf(g, shapeInfo('x', ['N', 3, 8, 8]), x, ['N', 3]));
  assert.throws(() => fromOnnx(model, { height: 8, width: 8 }), (err: unknown) => err instanceof UnsupportedOpsError && err.ops.join() === 'LRN,Softplus');

  const f = new GraphBuilder();
  f.reserve(['x']);
  const flat = f.node('Flatten', [f.node('Conv', ['x', f.floatConst('w', new Float32Array(2 * 3), [2, 3, 1, 1])], 'conv', { kernel_shape: { ints: [1, 1] } })], 'flat');
  const spatial = decodeModel(modelOf(f, shapeInfo('x', ['N', 3, 2, 2]), flat, ['N', 8]));
  assert.throws(() => fromOnnx(spatial, { height: 2, width: 2 }), (err: unknown) => err instanceof UnsupportedOpsError && /^Flatten\(\[-1,2,2,2\]/.test(err.ops[0]!));
});

test('retrain --tfhub_module tiny.onnx --output_graph x.tflite: label-image on it agrees with the .onnx export within 1e-4', async () => {
  const root = tempDir('from-onnx-cli-');
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 6 });
  const module = path.join(root, 'tiny.onnx');
  fs.writeFileSync(module, torchvisionLike(2));
  const common = ['--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', path.join(root, 'bn'), '--how_many_training_steps', '30', '--skip_dataset_check', '--input_mean', '120,110,100', '--input_std', '60,50,70'];
  const exports: Record<string, string> = {};
  for (const ext of ['tflite', 'onnx']) {
    const out = path.join(root, `model.${ext}`);
    const r = runCli('retrain', [...common, '--output_graph', out, '--output_labels', path.join(root, `labels_${ext}.txt`)]);
    assert.equal(r.status, 0, r.stderr);
    exports[ext] = out;
  }
  const scores = (graph: string) => {
    const r = runCli('label-image', ['--graph', graph, '--image', path.join(images, 'red'), path.join(images, 'blue'), '--json', ...(graph.endsWith('.onnx') ? ['--labels', path.join(root, 'labels_onnx.txt')] : [])]);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as Array<{ image: string; predictions: Array<{ label: string; score: number }> }>;
    return new Map(doc.flatMap((d) => d.predictions.map((p) => [`${path.basename(d.image)}/${p.label}`, p.score] as const)));
  };
  const [tflite, onnx] = [scores(exports['tflite']!), scores(exports['onnx']!)];
  assert.equal(tflite.size, 12 * 3);
  assert.deepEqual([...tflite.keys()].sort(), [...onnx.keys()].sort());
  for (const [k, v] of tflite) assert.ok(Math.abs(v - onnx.get(k)!) < 1e-4, `${k}: tflite ${v}, onnx ${onnx.get(k)}`);
});

test('retrain --fine_tune_layers on an .onnx module: the .onnx and .tflite exports carry the fine-tuned weights and reproduce the test accuracy', async () => {
  const root = tempDir('from-onnx-finetune-');
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 12 });
  const module = path.join(root, 'tiny.onnx');
  fs.writeFileSync(module, torchvisionLike(3));
  const summary = path.join(root, 'summary.json');
  const labels = path.join(root, 'labels.txt');
  const args = (out: string) => [
    '--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', out, '--output_labels', labels,
    '--summary_json', summary, '--skip_dataset_check', '--how_many_training_steps', '10', '--testing_percentage', '25',
    '--fine_tune_layers', '2', '--fine_tune_steps', '8', '--fine_tune_batch_size', '4', '--fine_tune_learning_rate', '0.5', '--validation_percentage', '0',
  ];
  for (const ext of ['onnx', 'tflite']) {
    const out = path.join(root, `model.${ext}`);
    const r = runCli('retrain', args(out));
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(fs.readFileSync(summary, 'utf8'));
    assert.equal(s.fine_tune.layers.length, 2);
    assert.equal(s.fine_tune.steps, 8);
    assert.equal(s.fine_tune.activations[ext === 'onnx' ? 'computed' : 'cached'], 36);
    const predictions: Array<{ file: string; true_label: string }> = s.test.predictions;
    const l = runCli('label-image', ['--graph', out, '--labels', labels, '--top_k', '1', '--json', '--image', ...predictions.map((p) => p.file)]);
    assert.equal(l.status, 0, l.stderr);
    const doc = JSON.parse(l.stdout) as Array<{ image: string; predictions: Array<{ label: string }> }>;
    const top = new Map(doc.map((d) => [d.image, d.predictions[0]!.label]));
    const right = predictions.filter((p) => top.get(p.file) === p.true_label).length;
    assert.ok(Math.abs(right / predictions.length - s.test.accuracy) < 1e-9, `${ext}: ${right} of ${predictions.length} right, the run: ${s.test.accuracy}`);
    if (ext === 'onnx') {
      // The fc layer's weights in the export differ from the module's.
      const weights = (m: onnxProto.onnx.IModelProto) => (m.graph!.initializer ?? []).filter((t) => t.dataType === 1 && t.rawData?.length).map((t) => Array.from(new Float32Array(new Uint8Array(t.rawData!).buffer)));
      const before = new Set(weights(decodeModel(fs.readFileSync(module))).map((w) => w.join()));
      const after = weights(decodeModel(fs.readFileSync(out))).filter((w) => w.length === 5 * 32);
      assert.ok(after.length > 0 && after.every((w) => !before.has(w.join())), 'the fc kernel was fine-tuned');
    }
  }
});

test('an .onnx module with an op the reader lacks: --output_graph x.tflite and --fine_tune_layers each fail at start with one line naming it', async () => {
  const root = tempDir('from-onnx-refuse-');
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 3 });
  const g = new GraphBuilder();
  g.reserve(['x']);
  let x = g.node('Softplus', ['x'], 'softplus');
  x = g.node('GlobalAveragePool', [x], 'gap');
  x = g.node('Flatten', [x], 'flat');
  const module = path.join(root, 'softplus.onnx');
  fs.writeFileSync(module, modelOf(g, shapeInfo('x', ['N', 3, 8, 8]), x, ['N', 3]));
  const bn = path.join(root, 'bn');
  const base = ['--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', bn, '--skip_dataset_check', '--output_labels', path.join(root, 'labels.txt')];
  const cases: Array<[string[], number, RegExp]> = [
    [['--output_graph', path.join(root, 'x.tflite')], 1, /--output_graph \S+x\.tflite: the module uses an op the TFLite writer does not cover: Softplus/],
    [['--output_graph', path.join(root, 'x.onnx'), '--fine_tune_layers', '1'], 2, /--fine_tune_layers 1: \S+softplus\.onnx uses an op the \.onnx reader does not cover: Softplus/],
  ];
  for (const [extra, status, message] of cases) {
    const r = runCli('retrain', [...base, ...extra]);
    assert.equal(r.status, status, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.split('\n').filter((l) => /\berror:/.test(l)).length, 1, r.stderr);
    assert.ok(!fs.existsSync(bn) || fs.readdirSync(bn, { recursive: true }).length === 0, 'no bottleneck computed');
  }
});
