/**
 * `--tfhub_module x.onnx` through the real CLI: layout (NCHW/NHWC) read from the
 * graph, per-channel --input_mean/--input_std, the usage errors, the .onnx export
 * with its preprocessing in metadata_props, and label-image and plain onnxruntime
 * agreeing with retrain. Fixture models are generated here with the project's builder.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import sharp from 'sharp';
import { HEADER_BYTES } from '../src/bottleneck/format.js';
import { GraphBuilder, IR_VERSION, OPSET, decodeModel, encodeModel, valueInfo } from '../src/module/onnx/builder.js';
import { readSignature } from '../src/module/onnx/signature.js';
import { REPO_ROOT, makeGraphModel, runCli, tempDir } from './helpers/fixtures.js';
import { runCliEach } from './helpers/faults.js';

/** A dimension: a size, or a name (symbolic). */
type Dim = number | string;

function shapeInfo(name: string, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  const info = valueInfo(name, dims.map((d) => (typeof d === 'number' ? d : -1)));
  info.type!.tensorType!.shape!.dim!.forEach((d, i) => typeof dims[i] === 'string' && (d.dimParam = dims[i] as string));
  return info;
}

/**
 * A tiny feature extractor: the mean of each colour channel over the image, times a
 * [3, D] matrix (identity for D = 3), so its bottleneck is the per-channel mean of
 * its normalised input. `output` is the declared output shape.
 */
function channelMeanModel(layout: 'NCHW' | 'NHWC', input: Dim[], output: Dim[], opts: { d?: number; raw?: boolean } = {}): Uint8Array {
  const d = opts.d ?? 3;
  const g = new GraphBuilder();
  g.reserve(['x']);
  let out: string;
  if (opts.raw) out = g.node('Identity', ['x'], 'features');
  else {
    const pooled = g.node('ReduceMean', ['x'], 'pooled', { axes: { ints: layout === 'NCHW' ? [2, 3] : [1, 2] }, keepdims: { i: 0 } });
    const w = Float32Array.from({ length: 3 * d }, (_, k) => (Math.floor(k / d) === k % d ? 1 : 0));
    out = g.node('MatMul', [pooled, g.floatConst('w', w, [3, d])], 'features');
    if (output.length === 4) out = g.node('Reshape', [out, g.int64Const('shape', output.map((x) => (typeof x === 'number' ? x : 0)))], 'features_4d');
  }
  return encodeModel({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    graph: { name: 'fixture', node: g.nodes, initializer: g.initializers, input: [shapeInfo('x', input)], output: [shapeInfo(out, output)] },
  });
}

const COLOURS: Record<string, [number, number, number]> = { red: [200, 30, 60], green: [20, 180, 90], blue: [40, 70, 230] };

/** Uniform-colour PNGs (lossless), so a bottleneck of channel means is known exactly. */
async function solidImages(dir: string, perClass = 4): Promise<string> {
  for (const [cls, [r, g, b]] of Object.entries(COLOURS)) {
    fs.mkdirSync(path.join(dir, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      await sharp({ create: { width: 20 + i, height: 18, channels: 3, background: { r, g, b } } }).png().toFile(path.join(dir, cls, `${cls}_${i}.png`));
    }
  }
  return dir;
}

/** Every cached bottleneck below `dir`, keyed by `class/image` (the module's name dropped). */
function readCache(dir: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  if (!fs.existsSync(dir)) return out;
  for (const f of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!f.isFile()) continue;
    const file = path.join(f.parentPath, f.name);
    const bytes = fs.readFileSync(file);
    const key = path.relative(dir, file).replace(/(\.(jpg|png))_.*$/, '$1');
    out.set(key, new Float32Array(bytes.buffer.slice(bytes.byteOffset + HEADER_BYTES, bytes.byteOffset + bytes.length)));
  }
  return out;
}

function setup(name: string) {
  const root = tempDir(`onnx-module-${name}-`);
  const args = (images: string, module: string, extra: string[] = []) => [
    '--image_dir', images,
    '--tfhub_module', module,
    '--bottleneck_dir', path.join(root, 'bn'),
    '--output_labels', path.join(root, 'labels.txt'),
    '--summaries_dir', path.join(root, 'logs'),
    '--module_cache_dir', path.join(root, 'modules'),
    '--skip_dataset_check',
    ...extra,
  ];
  return { root, args };
}

