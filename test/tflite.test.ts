import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as flatbuffers from 'flatbuffers';
import * as tf from '@tensorflow/tfjs';
import { calibrateInt8 } from '../src/export/calibrate.js';
import { checkTfliteExport } from '../src/export/tflite.js';
import { BuiltinOperator, Model, TensorType } from '../src/export/tflite/generated/schema_generated.js';
import { RetrainError } from '../src/errors.js';
import { foldForInference } from '../src/graph/fold.js';
import { fromLayersModel } from '../src/graph/from_layers.js';
import { fromTfjsGraph } from '../src/graph/from_tfjs_graph.js';
import { fromTflite } from '../src/graph/from_tflite.js';
import { withHead } from '../src/graph/head.js';
import type { Graph } from '../src/graph/ir.js';
import { toOnnx, toOnnxWithValues } from '../src/graph/to_onnx.js';
import { toTflite } from '../src/graph/to_tflite.js';
import type { FeatureExtractor } from '../src/module/index.js';
import { plainImageBatches } from '../src/image/batches.js';
import { encodeModel } from '../src/module/onnx/builder.js';
import { loadOnnxRuntime } from '../src/module/onnx/runtime.js';
import { maxAbsDiff } from '../src/module/onnx/probe.js';
import { createOnnxSession } from '../src/module/onnx/session.js';
import { readModelFiles } from '../src/module/io.js';
import { SKIP_ARMNN, runArmnn } from './helpers/armnn.js';
import { makeGraphModel, makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

/**
 * The TFLite writer and reader over the shared graph: the written model read back runs
 * like the ONNX export of the same graph; Arm NN (an independent TFLite runtime) agrees
 * where installed; int8 keeps the float model's top-1.
 */
const H = 16;
const W = 17;
const CLASSES = 4;

before(useCpuBackend);

let seed = 1;
const init = () => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: seed++ });

/** Conv+BN+ReLU6, depthwise+BN+ReLU, a residual add, explicit zero padding, a valid conv, average pooling: MobileNet's ops. */
function mobileNetLike(): tf.LayersModel {
  const input = tf.input({ shape: [H, W, 3] });
  const apply = (l: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => l.apply(x) as tf.SymbolicTensor;
  const bn = () => tf.layers.batchNormalization({ betaInitializer: init(), gammaInitializer: init(), movingMeanInitializer: init(), movingVarianceInitializer: tf.initializers.constant({ value: 0.7 }) });
  let x = apply(tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: false, kernelInitializer: init() }), input);
  x = apply(tf.layers.reLU({ maxValue: 6 }), apply(bn(), x));
  const y = apply(tf.layers.activation({ activation: 'relu' }), apply(bn(), apply(tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: init() }), x)));
  x = apply(tf.layers.add(), [x, y]);
  x = apply(tf.layers.zeroPadding2d({ padding: [[1, 0], [0, 1]] }), x);
  x = apply(tf.layers.conv2d({ filters: 6, kernelSize: 2, padding: 'valid', kernelInitializer: init(), biasInitializer: init(), activation: 'relu' }), x);
  x = apply(tf.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same' }), x);
  x = apply(tf.layers.globalAveragePooling2d({}), x);
  return tf.model({ inputs: input, outputs: x });
}

function randomHead(d: number, s = 3): { weights: Float32Array; biases: Float32Array } {
  let r = s;
  const rnd = () => ((r = (r * 16807) % 2147483647) / 2147483647 - 0.5) * 2;
  return { weights: Float32Array.from({ length: d * CLASSES }, rnd), biases: Float32Array.from({ length: CLASSES }, rnd) };
}

async function runOnnx(g: Graph, x: Float32Array, n: number, h: number, w: number): Promise<Float32Array> {
  const s = await createOnnxSession(encodeModel(toOnnx(g, { outputName: 'final_result' })), { threads: 1 });
  try {
    return await s.run(x, n, h, w);
  } finally {
    await s.dispose();
  }
}

