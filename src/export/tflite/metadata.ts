/**
 * TFLite model metadata for an image classifier, as TFLite's metadata writer
 * (tflite_support's metadata_writers.image_classifier + MetadataPopulator) makes it and as
 * the TFLite Task Library, MediaPipe and Android Studio read it:
 * - a ModelMetadata flatbuffer (metadata_schema.fbs, identifier "M001") stored in a model
 *   buffer named by a Model.metadata entry "TFLITE_METADATA";
 * - the associated files (labels.txt) in a zip appended to the .tflite file, entries stored
 *   uncompressed, offsets counted from the start of the file.
 */
import * as flatbuffers from 'flatbuffers';
import {
  ZipReader,
  ZipWriter,
  Uint8ArrayReader,
  Uint8ArrayWriter,
} from '@zip.js/zip.js';
import { RetrainError } from '../../errors.js';
import { Model, TensorType } from './generated/schema_generated.js';
import {
  AssociatedFile,
  AssociatedFileType,
  ColorSpaceType,
  Content,
  ContentProperties,
  FeatureProperties,
  ImageProperties,
  ModelMetadata,
  NormalizationOptions,
  ProcessUnit,
  ProcessUnitOptions,
  Stats,
  SubGraphMetadata,
  TensorMetadata,
  type TensorMetadata as TensorMetadataTable,
} from './generated/metadata_schema_generated.js';

/** The Model.metadata entry that names the ModelMetadata buffer. */
export const METADATA_NAME = 'TFLITE_METADATA';
/** ModelMetadata's flatbuffer file identifier. */
export const METADATA_IDENTIFIER = 'M001';
/** The labels file as the Task Library expects it: one label a line, TENSOR_AXIS_LABELS. */
export const LABELS_FILE = 'labels.txt';
/**
 * The oldest metadata parser that reads every field written here: we use no member added
 * after schema 1.0.0 (no process units on the subgraph, no tensor groups, no
 * AssociatedFile.version), so this is what MetadataPopulator would compute.
 */
export const MIN_PARSER_VERSION = '1.0.0';

/** The types an image classifier's input and output may have (what the Task Library takes). */
export type IoType = 'float32' | 'uint8' | 'int8';

export interface ClassifierMetadataOptions {
  name: string;
  description: string;
  version: string;
  author: string;
  license: string;
  /** `(pixel - mean) / std` maps pixels 0..255 to what the module expects; one value or R,G,B. */
  mean: number | number[];
  std: number | number[];
  /** Input tensor type; uint8 inputs take raw pixels (their normalisation is folded into quantization). */
  inputType?: IoType;
  outputType?: IoType;
  /** The number of classes, for the output's description. */
  classes: number;
  inputName?: string;
  inputDescription?: string;
  outputName?: string;
  outputDescription?: string;
  labelsFile?: string;
}

const asList = (v: number | number[]): number[] => (Array.isArray(v) ? v : [v]);

/** A string field, or none when the value is absent (as Python's object API leaves it out). */
function str(b: flatbuffers.Builder, s: string | undefined): flatbuffers.Offset {
  return s === undefined ? 0 : b.createString(s);
}

function content(b: flatbuffers.Builder, type: ContentProperties, props: flatbuffers.Offset): flatbuffers.Offset {
  Content.startContent(b);
  Content.addContentPropertiesType(b, type);
  Content.addContentProperties(b, props);
  return Content.endContent(b);
}

function stats(b: flatbuffers.Builder, min: number[], max: number[]): flatbuffers.Offset {
  const maxV = Stats.createMaxVector(b, max);
  const minV = Stats.createMinVector(b, min);
  return Stats.createStats(b, maxV, minV);
}

/** What the metadata writer records as a tensor's value range, by type (metadata_info.py). */
function inputStats(type: IoType, mean: number[], std: number[]): [number[], number[]] | null {
  if (type === 'uint8') return [[0], [255]];
  if (type === 'float32') return [mean.map((m, i) => (0 - m) / std[i]!), mean.map((m, i) => (255 - m) / std[i]!)];
  return null;
}

function outputStats(type: IoType): [number[], number[]] | null {
  if (type === 'uint8') return [[0], [255]];
  if (type === 'float32') return [[0], [1]];
  return null;
}

/**
 * The bytes of the TFLITE_METADATA buffer for an image classifier: ModelMetadata with one
 * SubGraphMetadata, the input as an RGB image with its normalisation and value range, the
 * output as probabilities labelled by the associated labels file.
 */