const oneErrorLine = (stderr: string) => stderr.trim().split('\n').filter((l) => /\berror:/.test(l));

test('an NCHW and an NHWC .onnx module: the layout is read from the graph and --input_mean/--input_std apply per channel', async () => {
  const s = setup('layout');
  const images = await solidImages(path.join(s.root, 'images'));
  // NCHW, fixed 16x16 and batch 1 (torch.onnx.export without dynamic axes), output [1,3,1,1].
  const nchw = path.join(s.root, 'nchw.onnx');
  fs.writeFileSync(nchw, channelMeanModel('NCHW', [1, 3, 16, 16], [1, 3, 1, 1]));
  const mean = [10, 20, 30];
  const std = [2, 4, 8];
  let r = runCli('retrain', s.args(images, nchw, ['--bottlenecks_only', '--input_mean', mean.join(','), '--input_std', std.join(',')]));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^INFO:retrain:Module .*nchw\.onnx: onnx, NCHW input 16x16, \(pixel - \[10, 20, 30\]\) \/ \[2, 4, 8\], bottleneck \S+ \(3 values\)$/m);
  assert.match(r.stderr, /^INFO:retrain:Module forward pass on onnxruntime \(\d+ threads?\), NCHW input$/m);
  let cache = readCache(path.join(s.root, 'bn'));
  assert.equal(cache.size, 12);
  for (const [key, values] of cache) {
    const colour = COLOURS[key.split(path.sep)[0]!]!;
    const want = colour.map((c, ch) => (c - mean[ch]!) / std[ch]!);
    assert.ok(want.every((v, ch) => Math.abs(values[ch]! - v) < 1e-4), `${key}: ${[...values]} vs ${want}`);
  }

  // NHWC with a dynamic size, [N,D] output, no normalisation flags: pixel/255, said in one line; --backend cpu is told ORT runs it.
  const nhwc = path.join(s.root, 'nhwc.onnx');
  fs.writeFileSync(nhwc, channelMeanModel('NHWC', ['N', 'H', 'W', 3], ['N', 3]));
  fs.rmSync(path.join(s.root, 'bn'), { recursive: true });
  r = runCli('retrain', s.args(images, nhwc, ['--bottlenecks_only', '--input_height', '12', '--input_width', '10', '--backend', 'cpu']));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^INFO:retrain:--backend cpu: the \.onnx module \S+ runs on onnxruntime; cpu trains the head$/m);
  assert.match(r.stderr, /^INFO:retrain:Normalisation for \S+: input = pixel \/ 255, in \[0, 1\]/m);
  assert.match(r.stderr, /: onnx, NHWC input 12x10, /);
  cache = readCache(path.join(s.root, 'bn'));
  assert.equal(cache.size, 12);
  for (const [key, values] of cache) {
    const colour = COLOURS[key.split(path.sep)[0]!]!;
    assert.ok(colour.every((c, ch) => Math.abs(values[ch]! - c / 255) < 1e-5), `${key}: ${[...values]}`);
  }
});

test('the signature: NCHW/NHWC from the dims, open sizes, squeezed outputs, and what cannot be told', () => {
  const nchw = readSignature(channelMeanModel('NCHW', ['batch', 3, 'height', 'width'], ['batch', 3]));
  assert.deepEqual({ layout: nchw.layout, h: nchw.height, w: nchw.width, batch: nchw.batch, d: nchw.bottleneckSize }, { layout: 'NCHW', h: null, w: null, batch: null, d: 3 });
  const nhwc = readSignature(channelMeanModel('NHWC', [1, 224, 160, 3], [1, 1, 1, 5], { d: 5 }));
  assert.deepEqual({ layout: nhwc.layout, h: nhwc.height, w: nhwc.width, batch: nhwc.batch, d: nhwc.bottleneckSize }, { layout: 'NHWC', h: 224, w: 160, batch: 1, d: 5 });
  assert.throws(() => readSignature(channelMeanModel('NCHW', ['N', 'C', 'H', 'W'], ['N', 3])), /cannot tell NCHW from NHWC/);
  assert.throws(() => readSignature(channelMeanModel('NCHW', ['N', 3, 8, 8], ['N', 3, 8, 8], { raw: true })), /has shape \[\?,3,8,8\], not a feature vector/);
});