const images = (n: number, h = H, w = W, lo = 0, hi = 1) => tf.tidy(() => tf.randomUniform([n, h, w, 3], lo, hi, 'float32', 5).dataSync() as Float32Array);

function opsOf(bytes: Uint8Array): string[] {
  const m = Model.getRootAsModel(new flatbuffers.ByteBuffer(bytes));
  const sg = m.subgraphs(0)!;
  return Array.from({ length: sg.operatorsLength() }, (_, i) => BuiltinOperator[m.operatorCodes(sg.operators(i)!.opcodeIndex())!.builtinCode()]!);
}

test('a layers module with a head, written as TFLite and read back, gives the ONNX export\'s probabilities (1e-4); batch norm is folded, ReLUs fused', async () => {
  const model = mobileNetLike();
  const module = fromLayersModel(model, { height: H, width: W });
  const d = module.nodes.find((n) => n.name === module.output)!.shape.at(-1)!;
  const graph = withHead(module, randomHead(d));
  const bytes = toTflite(foldForInference(graph));
  const ops = opsOf(bytes);
  assert.ok(!ops.includes('RELU6') && !ops.includes('MUL'), `batch norm and ReLU6 should be folded into the convs: ${ops.join(',')}`);
  assert.deepEqual(ops.filter((o) => o === 'CONV_2D' || o === 'DEPTHWISE_CONV_2D').length, 3);
  const x = images(3);
  const want = await runOnnx(graph, x, 3, H, W);
  const got = await runOnnx(fromTflite(bytes), x, 3, H, W);
  assert.ok(maxAbsDiff(got, want) < 1e-4, `differs by ${maxAbsDiff(got, want)}`);
  // float16 weights: half the bytes, close probabilities.
  const half = toTflite(foldForInference(graph), { weights: 'float16' });
  assert.ok(opsOf(half).includes('DEQUANTIZE'));
  const got16 = await runOnnx(fromTflite(half), x, 3, H, W);
  assert.ok(maxAbsDiff(got16, want) < 2e-2, `float16 differs by ${maxAbsDiff(got16, want)}`);
  model.dispose();
});

test('a TF.js graph module written as TFLite runs the same on Arm NN as its ONNX export on onnxruntime (1e-4)', { skip: SKIP_ARMNN }, async () => {
  const dir = makeGraphModel(tempDir());
  const files = readModelFiles(path.join(dir, 'model.json'));
  const module = fromTfjsGraph(files.artifacts, { outputNode: 'module_apply_default/hub_output/feature_vector/Mean', height: 32, width: 32 });
  const graph = withHead(module, randomHead(8));
  const x = images(2, 32, 32);
  const want = await runOnnx(graph, x, 2, 32, 32);
  const r = runArmnn(toTflite(foldForInference(graph)), x);
  assert.deepEqual(r.output.shape, [1, CLASSES]);
  const got = Float32Array.from(r.outputs.flat());
  assert.ok(maxAbsDiff(got, want) < 1e-4, `Arm NN differs by ${maxAbsDiff(got, want)}`);
});

