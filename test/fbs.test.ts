/**
 * The repo's TFLite schemas (src/export/tflite/schema/*.fbs) and the TypeScript flatc
 * generates from them: the committed code is what `npm run gen:fbs` makes, and the schemas
 * read a .tflite file that the TFLite tools made, as its PROVENANCE.md describes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as flatbuffers from 'flatbuffers';
import { ZipReader, Uint8ArrayReader, Uint8ArrayWriter } from '@zip.js/zip.js';
import {
  ActivationFunctionType,
  BuiltinOperator,
  BuiltinOptions,
  Conv2DOptions,
  Model,
  TensorType,
} from '../src/export/tflite/generated/schema_generated.js';
import {
  AssociatedFileType,
  ColorSpaceType,
  ContentProperties,
  ImageProperties,
  ModelMetadata,
  NormalizationOptions,
  ProcessUnitOptions,
} from '../src/export/tflite/generated/metadata_schema_generated.js';
import { REFERENCE_TFLITE, REPO_ROOT, SKIP_FLATC, SKIP_REFERENCE } from './helpers/flatc.js';

const GENERATED = path.join(REPO_ROOT, 'src/export/tflite/generated');

function listFiles(root: string): string[] {
  return fs
    .readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

test('the committed generated code is what scripts/gen-fbs.sh makes from the .fbs files', { skip: SKIP_FLATC }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'retrain-fbs-'));
  try {
    const r = spawnSync('bash', [path.join(REPO_ROOT, 'scripts/gen-fbs.sh'), out], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const files = listFiles(out);
    assert.deepEqual(listFiles(GENERATED), files, 'run `npm run gen:fbs` and commit the result');
    assert.ok(files.includes('schema_generated.ts') && files.includes('metadata_schema_generated.ts'));
    for (const f of files) {
      assert.equal(
        fs.readFileSync(path.join(GENERATED, f), 'utf8'),
        fs.readFileSync(path.join(out, f), 'utf8'),
        `${f} differs from flatc's output: run \`npm run gen:fbs\``,
      );
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

/** TFLite's own rule: the op is the larger of the old byte code and the new int code. */
function opName(model: Model, opcodeIndex: number): string {
  const oc = model.operatorCodes(opcodeIndex)!;
  return BuiltinOperator[Math.max(oc.deprecatedBuiltinCode(), oc.builtinCode())]!;
}

