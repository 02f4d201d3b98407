/**
 * TFLite metadata (src/export/tflite/metadata.ts), checked with readers that share none of
 * our TypeScript: flatc --json, Python flatbuffers with flatc's Python code, Python's zipfile,
 * and Arm NN's TFLite runtime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import {
  appendAssociatedFiles,
  buildModelMetadata,
  readAssociatedFiles,
  readTfliteMetadata,
  type ClassifierMetadataOptions,
} from '../src/export/tflite/metadata.js';
import { labelsText } from '../src/export/metadata.js';
import { RetrainError } from '../src/errors.js';
import {
  METADATA_SCHEMA,
  REFERENCE_TFLITE,
  SKIP_FLATC,
  SKIP_PY_FLATBUFFERS,
  SKIP_REFERENCE,
  dumpTflite,
  flatcJson,
  readWithPython,
} from './helpers/flatc.js';
import { SKIP_ARMNN, runArmnn } from './helpers/armnn.js';
import { tinyClassifier, tinyClassifierReference, type TinyClassifier } from './helpers/tiny_tflite.js';

const LABELS = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'];

const OPTIONS: ClassifierMetadataOptions = {
  name: 'flowers',
  description: 'Identifies 5 kinds of flowers.',
  version: 'v1',
  author: 'retrain-ts test',
  license: 'Apache-2.0',
  // Per channel, as an ImageNet-normalised .onnx module has it.
  mean: [123.675, 116.28, 103.53],
  std: [58.395, 57.12, 57.375],
  classes: LABELS.length,
};

const SPEC: TinyClassifier = {
  height: 6,
  width: 5,
  weights: Float32Array.from({ length: LABELS.length * 3 }, (_, i) => Math.sin(i + 1) * 2),
  bias: Float32Array.from({ length: LABELS.length }, (_, i) => i / 10 - 0.2),
};

async function tinyWithMetadata(opts = OPTIONS): Promise<Uint8Array> {
  const model = tinyClassifier({ ...SPEC, metadata: buildModelMetadata(opts) });
  return appendAssociatedFiles(model, [{ name: 'labels.txt', data: labelsText(LABELS) }]);
}

const close = (a: number[], b: number[], tol = 1e-5): boolean => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) <= tol);

test('the metadata buffer parses with flatc and the schema, as the metadata writer lays it out', { skip: SKIP_FLATC }, () => {
  const meta = flatcJson(METADATA_SCHEMA, buildModelMetadata(OPTIONS));
  assert.equal(meta.name, 'flowers');
  assert.equal(meta.description, 'Identifies 5 kinds of flowers.');
  assert.equal(meta.version, 'v1');
  assert.equal(meta.author, 'retrain-ts test');
  assert.equal(meta.license, 'Apache-2.0');
  assert.equal(meta.min_parser_version, '1.0.0');
  assert.equal(meta.subgraph_metadata.length, 1);
  const sg = meta.subgraph_metadata[0];
  // Nothing that would raise the minimum parser version above 1.0.0.
  assert.equal(sg.input_process_units, undefined);
  assert.equal(sg.output_process_units, undefined);

  const input = sg.input_tensor_metadata[0];
  assert.equal(input.name, 'image');
  assert.equal(input.content.content_properties_type, 'ImageProperties');
  assert.equal(input.content.content_properties.color_space, 'RGB');
  assert.equal(input.process_units.length, 1);
  assert.equal(input.process_units[0].options_type, 'NormalizationOptions');
  const { mean, std } = input.process_units[0].options;
  assert.ok(close(mean, OPTIONS.mean as number[], 1e-4) && close(std, OPTIONS.std as number[], 1e-4));
  // Stats: pixel 0 and 255 through the normalisation, per channel.
  assert.ok(close(input.stats.min, mean.map((m: number, c: number) => -m / std[c]), 1e-5));
  assert.ok(close(input.stats.max, mean.map((m: number, c: number) => (255 - m) / std[c]), 1e-5));

  const output = sg.output_tensor_metadata[0];
  assert.equal(output.name, 'probability');
  assert.equal(output.content.content_properties_type, 'FeatureProperties');
  assert.deepEqual(output.stats, { max: [1], min: [0] });
  assert.deepEqual(
    output.associated_files.map((f: any) => [f.name, f.type]),
    [['labels.txt', 'TENSOR_AXIS_LABELS']],
  );
});

test('normalisation reproduces the module range; quantized inputs record 0..255', { skip: SKIP_FLATC }, () => {
  // A [-1, 1] module (mean = std = 127.5) and a [0, 1] module (mean 0, std 255).
  for (const [mean, std, range] of [
    [127.5, 127.5, [-1, 1]],
    [0, 255, [0, 1]],
  ] as const) {
    const meta = flatcJson(METADATA_SCHEMA, buildModelMetadata({ ...OPTIONS, mean, std }));
    const input = meta.subgraph_metadata[0].input_tensor_metadata[0];
    assert.deepEqual(input.process_units[0].options, { mean: [mean], std: [std] });
    assert.deepEqual([input.stats.min[0], input.stats.max[0]], range);
  }
  const quant = flatcJson(METADATA_SCHEMA, buildModelMetadata({ ...OPTIONS, inputType: 'uint8', outputType: 'uint8' }));
  const sg = quant.subgraph_metadata[0];
  assert.deepEqual(sg.input_tensor_metadata[0].stats, { max: [255], min: [0] });
  assert.deepEqual(sg.output_tensor_metadata[0].stats, { max: [255], min: [0] });
  const int8 = flatcJson(METADATA_SCHEMA, buildModelMetadata({ ...OPTIONS, inputType: 'int8', outputType: 'int8' }));
  assert.equal(int8.subgraph_metadata[0].input_tensor_metadata[0].stats, undefined);

  assert.throws(() => buildModelMetadata({ ...OPTIONS, mean: [1, 2], std: [1, 2] }), RetrainError);
  assert.throws(() => buildModelMetadata({ ...OPTIONS, mean: 0, std: 0 }), RetrainError);
});

test('a model with metadata and labels reads back with Python flatbuffers and zipfile', { skip: SKIP_PY_FLATBUFFERS }, async () => {
  const bare = tinyClassifier({ ...SPEC, metadata: buildModelMetadata(OPTIONS) });
  const bytes = await appendAssociatedFiles(bare, [{ name: 'labels.txt', data: labelsText(LABELS) }]);
  assert.deepEqual(bytes.subarray(0, bare.length), bare, 'the flatbuffer itself is unchanged');

  const py = readWithPython(bytes);
  assert.deepEqual(py.inputs, [{ name: 'image', shape: [1, 6, 5, 3], type: 'FLOAT32' }]);
  assert.deepEqual(py.metadata_entries.map(([name]) => name), ['TFLITE_METADATA']);
  const meta = py.metadata;
  assert.equal(meta.name, 'flowers');
  assert.equal(meta.author, 'retrain-ts test');
  assert.equal(meta.minParserVersion, '1.0.0');
  const input = meta.subgraphMetadata[0].inputTensorMetadata[0];
  assert.equal(input.content.contentPropertiesType, 2); // ImageProperties
  assert.equal(input.content.contentProperties.colorSpace, 1); // RGB
  assert.ok(close(input.processUnits[0].options.mean, OPTIONS.mean as number[], 1e-4));
  const labelsFile = meta.subgraphMetadata[0].outputTensorMetadata[0].associatedFiles[0];
  assert.equal(labelsFile.name, 'labels.txt');
  assert.equal(labelsFile.type, 2); // TENSOR_AXIS_LABELS

  // As MetadataPopulator packs it: stored, offsets from the start of the .tflite file.
  assert.equal(py.zip.length, 1);
  const entry = py.zip[0]!;
  assert.equal(entry.name, 'labels.txt');
  assert.equal(entry.compress_type, 0);
  assert.equal(entry.header_offset, bare.length);
  assert.equal(entry.flag_bits & 8, 0, 'no data descriptor');
  assert.equal(entry.text, 'daisy\ndandelion\nroses\nsunflowers\ntulips\n');
});

test('the dump helper shows a model and its metadata through flatc', { skip: SKIP_FLATC }, async () => {
  const { model, metadata } = dumpTflite(await tinyWithMetadata());
  assert.deepEqual(
    model.operator_codes.map((c: any) => c.builtin_code),
    ['MEAN', 'FULLY_CONNECTED', 'SOFTMAX'],
  );
  assert.equal(model.subgraphs[0].operators[1].builtin_options_type, 'FullyConnectedOptions');
  assert.equal(metadata.name, 'flowers');
});

test('readTfliteMetadata round-trips what buildModelMetadata and appendAssociatedFiles wrote', async () => {
  const bytes = await tinyWithMetadata();
  const meta = await readTfliteMetadata(bytes);
  assert.equal(meta.name, OPTIONS.name);
  assert.equal(meta.description, OPTIONS.description);
  assert.equal(meta.version, OPTIONS.version);
  assert.equal(meta.author, OPTIONS.author);
  assert.equal(meta.license, OPTIONS.license);
  assert.deepEqual(meta.labels, LABELS);
  assert.ok(close(meta.mean, OPTIONS.mean as number[], 1e-4));
  assert.ok(close(meta.std, OPTIONS.std as number[], 1e-4));
  assert.deepEqual([meta.inputHeight, meta.inputWidth, meta.inputType, meta.outputType], [6, 5, 'float32', 'float32']);
  assert.ok(meta.inputRange && close(meta.inputRange, [-123.675 / 58.395, (255 - 103.53) / 57.375], 1e-5));
  assert.equal(meta.minParserVersion, '1.0.0');

  // Same input, same bytes: the zip's dates are fixed.
  assert.deepEqual(await tinyWithMetadata(), bytes);
  // Several files keep their order and contents.
  const files = await readAssociatedFiles(
    await appendAssociatedFiles(tinyClassifier(SPEC), [
      { name: 'labels.txt', data: 'a\nb\n' },
      { name: 'notes.bin', data: new Uint8Array([0, 255, 7]) },
    ]),
  );
  assert.deepEqual([...files.keys()], ['labels.txt', 'notes.bin']);
  assert.deepEqual(Array.from(files.get('notes.bin')!), [0, 255, 7]);
  await assert.rejects(appendAssociatedFiles(tinyClassifier(SPEC), [{ name: 'x/labels.txt', data: '' }]), RetrainError);
});

test('readTfliteMetadata names what is missing', async () => {
  await assert.rejects(readTfliteMetadata(new TextEncoder().encode('not a model at all'), 'x.tflite'), /x\.tflite is not a TFLite model/);
  await assert.rejects(readTfliteMetadata(tinyClassifier(SPEC), 'bare.tflite'), /bare\.tflite has no TFLITE_METADATA metadata/);
  const noZip = tinyClassifier({ ...SPEC, metadata: buildModelMetadata(OPTIONS) });
  await assert.rejects(readTfliteMetadata(noZip, 'm.tflite'), /m\.tflite: labels\.txt is not in the zip/);
});

test('readTfliteMetadata reads the reference .tflite that the TFLite tools made', { skip: SKIP_REFERENCE }, async () => {
  const meta = await readTfliteMetadata(new Uint8Array(fs.readFileSync(REFERENCE_TFLITE)));
  assert.equal(meta.name, 'MobileNetV1 image classifier');
  assert.equal(meta.version, 'v1');
  assert.equal(meta.author, 'TensorFlow');
  assert.deepEqual([meta.mean, meta.std, meta.inputRange], [[127.5], [127.5], [-1, 1]]);
  assert.deepEqual([meta.inputHeight, meta.inputWidth, meta.inputType], [224, 224, 'float32']);
  assert.equal(meta.labels.length, 1001);
  assert.equal(meta.labels[0], 'background');
});

test('Arm NN runs the tiny model with its metadata and zip, matching the reference maths', { skip: SKIP_ARMNN }, async () => {
  const bytes = await tinyWithMetadata();
  const pixels = SPEC.height * SPEC.width * 3;
  const images = [0, 1, 2].map((k) => Float32Array.from({ length: pixels }, (_, i) => Math.cos(i * 0.7 + k) * (k + 1)));
  const batch = new Float32Array(images.length * pixels);
  images.forEach((img, k) => batch.set(img, k * pixels));
  const result = runArmnn(bytes, batch);
  assert.deepEqual(result.input.shape, [1, 6, 5, 3]);
  assert.equal(result.input.dtype, 'float32');
  assert.equal(result.outputs.length, 3);
  images.forEach((img, k) => {
    const want = tinyClassifierReference(SPEC, img);
    assert.ok(close(result.outputs[k]!, want, 1e-5), `image ${k}: ${result.outputs[k]} vs ${want}`);
  });
});

const DAISY = path.resolve(REFERENCE_TFLITE, '../../../datasets/flowers-dev/daisy/2019064575_7656b9340f_m.jpg');

test('Arm NN classifies a daisy with the reference .tflite, as its PROVENANCE.md says', { skip: SKIP_ARMNN || SKIP_REFERENCE }, async () => {
  const bytes = new Uint8Array(fs.readFileSync(REFERENCE_TFLITE));
  const meta = await readTfliteMetadata(bytes);
  // Pixels normalised as the metadata says, not as we know MobileNet wants them.
  const { data } = await sharp(DAISY).removeAlpha().resize(meta.inputWidth, meta.inputHeight, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  const x = Float32Array.from(data, (p, i) => (p - meta.mean[i % meta.mean.length]!) / meta.std[i % meta.std.length]!);
  const probs = runArmnn(REFERENCE_TFLITE, x).outputs[0]!;
  const top = probs.indexOf(Math.max(...probs));
  assert.equal(meta.labels[top], 'daisy');
  // PROVENANCE.md: 0.958 on a daisy photo; resizing differs a little between tools.
  assert.ok(Math.abs(probs[top]! - 0.958) < 0.03, `p(daisy) = ${probs[top]}`);
});
