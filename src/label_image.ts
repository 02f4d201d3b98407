/**
 * label-image: classifies images with a model retrain exported (or any TF.js
 * classifier), with TensorFlow's label_image.py flags. Preprocessing is the very
 * function retrain uses, so an image gets the same scores in both.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { listImagesDeep } from './dataset/index.js';
import { ImageError, RetrainError, UsageError, errorMessage } from './errors.js';
import { readLabels, type RetrainMetadata } from './export/index.js';
import { decodeImage, toModuleInput, type InputSpec } from './image/index.js';
import { graphDefToArtifacts, readGraphFile, unsupportedOps } from './export/tfgraph.js';
import { modelFormat, modelJsonPathOf, readModelFiles, type LoadedModelFiles } from './module/io.js';

export interface LabelImageOptions {
  graph: string;
  labels?: string;
  inputLayer?: string;
  outputLayer?: string;
  inputHeight?: number;
  inputWidth?: number;
  inputMean?: number;
  inputStd?: number;
}

export interface Classifier {
  labels: string[] | undefined;
  spec: InputSpec;
  metadata: RetrainMetadata | undefined;
  /** [N,H,W,3] normalised input → [N, classes] probabilities. */
  run(x: tf.Tensor4D): tf.Tensor2D;
  dispose(): void;
}

/** label_image.py's defaults, for models that carry no metadata. */
const LABEL_IMAGE_DEFAULTS = { inputMean: 0, inputStd: 255, inputSize: 299 };