test('usage errors of .onnx modules and the normalisation flags: exit 2, one line naming the flag, nothing computed', async () => {
  const s = setup('errors');
  const images = await solidImages(path.join(s.root, 'images'), 2);
  const dynamic = path.join(s.root, 'dynamic.onnx');
  fs.writeFileSync(dynamic, channelMeanModel('NCHW', ['N', 3, 'H', 'W'], ['N', 3]));
  const fixed = path.join(s.root, 'fixed.onnx');
  fs.writeFileSync(fixed, channelMeanModel('NHWC', ['N', 16, 16, 3], ['N', 3]));
  const unpooled = path.join(s.root, 'unpooled.onnx');
  fs.writeFileSync(unpooled, channelMeanModel('NCHW', ['N', 3, 8, 8], ['N', 3, 8, 8], { raw: true }));
  const ambiguous = path.join(s.root, 'ambiguous.onnx');
  fs.writeFileSync(ambiguous, channelMeanModel('NCHW', ['N', 'C', 'H', 'W'], ['N', 3]));
  const graph = makeGraphModel(path.join(s.root, 'tfjs'));
  const out = ['--output_graph', path.join(s.root, 'out.onnx')];
  const cases: Array<[string, string[], RegExp]> = [
    ['dynamic size without --input_height', s.args(images, dynamic, out), /dynamic input size: give --input_height and --input_width/],
    ['a fixed size the flags contradict', s.args(images, fixed, [...out, '--input_height', '20', '--input_width', '20']), /--input_height\/--input_width 20x20 differ from the module's fixed input 16x16/],
    ['an output that is no feature vector', s.args(images, unpooled, out), /unpooled\.onnx: its output features has shape \[\?,3,8,8\], not a feature vector/],
    ['a layout that cannot be told', s.args(images, ambiguous, [...out, '--input_height', '8', '--input_width', '8']), /ambiguous\.onnx: its input x \[\?,\?,\?,\?\] .*cannot tell NCHW from NHWC/],
    ['--input_mean with two values', s.args(images, fixed, [...out, '--input_mean', '1,2', '--input_std', '1']), /--input_mean needs one number or three comma-separated numbers/],
    ['--input_range with --input_mean', s.args(images, fixed, [...out, '--input_range', '0,1', '--input_mean', '0', '--input_std', '255']), /--input_range and --input_mean\/--input_std both set the normalisation/],
    ['--input_mean without --input_std', s.args(images, fixed, [...out, '--input_mean', '127.5']), /--input_mean and --input_std go together/],
    ['a TF.js folder as --output_graph', s.args(images, fixed, ['--output_graph', path.join(s.root, 'folder')]), /--output_graph \S+folder: with the \.onnx module \S+ the model is exported as ONNX or TFLite only; give a \.onnx or \.tflite file, e\.g\. --output_graph \/tmp\/output_graph\.onnx/],
    ['a frozen .pb as --output_graph', s.args(images, fixed, ['--output_graph', path.join(s.root, 'out.pb')]), /--output_graph \S+out\.pb: with the \.onnx module .* ONNX or TFLite only/],
    ['--saved_model_dir', s.args(images, fixed, [...out, '--saved_model_dir', path.join(s.root, 'sm')]), /--saved_model_dir \S+: with the \.onnx module .* ONNX or TFLite only/],
    ['--quantize_bytes', s.args(images, fixed, [...out, '--quantize_bytes', '1']), /--quantize_bytes applies to TF\.js folders/],
    ['per-channel values for a TF.js module', s.args(images, graph, ['--input_mean', '1,2,3', '--input_std', '4,5,6']), /per-channel values work for \.onnx modules only/],
  ];
  const runs = await runCliEach('retrain', cases.map(([, args]) => args));
  for (const [k, [what, , message]] of cases.entries()) {
    const r = runs[k]!;
    assert.equal(r.status, 2, `${what}: ${r.stderr}`);
    assert.match(r.stderr, message, what);
    assert.equal(oneErrorLine(r.stderr).length, 1, `${what}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack`);
    assert.equal(readCache(path.join(s.root, 'bn')).size, 0, `${what}: no bottleneck computed`);
  }
});

test('TF.js modules: one --input_mean/--input_std value each is --input_range by another name (same module id, cache reused)', async () => {
  const s = setup('tfjs');
  const images = await solidImages(path.join(s.root, 'images'), 2);
  const graph = makeGraphModel(path.join(s.root, 'tfjs'));
  const summary = path.join(s.root, 'summary.json');
  const counts = (extra: string[]) => {
    const r = runCli('retrain', s.args(images, graph, ['--bottlenecks_only', '--summary_json', summary, ...extra]));
    assert.equal(r.status, 0, r.stderr);
    const b = (JSON.parse(fs.readFileSync(summary, 'utf8')) as { bottlenecks: { computed: number; cached: number } }).bottlenecks;
    return [b.computed, b.cached];
  };
  assert.deepEqual(counts(['--input_range', '-1,1']), [6, 0]);
  assert.deepEqual(counts(['--input_mean', '127.5', '--input_std', '127.5']), [0, 6]);
  assert.deepEqual(counts(['--input_mean', '0', '--input_std', '255']), [6, 0]);
});

test('a model onnxruntime cannot run on the images: one line naming the module, exit 1', async () => {
  const s = setup('broken');
  const images = await solidImages(path.join(s.root, 'images'), 2);
  // Declares 5 features but reshapes 3 values into them: it loads, and fails on the first batch.
  const broken = path.join(s.root, 'broken.onnx');
  fs.writeFileSync(broken, channelMeanModel('NHWC', ['N', 8, 8, 3], ['N', 5, 1, 1]));
  const r = runCli('retrain', s.args(images, broken, ['--bottlenecks_only']));
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^retrain: error: --tfhub_module \S+broken\.onnx fails on onnxruntime with \d+ 8x8 images? \(NHWC\): .*Reshape/m);
  assert.equal(oneErrorLine(r.stderr).length, 1, r.stderr);
});