export function buildModelMetadata(opts: ClassifierMetadataOptions): Uint8Array {
  const mean = asList(opts.mean);
  const std = asList(opts.std);
  if (mean.length !== std.length || (mean.length !== 1 && mean.length !== 3)) {
    throw new RetrainError(`TFLite metadata: mean and std need 1 or 3 values each, got ${mean.length} and ${std.length}`);
  }
  if (std.some((s) => !(s > 0)) || mean.some((m) => !Number.isFinite(m))) {
    throw new RetrainError('TFLite metadata: std must be positive and mean finite');
  }
  const inputType = opts.inputType ?? 'float32';
  const outputType = opts.outputType ?? 'float32';
  const b = new flatbuffers.Builder(1024);

  // Input: an RGB image, normalised by (pixel - mean) / std.
  const imageProps = (() => {
    ImageProperties.startImageProperties(b);
    ImageProperties.addColorSpace(b, ColorSpaceType.RGB);
    return ImageProperties.endImageProperties(b);
  })();
  const inContent = content(b, ContentProperties.ImageProperties, imageProps);
  const norm = NormalizationOptions.createNormalizationOptions(
    b,
    NormalizationOptions.createMeanVector(b, mean),
    NormalizationOptions.createStdVector(b, std),
  );
  const unit = ProcessUnit.createProcessUnit(b, ProcessUnitOptions.NormalizationOptions, norm);
  const inRange = inputStats(inputType, mean, std);
  const inStats = inRange ? stats(b, inRange[0], inRange[1]) : 0;
  const inName = str(b, opts.inputName ?? 'image');
  const inDesc = str(b, opts.inputDescription ?? 'Input image to be classified.');
  const inUnits = TensorMetadata.createProcessUnitsVector(b, [unit]);
  TensorMetadata.startTensorMetadata(b);
  TensorMetadata.addName(b, inName);
  TensorMetadata.addDescription(b, inDesc);
  TensorMetadata.addContent(b, inContent);
  TensorMetadata.addProcessUnits(b, inUnits);
  if (inStats) TensorMetadata.addStats(b, inStats);
  const input = TensorMetadata.endTensorMetadata(b);

  // Output: one probability per class, labelled by the labels file.
  FeatureProperties.startFeatureProperties(b);
  const featureProps = FeatureProperties.endFeatureProperties(b);
  const outContent = content(b, ContentProperties.FeatureProperties, featureProps);
  const outRange = outputStats(outputType);
  const outStats = outRange ? stats(b, outRange[0], outRange[1]) : 0;
  const labels = AssociatedFile.createAssociatedFile(
    b,
    b.createString(opts.labelsFile ?? LABELS_FILE),
    b.createString('Labels for categories that the model can recognize.'),
    AssociatedFileType.TENSOR_AXIS_LABELS,
    0,
    0,
  );
  const outName = str(b, opts.outputName ?? 'probability');
  const outDesc = str(b, opts.outputDescription ?? `Probabilities of the ${opts.classes} labels respectively.`);
  const outFiles = TensorMetadata.createAssociatedFilesVector(b, [labels]);
  TensorMetadata.startTensorMetadata(b);
  TensorMetadata.addName(b, outName);
  TensorMetadata.addDescription(b, outDesc);
  TensorMetadata.addContent(b, outContent);
  if (outStats) TensorMetadata.addStats(b, outStats);
  TensorMetadata.addAssociatedFiles(b, outFiles);
  const output = TensorMetadata.endTensorMetadata(b);

  const inputs = SubGraphMetadata.createInputTensorMetadataVector(b, [input]);
  const outputs = SubGraphMetadata.createOutputTensorMetadataVector(b, [output]);
  SubGraphMetadata.startSubGraphMetadata(b);
  SubGraphMetadata.addInputTensorMetadata(b, inputs);
  SubGraphMetadata.addOutputTensorMetadata(b, outputs);
  const subgraph = SubGraphMetadata.endSubGraphMetadata(b);

  const name = b.createString(opts.name);
  const description = b.createString(opts.description);
  const version = b.createString(opts.version);
  const subgraphs = ModelMetadata.createSubgraphMetadataVector(b, [subgraph]);
  const author = b.createString(opts.author);
  const license = b.createString(opts.license);
  const minParser = b.createString(MIN_PARSER_VERSION);
  ModelMetadata.startModelMetadata(b);
  ModelMetadata.addName(b, name);
  ModelMetadata.addDescription(b, description);
  ModelMetadata.addVersion(b, version);
  ModelMetadata.addSubgraphMetadata(b, subgraphs);
  ModelMetadata.addAuthor(b, author);
  ModelMetadata.addLicense(b, license);
  ModelMetadata.addMinParserVersion(b, minParser);
  b.finish(ModelMetadata.endModelMetadata(b), METADATA_IDENTIFIER);
  return b.asUint8Array().slice();
}