export async function loadClassifier(opts: LabelImageOptions): Promise<Classifier> {
  const jsonPath = modelJsonPathOf(opts.graph);
  if (!fs.existsSync(jsonPath)) {
    throw new UsageError(`--graph ${opts.graph} does not exist: give the folder (or model.json) that retrain wrote to --output_graph`);
  }
  const files = isFrozenGraph(jsonPath) ? readFrozenGraph(jsonPath) : readModelFiles(jsonPath);
  const meta = (files.json.userDefinedMetadata as { retrain?: RetrainMetadata } | undefined)?.retrain;
  const format = modelFormat(files.json);
  let run: (x: tf.Tensor4D) => tf.Tensor2D;
  let modelSize: [number | undefined, number | undefined];
  let dispose: () => void;
  try {
    if (format === 'layers-model') {
      const full = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
      let model = full;
      if (opts.outputLayer && opts.outputLayer !== full.layers[full.layers.length - 1]!.name) {
        model = tf.model({ inputs: full.inputs, outputs: layerOutput(full, opts.outputLayer) });
      }
      const s = full.inputs[0]!.shape;
      modelSize = [s[1] ?? undefined, s[2] ?? undefined];
      run = (x) => model.predict(x) as tf.Tensor2D;
      dispose = () => full.dispose();
    } else {
      const model = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
      const input = opts.inputLayer ?? meta?.inputName ?? model.inputs[0]!.name;
      const output = opts.outputLayer ?? meta?.outputName ?? model.outputs[0]!.name;
      const nodes = (files.json.modelTopology as { node: Array<{ name: string }> }).node;
      for (const [flag, name] of [['--input_layer', input], ['--output_layer', output]] as const) {
        if (!nodes.some((n) => n.name === name)) throw new UsageError(`${flag} ${name} is not a node of ${jsonPath}`);
      }
      const s = model.inputs.find((i) => i.name === input)?.shape ?? [];
      modelSize = [s[1] !== undefined && s[1] > 0 ? s[1] : undefined, s[2] !== undefined && s[2] > 0 ? s[2] : undefined];
      const missing = unsupportedOps(model, files.json.modelTopology as { node: [] }, output);
      if (missing.length > 0) {
        model.dispose();
        throw new RetrainError(`--graph ${jsonPath} uses TensorFlow ops that TF.js cannot run: ${missing.join(', ')}`);
      }
      run = (x) => model.execute({ [input]: x }, output) as tf.Tensor2D;
      dispose = () => model.dispose();
    }
  } catch (err) {
    if (err instanceof RetrainError) throw err;
    throw new RetrainError(`cannot load --graph ${jsonPath}: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
  }
  const height = opts.inputHeight ?? meta?.inputHeight ?? modelSize[0] ?? LABEL_IMAGE_DEFAULTS.inputSize;
  const width = opts.inputWidth ?? meta?.inputWidth ?? modelSize[1] ?? LABEL_IMAGE_DEFAULTS.inputSize;
  const spec: InputSpec = {
    height,
    width,
    mean: opts.inputMean ?? meta?.inputMean ?? LABEL_IMAGE_DEFAULTS.inputMean,
    std: opts.inputStd ?? meta?.inputStd ?? LABEL_IMAGE_DEFAULTS.inputStd,
  };
  if (!(spec.std !== 0 && Number.isFinite(spec.std))) throw new UsageError(`--input_std ${spec.std} must be a non-zero number`);
  // The stored labels name final_result's classes, not another --output_layer's values.
  const ownOutput = !opts.outputLayer || opts.outputLayer === meta?.outputName;
  const labels = opts.labels ? readLabels(opts.labels) : ownOutput ? meta?.labels : undefined;
  // Labels from another run over this model's weights would name every class wrongly, without a sign.
  if (opts.labels && ownOutput && meta?.labels && labels!.join('\n') !== meta.labels.join('\n')) {
    const few = (l: string[]) => (l.length > 4 ? `${l.slice(0, 4).join(', ')}, …` : l.join(', '));
    throw new RetrainError(`--labels ${opts.labels} (${few(labels!)}) differ from the labels stored in the model (${few(meta.labels)}): pass the labels written with this model, or leave --labels out to use the stored ones`);
  }
  return { labels, spec, metadata: meta, run, dispose };
}

function isFrozenGraph(file: string): boolean {
  return /\.pb(\.gz)?$/.test(file);
}

/** A frozen GraphDef (retrain.py's output_graph.pb, or this tool's) in the shape of a TF.js model folder. */
function readFrozenGraph(file: string): LoadedModelFiles {
  const artifacts = graphDefToArtifacts(readGraphFile(file), file);
  const json = { format: 'graph-model', modelTopology: artifacts.modelTopology, weightsManifest: [{ paths: [], weights: artifacts.weightSpecs! }] };
  return { dir: path.dirname(file), json: json as LoadedModelFiles['json'], jsonText: '', artifacts };
}

function layerOutput(model: tf.LayersModel, name: string): tf.SymbolicTensor {
  try {
    return model.getLayer(name).output as tf.SymbolicTensor;
  } catch {
    throw new UsageError(`--output_layer ${name} is not a layer of the model`);
  }
}

export interface LabelResult {
  image: string;
  /** Best first, at most top_k. */
  predictions: Array<{ index: number; label: string; score: number }>;
  /** All class scores, in class order. */
  scores: Float32Array;
}

/** Expands --image arguments: files as given, folders to the images inside them (recursively). */
export async function expandImageArgs(args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    const st = fs.statSync(a, { throwIfNoEntry: false });
    if (st?.isDirectory()) {
      const found = await listImagesDeep(a);
      if (found.length === 0) throw new UsageError(`--image ${a} is a folder with no images in it`);
      out.push(...found.map((f) => path.join(a, f)));
    } else {
      out.push(a);
    }
  }
  return out;
}

export async function classifyImage(c: Classifier, file: string, topK: number): Promise<LabelResult> {
  const img = await decodeImage(file);
  const input = toModuleInput(img, c.spec);
  let probs: tf.Tensor2D;
  try {
    probs = tf.tidy(() => c.run(tf.tensor4d(input, [1, c.spec.height, c.spec.width, 3])));
  } catch (err) {
    // Frozen graphs often leave their input size open, so label_image.py's 299 default may not fit.
    throw new RetrainError(
      `the model fails on a ${c.spec.height}x${c.spec.width} input (${errorMessage(err).split('\n')[0]}): check --input_height, --input_width, --input_layer and --output_layer`,
      1,
      { cause: err },
    );
  }
  const scores = (await probs.data()) as Float32Array;
  probs.dispose();
  if (c.labels && c.labels.length !== scores.length) {
    throw new RetrainError(`the labels list has ${c.labels.length} entries but the model gives ${scores.length} scores: pass the matching --labels`);
  }
  const order = Array.from(scores.keys()).sort((a, b) => scores[b]! - scores[a]! || a - b);
  return {
    image: file,
    predictions: order.slice(0, Math.max(1, topK)).map((i) => ({ index: i, label: c.labels?.[i] ?? String(i), score: scores[i]! })),
    scores,
  };
}

export { ImageError };
