/**
 * The `export` stage: the module and the trained head as one TF.js model that
 * plain tf.loadGraphModel / tf.loadLayersModel read, plus retrain.py's labels file.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { RetrainError } from '../errors.js';
import { rangeToMeanStd } from '../image/index.js';
import type { FeatureExtractor, ModuleInfo } from '../module/index.js';
import { checkModelFiles, concatBytes, folderSaveHandler, weightSlices } from '../module/io.js';
import { reachable } from './nodes.js';
import { writeAtomic } from '../util/fsutil.js';
import { stageFile } from '../util/write.js';
import { publishDir } from './publish.js';
import { MODEL_FILE } from './outputs.js';
import { exportFrozenGraph, isFrozenGraphPath } from './tf.js';
import { quantizeArtifacts, type QuantizeBytes } from './quantize.js';

export interface HeadValues {
  weights: Float32Array;
  biases: Float32Array;
  /** --hidden_units: a ReLU layer between the bottleneck and final_result. */
  hidden?: { weights: Float32Array; biases: Float32Array };
}

/** What a consumer (label-image, a browser app) needs to feed the model; stored in model.json. */
export interface RetrainMetadata {
  version: 1;
  inputName: string;
  outputName: string;
  inputHeight: number;
  inputWidth: number;
  inputRange: [number, number];
  /** `(pixel - inputMean) / inputStd` gives inputRange. */
  inputMean: number;
  inputStd: number;
  labels: string[];
  module: Pick<ModuleInfo, 'spec' | 'name' | 'id' | 'format' | 'bottleneckTensor' | 'bottleneckSize'>;
}

const labelsText = (labels: string[]): string => labels.join('\n') + '\n';

export async function writeLabels(file: string, labels: string[]): Promise<void> {
  await writeAtomic(file, labelsText(labels));
}

export function readLabels(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new RetrainError(`cannot read --labels ${file}: ${(err as Error).message}`);
  }
  return text.split(/\r?\n/).filter((l, i, all) => l !== '' || i < all.length - 1);
}

function metadataFor(ex: FeatureExtractor, labels: string[], inputName: string, outputName: string): RetrainMetadata {
  const { info } = ex;
  const { mean, std } = rangeToMeanStd(info.inputRange);
  return {
    version: 1,
    inputName,
    outputName,
    inputHeight: info.inputHeight,
    inputWidth: info.inputWidth,
    inputRange: info.inputRange,
    inputMean: mean,
    inputStd: std,
    labels,
    module: {
      spec: info.spec,
      name: info.name,
      id: info.id,
      format: info.format,
      bottleneckTensor: info.bottleneckTensor,
      bottleneckSize: info.bottleneckSize,
    },
  };
}

/** `file` relative to `dir` when it lies inside it. */
function within(dir: string, file: string): string | undefined {
  const rel = path.relative(path.resolve(dir), path.resolve(file));
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : undefined;
}

export interface ExportOptions {
  dir: string;
  labels: string[];
  finalTensorName: string;
  /** --quantize_bytes: 1 = uint8, 2 = float16 weights. */
  quantizeBytes?: QuantizeBytes;
  /** The labels file to publish with the model: inside the model folder it is swapped in with it, elsewhere renamed in right after. */
  labelsFile?: string;
  /** The flag that named `dir`, for errors. */
  flag?: string;
}

/** Writes the folder, quantizing the weights first when asked. */
function saveHandler(opts: ExportOptions): tf.io.IOHandler {
  const folder = folderSaveHandler(opts.dir);
  const q = opts.quantizeBytes;
  return q ? { save: (a) => folder.save!(quantizeArtifacts(a, q)) } : folder;
}

/**
 * Writes the model (and its labels) as one unit: the folder is built beside `dir`,
 * checked against its manifest and swapped in (./publish.ts); a .pb is one file
 * renamed into place. A failure at any point leaves the previous export whole.
 */