/** A file packed with the model (labels.txt). */
export interface AssociatedFileData {
  name: string;
  data: Uint8Array | string;
}

/** DOS timestamps have no zone; a fixed local date keeps the output the same on every run. */
const ZIP_DATE = new Date(1980, 0, 1, 0, 0, 0);

/**
 * The model with its associated files packed as a zip appended to it, as MetadataPopulator
 * does (Python's zipfile in append mode): entries stored uncompressed (the Task Library
 * reads them in place and refuses compressed ones), offsets counted from the start of the
 * .tflite file, no data descriptors.
 */
export async function appendAssociatedFiles(model: Uint8Array, files: AssociatedFileData[]): Promise<Uint8Array> {
  if (files.length === 0) return model;
  const names = new Set<string>();
  for (const f of files) {
    if (!f.name || f.name.includes('/') || names.has(f.name)) {
      throw new RetrainError(`TFLite associated file name ${JSON.stringify(f.name)}: need distinct names without folders`);
    }
    names.add(f.name);
  }
  const sink = new Uint8ArrayWriter();
  // zip.js counts offsets from a size set beforehand: the zip starts after the model.
  sink.size = model.length;
  const zip = new ZipWriter(sink, {
    level: 0,
    useWebWorkers: false,
    dataDescriptor: false,
    extendedTimestamp: false,
    lastModDate: ZIP_DATE,
    keepOrder: true,
  });
  for (const f of files) {
    const data = typeof f.data === 'string' ? new TextEncoder().encode(f.data) : f.data;
    await zip.add(f.name, new Uint8ArrayReader(data));
  }
  const packed = await zip.close();
  const out = new Uint8Array(model.length + packed.length);
  out.set(model, 0);
  out.set(packed, model.length);
  return out;
}

/** The files in the zip appended to a .tflite file (none when there is no zip). */
export async function readAssociatedFiles(bytes: Uint8Array): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  if (!hasZipEnd(bytes)) return files;
  const zip = new ZipReader(new Uint8ArrayReader(bytes), { useWebWorkers: false });
  try {
    for (const entry of await zip.getEntries()) {
      if (entry.directory || !entry.getData) continue;
      files.set(entry.filename, await entry.getData(new Uint8ArrayWriter()));
    }
  } finally {
    await zip.close();
  }
  return files;
}

/** A zip's end-of-central-directory record within its last 64 KiB + 22 bytes. */
function hasZipEnd(bytes: Uint8Array): boolean {
  const stop = Math.max(0, bytes.length - 22 - 0xffff);
  for (let i = bytes.length - 22; i >= stop; i--) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === 0x05 && bytes[i + 3] === 0x06) return true;
  }
  return false;
}

/** Parses a .tflite's root, checking the file identifier. */
export function readModel(bytes: Uint8Array, source = 'the .tflite file'): Model {
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (bytes.length < 8 || !Model.bufferHasIdentifier(bb)) {
    throw new RetrainError(`${source} is not a TFLite model (no "TFL3" file identifier)`);
  }
  return Model.getRootAsModel(bb);
}

/** The TFLITE_METADATA buffer's bytes, or null when the model has none. */
export function metadataBuffer(model: Model): Uint8Array | null {
  for (let i = 0; i < model.metadataLength(); i++) {
    const entry = model.metadata(i)!;
    if (entry.name() !== METADATA_NAME) continue;
    const buffer = model.buffers(entry.buffer());
    return buffer?.dataArray() ?? null;
  }
  return null;
}

const IO_TYPES: Partial<Record<TensorType, IoType>> = {
  [TensorType.FLOAT32]: 'float32',
  [TensorType.UINT8]: 'uint8',
  [TensorType.INT8]: 'int8',
};

/** What label-image needs from a .tflite classifier, read from its metadata and its tensors. */
export interface TfliteMetadata {
  name: string;
  description: string;
  version: string;
  author: string;
  license: string;
  /** From the TENSOR_AXIS_LABELS file of the output. */
  labels: string[];
  /** `(pixel - mean) / std`; one value, or one per channel (R,G,B). */
  mean: number[];
  std: number[];
  /** The input's value range after normalisation (its Stats), when recorded. */
  inputRange: [number, number] | null;
  inputHeight: number;
  inputWidth: number;
  inputType: IoType;
  outputType: IoType;
  minParserVersion: string | null;
}