test('fresh distortions run through the .onnx module; its .onnx export classifies in label-image like retrain', async () => {
  const s = setup('distort');
  const images = await solidImages(path.join(s.root, 'images'), 6);
  const module = path.join(s.root, 'nchw.onnx');
  fs.writeFileSync(module, channelMeanModel('NCHW', ['N', 3, 'H', 'W'], ['N', 3, 1, 1]));
  const out = path.join(s.root, 'out.onnx');
  const summary = path.join(s.root, 'summary.json');
  const r = runCli('retrain', s.args(images, module, [
    '--input_height', '12', '--input_width', '12', '--input_mean', '127.5', '--input_std', '127.5',
    '--random_crop', '10', '--flip_left_right', '--distortion_variants', '0',
    '--how_many_training_steps', '20', '--learning_rate', '0.5', '--testing_percentage', '30',
    '--output_graph', out, '--summary_json', summary,
  ]));
  assert.equal(r.status, 0, r.stderr);
  const test = (JSON.parse(fs.readFileSync(summary, 'utf8')) as { test: { predictions: Array<{ file: string; predicted_label: string; score: number }> } }).test;
  assert.ok(test.predictions.length > 0);
  const li = runCli('label-image', ['--graph', out, '--json', '--image', ...test.predictions.map((p) => p.file)]);
  assert.equal(li.status, 0, li.stderr);
  const doc = JSON.parse(li.stdout) as Array<{ predictions: Array<{ label: string; score: number }> }>;
  doc.forEach((d, i) => {
    assert.equal(d.predictions[0]!.label, test.predictions[i]!.predicted_label);
    assert.ok(Math.abs(d.predictions[0]!.score - test.predictions[i]!.score) < 1e-4);
  });
  // Flags override the stored normalisation, per channel: the same values give the same scores, others do not.
  const scoresWith = (extra: string[]) => {
    const run = runCli('label-image', ['--graph', out, '--json', '--top_k', '3', '--image', test.predictions[0]!.file, ...extra]);
    assert.equal(run.status, 0, run.stderr);
    return (JSON.parse(run.stdout) as Array<{ predictions: Array<{ label: string; score: number }> }>)[0]!.predictions.map((p) => `${p.label} ${p.score.toFixed(5)}`);
  };
  const stored = scoresWith([]);
  assert.deepEqual(scoresWith(['--input_mean', '127.5,127.5,127.5', '--input_std', '127.5']), stored);
  assert.notDeepEqual(scoresWith(['--input_mean', '0,50,100', '--input_std', '255,255,255']), stored);
});