export async function exportModel(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const frozen = isFrozenGraphPath(opts.dir);
  const inside = opts.labelsFile === undefined || frozen ? undefined : within(opts.dir, opts.labelsFile);
  const labels = opts.labelsFile !== undefined && inside === undefined ? await stageFile(opts.labelsFile, labelsText(opts.labels)) : undefined;
  try {
    if (frozen) await exportFrozenGraph(ex, head, opts);
    else {
      const topLevel = inside?.split(path.sep)[0];
      await publishDir(
        opts.dir,
        opts.flag ?? '--output_graph',
        (name) => MODEL_FILE.test(name) || name === topLevel,
        async (dir) => {
          const staged = { ...opts, dir };
          if (ex.info.format === 'layers-model') await exportLayers(ex, head, staged);
          else if (ex.info.format === 'graph-model') await exportGraph(ex, head, staged);
          else throw new RetrainError(`a ${ex.info.format} module cannot be exported as a TF.js model: use its TF.js version as --tfhub_module`);
          if (inside !== undefined) await writeAtomic(path.join(dir, inside), labelsText(opts.labels));
        },
        (dir) => void checkModelFiles(path.join(dir, 'model.json')),
      );
    }
  } catch (err) {
    await labels?.abort();
    throw err;
  }
  await labels?.commit();
}

async function exportLayers(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const base = ex.layersModel!;
  const classes = opts.labels.length;
  let size = ex.info.bottleneckSize;
  let feature = base.outputs[0]!;
  const own: tf.layers.Layer[] = [];
  if (head.hidden) {
    const units = head.hidden.biases.length;
    const hidden = tf.layers.dense({
      units,
      activation: 'relu',
      name: `${opts.finalTensorName}_hidden`,
      weights: [tf.tensor2d(head.hidden.weights, [size, units]), tf.tensor1d(head.hidden.biases)],
    });
    feature = hidden.apply(feature) as tf.SymbolicTensor;
    own.push(hidden);
    size = units;
  }
  const dense = tf.layers.dense({
    units: classes,
    activation: 'softmax',
    name: opts.finalTensorName,
    weights: [tf.tensor2d(head.weights, [size, classes]), tf.tensor1d(head.biases)],
  });
  own.push(dense);
  const out = dense.apply(feature) as tf.SymbolicTensor;
  const model = tf.model({ inputs: base.inputs, outputs: out, name: 'retrained' });
  model.setUserDefinedMetadata({ retrain: metadataFor(ex, opts.labels, base.inputs[0]!.name, opts.finalTensorName) });
  await model.save(saveHandler(opts));
  // The head's weights are the only tensors this model owns; the rest belong to the module.
  for (const l of own) l.dispose();
}

interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
  device?: string;
}

const floatType = { type: 'DT_FLOAT' };
function constNode(name: string, shape: number[]): GraphNode {
  return {
    name,
    op: 'Const',
    attr: { value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } }, dtype: floatType },
  };
}


/**
 * Appends retrain.py's final_retrain_ops (MatMul, Add, Softmax named final_result)
 * to the module's GraphDef, then keeps only what final_result needs, so the model
 * has exactly one output.
 */