function tensorStats(t: TensorMetadataTable): [number, number] | null {
  const s = t.stats();
  const min = s?.minArray();
  const max = s?.maxArray();
  if (!min || !max || min.length === 0 || max.length === 0) return null;
  return [Math.min(...min), Math.max(...max)];
}

/**
 * Reads an image classifier's metadata: names, normalisation, labels (from the appended zip)
 * and the input size and types (from the model's input and output tensors).
 */
export async function readTfliteMetadata(bytes: Uint8Array, source = 'the .tflite file'): Promise<TfliteMetadata> {
  const model = readModel(bytes, source);
  const sg = model.subgraphs(0);
  if (!sg || sg.inputsLength() !== 1 || sg.outputsLength() !== 1) {
    throw new RetrainError(`${source}: expected one subgraph with one input and one output (an image classifier)`);
  }
  const inTensor = sg.tensors(sg.inputs(0)!)!;
  const outTensor = sg.tensors(sg.outputs(0)!)!;
  const shape = Array.from(inTensor.shapeArray() ?? []);
  if (shape.length !== 4 || shape[3] !== 3) {
    throw new RetrainError(`${source}: the input is [${shape.join(', ')}], expected [1, height, width, 3]`);
  }
  const inputType = IO_TYPES[inTensor.type()];
  const outputType = IO_TYPES[outTensor.type()];
  if (!inputType || !outputType) {
    throw new RetrainError(
      `${source}: input ${TensorType[inTensor.type()]} / output ${TensorType[outTensor.type()]}; label-image takes float32, uint8 or int8`,
    );
  }

  const metaBytes = metadataBuffer(model);
  if (!metaBytes) {
    throw new RetrainError(`${source} has no ${METADATA_NAME} metadata: write it with retrain --output_graph model.tflite, or pass --labels`);
  }
  const metaBb = new flatbuffers.ByteBuffer(metaBytes);
  if (!ModelMetadata.bufferHasIdentifier(metaBb)) {
    throw new RetrainError(`${source}: its ${METADATA_NAME} buffer is not model metadata (no "${METADATA_IDENTIFIER}" file identifier)`);
  }
  const meta = ModelMetadata.getRootAsModelMetadata(metaBb);
  const sgm = meta.subgraphMetadata(0);
  const inMeta = sgm?.inputTensorMetadata(0);
  const outMeta = sgm?.outputTensorMetadata(0);
  if (!inMeta || !outMeta) throw new RetrainError(`${source}: its metadata describes no input or output tensor`);

  let mean: number[] = [0];
  let std: number[] = [1];
  for (let i = 0; i < inMeta.processUnitsLength(); i++) {
    const unit = inMeta.processUnits(i)!;
    if (unit.optionsType() !== ProcessUnitOptions.NormalizationOptions) continue;
    const norm = unit.options(new NormalizationOptions()) as NormalizationOptions;
    mean = Array.from(norm.meanArray() ?? []);
    std = Array.from(norm.stdArray() ?? []);
  }
  if (mean.length === 0 || mean.length !== std.length) {
    throw new RetrainError(`${source}: its input NormalizationOptions has ${mean.length} means and ${std.length} stds`);
  }

  let labelsName: string | null = null;
  for (let i = 0; i < outMeta.associatedFilesLength(); i++) {
    const f = outMeta.associatedFiles(i)!;
    if (f.type() === AssociatedFileType.TENSOR_AXIS_LABELS && f.name()) {
      labelsName = f.name();
      break;
    }
  }
  if (!labelsName) throw new RetrainError(`${source}: its output metadata names no TENSOR_AXIS_LABELS file`);
  const files = await readAssociatedFiles(bytes);
  const labelBytes = files.get(labelsName);
  if (!labelBytes) throw new RetrainError(`${source}: ${labelsName} is not in the zip appended to the model`);
  const labels = new TextDecoder().decode(labelBytes).split(/\r?\n/);
  while (labels.length > 0 && labels[labels.length - 1] === '') labels.pop();

  return {
    name: meta.name() ?? '',
    description: meta.description() ?? '',
    version: meta.version() ?? '',
    author: meta.author() ?? '',
    license: meta.license() ?? '',
    labels,
    mean,
    std,
    inputRange: tensorStats(inMeta),
    inputHeight: shape[1]!,
    inputWidth: shape[2]!,
    inputType,
    outputType,
    minParserVersion: meta.minParserVersion(),
  };
}