/** The built-in module's ONNX conversion (NHWC, values in `range`) behind torchvision's input: NCHW, dynamic size, (p/255 - m)/s. */
function wrapAsTorchvision(converted: Uint8Array, range: [number, number], mean: number[], std: number[]): Uint8Array {
  const m = decodeModel(converted);
  const graph = m.graph!;
  const inner = graph.input![0]!.name!;
  const g = new GraphBuilder();
  g.reserve([...graph.node!.flatMap((n) => n.output ?? []), ...graph.initializer!.map((t) => t.name!), inner]);
  g.reserve(['pixels']);
  // x = (p/255 - m)/s  ⇒  lo + (hi - lo) p/255 = x (hi - lo) s + lo + (hi - lo) m, per channel.
  const [lo, hi] = range;
  const scale = g.floatConst('unnormalise/scale', Float32Array.from(std, (s) => (hi - lo) * s), [1, 3, 1, 1]);
  const shift = g.floatConst('unnormalise/shift', Float32Array.from(mean, (v) => lo + (hi - lo) * v), [1, 3, 1, 1]);
  const scaled = g.node('Mul', ['pixels', scale], 'unnormalise/mul');
  const shifted = g.node('Add', [scaled, shift], 'unnormalise/add');
  g.nodes.push({ opType: 'Transpose', input: [shifted], output: [inner], name: 'to_nhwc', attribute: [{ name: 'perm', type: onnxProto.onnx.AttributeProto.AttributeType.INTS, ints: [0, 2, 3, 1] }] });
  graph.node = [...g.nodes, ...graph.node!];
  graph.initializer = [...g.initializers, ...graph.initializer!];
  graph.input = [shapeInfo('pixels', ['batch', 3, 'height', 'width']) as onnxProto.onnx.ValueInfoProto];
  return encodeModel(m);
}

/** The photos resized to the module's size: every pipeline then reads the same pixels, with no resampling to differ in. */
async function resizedPhotos(dir: string, size: number): Promise<string> {
  const src = path.join(REPO_ROOT, 'fixtures', 'flower_photos');
  for (const cls of fs.readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory())) {
    fs.mkdirSync(path.join(dir, cls.name), { recursive: true });
    for (const f of fs.readdirSync(path.join(src, cls.name))) {
      await sharp(path.join(src, cls.name, f)).resize(size, size, { fit: 'fill' }).jpeg({ quality: 95 }).toFile(path.join(dir, cls.name, f));
    }
  }
  return dir;
}

const TORCHVISION_MEAN = [123.675, 116.28, 103.53];
const TORCHVISION_STD = [58.395, 57.12, 57.375];