test('int8: uint8 input and output, int8 weights, ops at TFLite\'s int8 versions; read back it keeps the float top-1, and Arm NN agrees', async () => {
  const root = tempDir();
  const imgDir = await makeImageDir(path.join(root, 'images'), { perClass: 6, width: W + 5, height: H + 3 });
  const files = fs.readdirSync(imgDir).flatMap((c) => fs.readdirSync(path.join(imgDir, c)).map((f) => path.join(imgDir, c, f)));
  const model = mobileNetLike();
  const module = fromLayersModel(model, { height: H, width: W });
  const d = module.nodes.find((n) => n.name === module.output)!.shape.at(-1)!;
  const graph = foldForInference(withHead(module, randomHead(d, 11)));
  const spec = { height: H, width: W, mean: 0, std: 255 };
  const { quantization: int8 } = await calibrateInt8(graph, files, spec, [0, 1]);
  const bytes = toTflite(graph, { weights: 'int8', int8 });
  const m = Model.getRootAsModel(new flatbuffers.ByteBuffer(bytes));
  const sg = m.subgraphs(0)!;
  assert.equal(sg.tensors(sg.inputs(0)!)!.type(), TensorType.UINT8);
  assert.equal(sg.tensors(sg.outputs(0)!)!.type(), TensorType.UINT8);
  for (let i = 0; i < sg.operatorsLength(); i++) {
    const c = m.operatorCodes(sg.operators(i)!.opcodeIndex())!;
    const want = { CONV_2D: 3, DEPTHWISE_CONV_2D: 3, FULLY_CONNECTED: 4, SOFTMAX: 2, ADD: 2, MEAN: 2, PAD: 2, AVERAGE_POOL_2D: 2, QUANTIZE: 1, RESHAPE: 1 }[BuiltinOperator[c.builtinCode()]!];
    assert.equal(c.version(), want, `${BuiltinOperator[c.builtinCode()]} version`);
  }
  // Pixels exactly on the uint8 grid, as an app feeds them.
  const x = Float32Array.from(images(8), (v) => Math.round(v * 255) / 255);
  const float = await runOnnx(graph, x, 8, H, W);
  const quant = await runOnnx(fromTflite(bytes), x, 8, H, W);
  const top = (p: Float32Array, i: number) => Array.from(p.subarray(i * CLASSES, (i + 1) * CLASSES)).reduce((b, v, k, a) => (v > a[b]! ? k : b), 0);
  const agree = Array.from({ length: 8 }, (_, i) => top(float, i) === top(quant, i)).filter(Boolean).length;
  assert.ok(agree >= 7, `int8 keeps the float top-1 on ${agree}/8 images`);
  assert.ok(maxAbsDiff(float, quant) < 0.1, `int8 probabilities differ by ${maxAbsDiff(float, quant)}`);
  if (!SKIP_ARMNN) {
    const r = runArmnn(bytes, Uint8Array.from(x, (v) => Math.round(v * 255)));
    const arm = Float32Array.from(r.outputs.flat(), (q) => (q - r.output.zero_point) * r.output.scale);
    // An integer runtime's fixed-point rescaling may land a step or two away.
    assert.ok(maxAbsDiff(arm, quant) <= 3 / 256 + 1e-6, `Arm NN differs from the fake-quant run by ${maxAbsDiff(arm, quant)}`);
  }
  model.dispose();
});