test('the schemas read the reference .tflite that the TFLite tools made', { skip: SKIP_REFERENCE }, async () => {
  const bytes = new Uint8Array(fs.readFileSync(REFERENCE_TFLITE));
  const bb = new flatbuffers.ByteBuffer(bytes);
  assert.ok(Model.bufferHasIdentifier(bb), 'file identifier TFL3');
  const model = Model.getRootAsModel(bb);
  assert.equal(model.version(), 3);
  assert.equal(model.subgraphsLength(), 1);
  const sg = model.subgraphs(0)!;

  const ops = new Set<string>();
  for (let i = 0; i < sg.operatorsLength(); i++) ops.add(opName(model, sg.operators(i)!.opcodeIndex()));
  assert.deepEqual([...ops].sort(), ['AVERAGE_POOL_2D', 'CONV_2D', 'DEPTHWISE_CONV_2D', 'SOFTMAX', 'SQUEEZE']);

  // The first op is MobileNet's stride-2 conv with a fused ReLU6: the option union's slot and
  // member id match the official schema.
  const first = sg.operators(0)!;
  assert.equal(opName(model, first.opcodeIndex()), 'CONV_2D');
  assert.equal(first.builtinOptionsType(), BuiltinOptions.Conv2DOptions);
  const conv = first.builtinOptions(new Conv2DOptions()) as Conv2DOptions;
  assert.equal(conv.strideW(), 2);
  assert.equal(conv.fusedActivationFunction(), ActivationFunctionType.RELU6);
  const filter = sg.tensors(first.inputs(1)!)!;
  assert.deepEqual(Array.from(filter.shapeArray()!), [8, 3, 3, 3]);
  assert.equal(model.buffers(filter.buffer())!.dataLength(), 8 * 3 * 3 * 3 * 4);

  assert.equal(sg.inputsLength(), 1);
  assert.equal(sg.outputsLength(), 1);
  const input = sg.tensors(sg.inputs(0)!)!;
  const output = sg.tensors(sg.outputs(0)!)!;
  assert.deepEqual(Array.from(input.shapeArray()!), [1, 224, 224, 3]);
  assert.equal(input.type(), TensorType.FLOAT32);
  assert.deepEqual(Array.from(output.shapeArray()!), [1, 1001]);
  assert.equal(output.type(), TensorType.FLOAT32);

  // TFLITE_METADATA: a ModelMetadata flatbuffer (identifier M001) in a model buffer.
  const entries = Array.from({ length: model.metadataLength() }, (_, i) => model.metadata(i)!);
  const entry = entries.find((m) => m.name() === 'TFLITE_METADATA');
  assert.ok(entry, 'a TFLITE_METADATA entry');
  const metaBytes = model.buffers(entry.buffer())!.dataArray()!;
  const metaBb = new flatbuffers.ByteBuffer(metaBytes);
  assert.ok(ModelMetadata.bufferHasIdentifier(metaBb), 'file identifier M001');
  const meta = ModelMetadata.getRootAsModelMetadata(metaBb);
  assert.equal(meta.name(), 'MobileNetV1 image classifier');
  assert.equal(meta.version(), 'v1');
  assert.equal(meta.author(), 'TensorFlow');
  assert.match(meta.license()!, /Apache License\. Version 2\.0/);
  assert.equal(meta.subgraphMetadataLength(), 1);
  const sgm = meta.subgraphMetadata(0)!;

  const inMeta = sgm.inputTensorMetadata(0)!;
  assert.equal(inMeta.content()!.contentPropertiesType(), ContentProperties.ImageProperties);
  const image = inMeta.content()!.contentProperties(new ImageProperties()) as ImageProperties;
  assert.equal(image.colorSpace(), ColorSpaceType.RGB);
  const unit = inMeta.processUnits(0)!;
  assert.equal(unit.optionsType(), ProcessUnitOptions.NormalizationOptions);
  const norm = unit.options(new NormalizationOptions()) as NormalizationOptions;
  assert.deepEqual(Array.from(norm.meanArray()!), [127.5]);
  assert.deepEqual(Array.from(norm.stdArray()!), [127.5]);
  assert.deepEqual(Array.from(inMeta.stats()!.minArray()!), [-1]);
  assert.deepEqual(Array.from(inMeta.stats()!.maxArray()!), [1]);

  const outMeta = sgm.outputTensorMetadata(0)!;
  assert.equal(outMeta.associatedFilesLength(), 1);
  const labelsFile = outMeta.associatedFiles(0)!;
  assert.equal(labelsFile.name(), 'labels.txt');
  assert.equal(labelsFile.type(), AssociatedFileType.TENSOR_AXIS_LABELS);

  // The associated files: a zip appended after the flatbuffer, entries stored uncompressed.
  const zip = new ZipReader(new Uint8ArrayReader(bytes), { useWebWorkers: false });
  const zipEntries = await zip.getEntries();
  assert.deepEqual(zipEntries.map((e) => e.filename), ['labels.txt']);
  const labelsEntry = zipEntries[0]!;
  assert.equal(labelsEntry.compressionMethod, 0, 'stored, as the Task Library requires');
  assert.equal(labelsEntry.directory, false);
  const labels = new TextDecoder().decode(await labelsEntry.getData!(new Uint8ArrayWriter())).trimEnd().split('\n');
  await zip.close();
  assert.equal(labels.length, 1001);
  assert.equal(labels[0], 'background');
  assert.ok(labels.includes('daisy'));
});