test('a torchvision-style .onnx module end to end: bottlenecks equal the built-in module\'s; label-image and plain onnxruntime agree with retrain', async (t) => {
  const s = setup('e2e');
  const images = await resizedPhotos(path.join(s.root, 'flowers'), 224);
  // The built-in module on ONNX Runtime; its conversion, cached, is what gets wrapped.
  let r = runCli('retrain', s.args(images, 'mobilenet_v2_100_224_builtin', ['--bottlenecks_only', '--bottleneck_dir', path.join(s.root, 'bn-builtin')]));
  assert.equal(r.status, 0, r.stderr);
  const converted = /^INFO:retrain:Module forward pass on onnxruntime .*cached at (.+\.onnx)$/m.exec(r.stderr)?.[1];
  assert.ok(converted, r.stderr);
  const range = /^INFO:retrain:Module .*: graph-model, input 224x224 in \[(\S+), (\S+)\]/m.exec(r.stderr);
  assert.ok(range, r.stderr);
  const wrapped = path.join(s.root, 'resnet_like.onnx');
  const m = TORCHVISION_MEAN.map((v) => v / 255);
  const sd = TORCHVISION_STD.map((v) => v / 255);
  fs.writeFileSync(wrapped, wrapAsTorchvision(new Uint8Array(fs.readFileSync(converted)), [Number(range[1]), Number(range[2])], m, sd));

  const out = path.join(s.root, 'out.onnx');
  const summary = path.join(s.root, 'summary.json');
  r = runCli('retrain', s.args(images, wrapped, [
    '--input_mean', TORCHVISION_MEAN.join(','), '--input_std', TORCHVISION_STD.join(','), '--input_height', '224', '--input_width', '224',
    '--how_many_training_steps', '50', '--output_graph', out, '--summary_json', summary,
  ]));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /: onnx, NCHW input 224x224, \(pixel - \[123\.675, 116\.28, 103\.53\]\) \/ \[58\.395, 57\.12, 57\.375\]/);

  // Layout and per-channel normalisation right ⇔ the same bottlenecks as the module itself.
  const builtin = readCache(path.join(s.root, 'bn-builtin'));
  const ours = readCache(path.join(s.root, 'bn'));
  assert.equal(builtin.size, 100);
  assert.deepEqual([...ours.keys()].sort(), [...builtin.keys()].sort());
  let worst = 0;
  for (const [k, a] of builtin) {
    const b = ours.get(k)!;
    assert.equal(b.length, 1280);
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  }
  t.diagnostic(`max abs bottleneck difference to the built-in module: ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-4, `max abs bottleneck difference ${worst}`);

  const predictions = (JSON.parse(fs.readFileSync(summary, 'utf8')) as { test: { predictions: Array<{ file: string; predicted_label: string; score: number }> } }).test.predictions;
  assert.ok(predictions.length >= 5, `${predictions.length} test images`);
  const files = predictions.map((p) => p.file);

  // label-image reads layout, size and normalisation from the export's metadata.
  const li = runCli('label-image', ['--graph', out, '--json', '--top_k', '1', '--image', ...files]);
  assert.equal(li.status, 0, li.stderr);
  const doc = JSON.parse(li.stdout) as Array<{ image: string; predictions: Array<{ label: string; score: number }> }>;
  doc.forEach((d, i) => {
    assert.equal(d.predictions[0]!.label, predictions[i]!.predicted_label, d.image);
    assert.ok(Math.abs(d.predictions[0]!.score - predictions[i]!.score) < 1e-4, `${d.image}: ${d.predictions[0]!.score} vs ${predictions[i]!.score}`);
  });

  // Plain onnxruntime-node, as a user with no retrain code would: the preprocessing comes from metadata_props.
  const bytes = fs.readFileSync(out);
  const props = Object.fromEntries(onnxProto.onnx.ModelProto.decode(bytes).metadataProps.map((p) => [p.key, p.value]));
  const meta = JSON.parse(props['retrain']!) as { inputName: string; outputName: string; inputLayout: string; inputHeight: number; inputWidth: number; inputMean: number[]; inputStd: number[] };
  const labels = JSON.parse(props['labels']!) as string[];
  assert.deepEqual({ layout: meta.inputLayout, h: meta.inputHeight, w: meta.inputWidth, mean: meta.inputMean, std: meta.inputStd, out: meta.outputName }, { layout: 'NCHW', h: 224, w: 224, mean: TORCHVISION_MEAN, std: TORCHVISION_STD, out: 'final_result' });
  const session = await ort.InferenceSession.create(bytes);
  try {
    for (const [i, file] of files.entries()) {
      const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.height, info.width], [meta.inputHeight, meta.inputWidth]);
      const plane = info.height * info.width;
      const x = new Float32Array(3 * plane);
      for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) x[c * plane + p] = (data[p * 3 + c]! - meta.inputMean[c]!) / meta.inputStd[c]!;
      const res = await session.run({ [meta.inputName]: new ort.Tensor('float32', x, [1, 3, info.height, info.width]) });
      const scores = res[meta.outputName]!.data as Float32Array;
      const best = scores.indexOf(Math.max(...scores));
      assert.equal(labels[best], predictions[i]!.predicted_label, file);
      assert.ok(Math.abs(scores[best]! - predictions[i]!.score) < 1e-4, `${file}: ${scores[best]} vs ${predictions[i]!.score}`);
    }
  } finally {
    await session.release();
  }
});