export function appendHeadToGraph(
  artifacts: tf.io.ModelArtifacts,
  bottleneckNode: string,
  bottleneckRank: number,
  head: HeadValues,
  classes: number,
  finalTensorName: string,
): { artifacts: tf.io.ModelArtifacts; inputName: string } {
  const topology = artifacts.modelTopology as { node: GraphNode[]; [k: string]: unknown };
  const size = head.biases.length === classes ? head.weights.length / classes : NaN;
  const nodes: GraphNode[] = [...topology.node];
  let feature = bottleneckNode;
  if (bottleneckRank === 4) {
    feature = 'final_retrain_ops/bottleneck/Squeeze';
    nodes.push({ name: feature, op: 'Squeeze', input: [bottleneckNode], attr: { squeeze_dims: { list: { i: ['1', '2'] } }, T: floatType } });
  }
  const wName = 'final_retrain_ops/weights/final_weights';
  const bName = 'final_retrain_ops/biases/final_biases';
  if (nodes.some((n) => n.name === finalTensorName || n.name === wName)) {
    throw new RetrainError(`the module already has a node named ${finalTensorName}: choose another --final_tensor_name`);
  }
  const extraSpecs: tf.io.WeightsManifestEntry[] = [];
  const extraData: Float32Array[] = [];
  if (head.hidden) {
    const units = head.hidden.biases.length;
    const hiddenIn = head.hidden.weights.length / units;
    const hw = 'final_retrain_ops/hidden/weights';
    const hb = 'final_retrain_ops/hidden/biases';
    nodes.push(constNode(hw, [hiddenIn, units]), constNode(hb, [units]));
    nodes.push({ name: 'final_retrain_ops/hidden/MatMul', op: 'MatMul', input: [feature, hw], attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: floatType } });
    nodes.push({ name: 'final_retrain_ops/hidden/add', op: 'Add', input: ['final_retrain_ops/hidden/MatMul', hb], attr: { T: floatType } });
    nodes.push({ name: 'final_retrain_ops/hidden/Relu', op: 'Relu', input: ['final_retrain_ops/hidden/add'], attr: { T: floatType } });
    feature = 'final_retrain_ops/hidden/Relu';
    extraSpecs.push({ name: hw, shape: [hiddenIn, units], dtype: 'float32' }, { name: hb, shape: [units], dtype: 'float32' });
    extraData.push(head.hidden.weights, head.hidden.biases);
  }
  nodes.push(constNode(wName, [size, classes]), constNode(bName, [classes]));
  nodes.push({
    name: 'final_retrain_ops/Wx_plus_b/MatMul',
    op: 'MatMul',
    input: [feature, wName],
    attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: floatType },
  });
  nodes.push({ name: 'final_retrain_ops/Wx_plus_b/add', op: 'Add', input: ['final_retrain_ops/Wx_plus_b/MatMul', bName], attr: { T: floatType } });
  nodes.push({ name: finalTensorName, op: 'Softmax', input: ['final_retrain_ops/Wx_plus_b/add'], attr: { T: floatType } });

  const needed = reachable(nodes, finalTensorName);
  const kept = nodes.filter((n) => needed.has(n.name));
  const inputs = kept.filter((n) => n.op === 'Placeholder');
  if (inputs.length !== 1) throw new RetrainError(`the module graph has ${inputs.length} inputs; retrain needs exactly one image input`);

  const keptSpecs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  for (const { spec, bytes } of weightSlices(artifacts)) {
    if (!needed.has(spec.name)) continue;
    keptSpecs.push(spec);
    parts.push(bytes);
  }
  keptSpecs.push(...extraSpecs, { name: wName, shape: [size, classes], dtype: 'float32' }, { name: bName, shape: [classes], dtype: 'float32' });
  for (const a of [...extraData, head.weights, head.biases]) parts.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return {
    artifacts: {
      ...artifacts,
      modelTopology: { ...topology, node: kept },
      weightSpecs: keptSpecs,
      weightData: concatBytes(parts),
      signature: undefined,
    },
    inputName: inputs[0]!.name,
  };
}

async function exportGraph(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const files = ex.files!;
  const { artifacts, inputName } = appendHeadToGraph(
    files.artifacts,
    ex.info.bottleneckTensor,
    ex.bottleneckRank ?? 2,
    head,
    opts.labels.length,
    opts.finalTensorName,
  );
  artifacts.generatedBy = `retrain-ts (module: ${files.artifacts.generatedBy ?? 'unknown'})`;
  artifacts.convertedBy = files.artifacts.convertedBy ?? undefined;
  artifacts.userDefinedMetadata = { retrain: metadataFor(ex, opts.labels, inputName, opts.finalTensorName) };
  await saveHandler(opts).save!(artifacts);
}