test('int8 bias correction: head weights that all round one way shift the int8 logits; the mean shift on the calibration images is taken off the final bias', async () => {
  const root = tempDir();
  const imgDir = await makeImageDir(path.join(root, 'images'), { perClass: 6, width: W + 5, height: H + 3 });
  const files = fs.readdirSync(imgDir).flatMap((c) => fs.readdirSync(path.join(imgDir, c)).map((f) => path.join(imgDir, c, f)));
  // 64 equal features (exact in int8), then a head whose int8 weights (per tensor, step 1/127) round
  // 0.49 of a step down for even classes and up for odd ones: a shift no per-image noise averages out.
  const input = tf.input({ shape: [H, W, 3] });
  const conv = tf.layers.conv2d({ filters: 64, kernelSize: 1, useBias: false, kernelInitializer: 'ones' }).apply(input) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.globalAveragePooling2d({}).apply(conv) as tf.SymbolicTensor });
  const weights = Float32Array.from({ length: 64 * CLASSES }, (_, k) => (k === 0 ? 1 : (10 + ((k % CLASSES) % 2 ? -0.49 : 0.49)) / 127));
  const graph = foldForInference(withHead(fromLayersModel(model, { height: H, width: W }), { weights, biases: new Float32Array(CLASSES) }));
  const spec = { height: H, width: W, mean: 0, std: 255 };
  const { quantization, logitShift } = await calibrateInt8(graph, files, spec, [0, 1]);
  assert.deepEqual([...quantization.weights!.keys()], ['final_training_ops/Wx_plus_b/biases']);
  const logits = 'final_training_ops/Wx_plus_b';
  const step = quantization.activations.get(logits)!.scale;
  // Mean (int8 − float) logits over the calibration images, the int8 model read back as label-image reads it.
  const ort = await loadOnnxRuntime();
  const session = async (g: Graph, value: string) => {
    const { model: m, onnxNames } = toOnnxWithValues(g, { outputName: 'final_result' });
    const name = onnxNames.get(value)!;
    m.graph!.output!.push({ name, type: { tensorType: { elemType: 1 } } });
    return { s: await ort.InferenceSession.create(encodeModel(m)), name };
  };
  const meanShift = async (int8: Graph): Promise<number[]> => {
    const [f, q] = [await session(graph, logits), await session(int8, `${logits}/quantized`)];
    const images = plainImageBatches(spec);
    const sum = new Array<number>(CLASSES).fill(0);
    for (const file of files) {
      const t = await images([file], 0);
      const x = new ort.Tensor('float32', t.dataSync() as Float32Array, [1, H, W, 3]);
      t.dispose();
      const a = (await f.s.run({ [f.s.inputNames[0]!]: x }))[f.name]!.data as Float32Array;
      const b = (await q.s.run({ [q.s.inputNames[0]!]: x }))[q.name]!.data as Float32Array;
      for (let c = 0; c < CLASSES; c++) sum[c]! += (b[c]! - a[c]!) / files.length;
    }
    return sum;
  };
  const { weights: _, ...uncorrected } = quantization;
  const before = await meanShift(fromTflite(toTflite(graph, { weights: 'int8', int8: uncorrected })));
  const after = await meanShift(fromTflite(toTflite(graph, { weights: 'int8', int8: quantization })));
  assert.ok(maxAbsDiff(Float32Array.from(before), Float32Array.from(logitShift)) < 1e-4, `measured ${before}, reported ${logitShift}`);
  // Down for even classes, up for odd, by more than a logits step.
  assert.ok(before[2]! < -step && before[1]! > step && before[3]! > step, `before correction ${before}, a logits step ${step}`);
  assert.ok(Math.max(...after.map(Math.abs)) < step / 2, `after correction ${after}, a logits step ${step}`);
  model.dispose();
});

test('a module op the TFLite writer cannot map is one clear error naming it, before any bottleneck', async () => {
  const input = tf.input({ shape: [8, 8, 3] });
  const conv = (name: string) => tf.layers.conv2d({ filters: 4, kernelSize: 3, name }).apply(input) as tf.SymbolicTensor;
  const max = tf.layers.maximum({ name: 'odd_max' }).apply([conv('a'), conv('b')]) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.globalAveragePooling2d({}).apply(max) as tf.SymbolicTensor });
  const ex = { kind: 'layers', model, info: { inputHeight: 8, inputWidth: 8, bottleneckSize: 4, spec: 'tiny', format: 'layers-model' } } as unknown as FeatureExtractor;
  // MAXIMUM has no int8 form here: named at once.
  await assert.rejects(checkTfliteExport(ex, { outputGraph: 'out.tflite', quantize: 'int8' }), (err: unknown) => err instanceof RetrainError && /--output_graph out\.tflite: .*TFLite writer does not cover: maximum\(int8\)/.test(err.message));
  // As float32 it is written.
  await checkTfliteExport(ex, { outputGraph: 'out.tflite' });
  model.dispose();
});

test('retrain --output_graph x.tflite then label-image --graph x.tflite: labels and normalisation from the metadata', async () => {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 8 });
  const module = await makeLayersModel(path.join(root, 'module'));
  const out = path.join(root, 'out', 'model.tflite');
  const r = runCli('retrain', ['--image_dir', images, '--tfhub_module', path.join(module, 'model.json'), '--bottleneck_layer', 'pool', '--how_many_training_steps', '20', '--output_graph', out, '--output_labels', path.join(root, 'out', 'labels.txt')]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.statSync(out).size > 0);
  const l = runCli('label-image', ['--graph', out, '--image', path.join(images, 'green', 'green_000.png')]);
  assert.equal(l.status, 0, l.stderr);
  const lines = l.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^(red|green|blue) \d/);
});
