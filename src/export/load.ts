/**
 * Reading back what the export stage wrote (or any TF.js classifier, or a frozen
 * TensorFlow graph) as a classifier: label-image and the export check both use it,
 * so an image gets the same scores in both.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { RetrainError, UsageError, errorMessage } from '../errors.js';
import { normalisedSpan, type Channels, type InputSpec } from '../image/index.js';
import type { Logger } from '../log.js';
import { locateModelJson, modelFormat, readModelFiles, weightBytes, type LoadedModelFiles } from '../module/io.js';
import type { InputSignature, OnnxSession } from '../module/onnx/index.js';
import { onnxForward, type OnnxForward } from '../module/onnx_forward.js';
import { readLabels, type RetrainMetadata } from './metadata.js';
import { isOnnxPath, readOnnxMetadata } from './onnx.js';
import { isTflitePath } from './tflite.js';
import { graphDefToArtifacts, readGraphFile, unsupportedOps } from './tfgraph.js';

/** Where the model is and how to feed it: label_image.py's flags; unset ones come from the model. */
export interface ClassifierOptions {
  graph: string;
  labels?: string;
  inputLayer?: string;
  outputLayer?: string;
  inputHeight?: number;
  inputWidth?: number;
  /** --input_mean/--input_std: one value, or three per channel (R,G,B). */
  inputMean?: number | number[];
  inputStd?: number | number[];
  /** ONNX Runtime intra-op threads for .onnx/.tflite classifiers (default: one per core). */
  threads?: number;
  /** Set: the classifier may run on ONNX Runtime (converted, cached in `cacheDir`, probed against tfjs). */
  onnx?: { cacheDir: string; log: Logger };
}

export interface Classifier {
  labels: string[] | undefined;
  spec: InputSpec;
  metadata: RetrainMetadata | undefined;
  /** [N,H,W,3] normalised input → [N, classes] probabilities. */
  run(x: tf.Tensor4D): tf.Tensor2D;
  /** The same forward pass on ONNX Runtime, when allowed. */
  onnx?: OnnxForward;
  dispose(): void;
}

/** label_image.py's defaults, for models that carry no metadata. */
const LABEL_IMAGE_DEFAULTS = { inputMean: 0, inputStd: 255, inputSize: 299 };

/** One value, or three per channel, as a flag or the metadata gives it; anything else is `where`'s fault. */
function channelValue(v: number | number[] | undefined, where: string): number | Channels | undefined {
  if (v === undefined || typeof v === 'number') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) {
    if (v.length === 1) return v[0]!;
    if (v.length === 3) return [v[0]!, v[1]!, v[2]!];
  }
  throw new RetrainError(`${where} ${JSON.stringify(v)} is not one number or three (R,G,B)`);
}

/** How the images are fed: flags first, then the model's metadata, then label_image.py's defaults. */
function feedSpec(opts: ClassifierOptions, meta: RetrainMetadata | undefined, modelSize: [number | undefined, number | undefined]): InputSpec {
  const spec: InputSpec = {
    height: opts.inputHeight ?? meta?.inputHeight ?? modelSize[0] ?? LABEL_IMAGE_DEFAULTS.inputSize,
    width: opts.inputWidth ?? meta?.inputWidth ?? modelSize[1] ?? LABEL_IMAGE_DEFAULTS.inputSize,
    mean: channelValue(opts.inputMean, '--input_mean') ?? channelValue(meta?.inputMean, `--graph ${opts.graph}: its stored inputMean`) ?? LABEL_IMAGE_DEFAULTS.inputMean,
    std: channelValue(opts.inputStd, '--input_std') ?? channelValue(meta?.inputStd, `--graph ${opts.graph}: its stored inputStd`) ?? LABEL_IMAGE_DEFAULTS.inputStd,
  };
  const stds = typeof spec.std === 'number' ? [spec.std] : spec.std;
  if (!stds.every((s) => s !== 0 && Number.isFinite(s))) throw new UsageError(`--input_std ${stds.join(',')} must be non-zero numbers`);
  return spec;
}

export async function loadClassifier(opts: ClassifierOptions): Promise<Classifier> {
  if (isOnnxPath(opts.graph)) return loadOnnxClassifier(opts);
  if (isTflitePath(opts.graph)) return loadTfliteClassifier(opts);
  const jsonPath = locateModelJson(opts.graph, '--graph', 'give the folder (or model.json) that retrain wrote to --output_graph');
  const files = isFrozenGraph(jsonPath) ? readFrozenGraph(jsonPath) : readModelFiles(jsonPath);
  const meta = (files.json.userDefinedMetadata as { retrain?: RetrainMetadata } | undefined)?.retrain;
  const format = modelFormat(files.json);
  let run: (x: tf.Tensor4D) => tf.Tensor2D;
  let modelSize: [number | undefined, number | undefined];
  let dispose: () => void;
  let outputName: string;
  try {
    if (format === 'layers-model') {
      const full = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
      let model = full;
      if (opts.outputLayer && opts.outputLayer !== full.layers[full.layers.length - 1]!.name) {
        model = tf.model({ inputs: full.inputs, outputs: layerOutput(full, opts.outputLayer) });
      }
      outputName = opts.outputLayer ?? full.layers[full.layers.length - 1]!.name;
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
      outputName = output;
      dispose = () => model.dispose();
    }
  } catch (err) {
    if (err instanceof RetrainError) throw err;
    throw new RetrainError(`cannot load --graph ${jsonPath}: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
  }
  const spec = feedSpec(opts, meta, modelSize);
  // The stored labels name final_result's classes, not another --output_layer's values.
  const ownOutput = !opts.outputLayer || opts.outputLayer === meta?.outputName;
  const labels = opts.labels ? readLabels(opts.labels) : ownOutput ? meta?.labels : undefined;
  // Labels from another run over this model's weights would name every class wrongly, without a sign.
  if (opts.labels && ownOutput && meta?.labels && labels!.join('\n') !== meta.labels.join('\n')) {
    const few = (l: string[]) => (l.length > 4 ? `${l.slice(0, 4).join(', ')}, …` : l.join(', '));
    throw new RetrainError(`--labels ${opts.labels} (${few(labels!)}) differ from the labels stored in the model (${few(meta.labels)}): pass the labels written with this model, or leave --labels out to use the stored ones`);
  }
  const onnx = opts.onnx && classifierOnnx(files, outputName, spec, run, opts.onnx);
  return {
    labels,
    spec,
    metadata: meta,
    run,
    onnx,
    dispose: () => {
      onnx?.dispose();
      dispose();
    },
  };
}

/** An exported `.onnx` (module + head, final_result): it runs on ONNX Runtime, whatever --backend says. */
async function loadOnnxClassifier(opts: ClassifierOptions): Promise<Classifier> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(fs.readFileSync(opts.graph));
  } catch (err) {
    throw new UsageError(`--graph ${opts.graph}: cannot read it (${errorMessage(err)}): give the .onnx file retrain wrote to --output_graph`);
  }
  let meta: RetrainMetadata | undefined;
  try {
    meta = (await readOnnxMetadata(opts.graph, bytes)) as RetrainMetadata | undefined;
  } catch (err) {
    if (err instanceof RetrainError) throw err;
    throw new RetrainError(`--graph ${opts.graph} is not an ONNX model: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
  }
  // The layout the metadata states, else the one the input's shape shows (any .onnx classifier).
  const { decodeModel, readInputSignature } = await import('../module/onnx/index.js');
  let input: InputSignature | undefined;
  try {
    input = readInputSignature(decodeModel(bytes));
  } catch {
    input = undefined;
  }
  const layout = meta?.inputLayout ?? input?.layout ?? 'NHWC';
  const spec = feedSpec(opts, meta, [input?.height ?? undefined, input?.width ?? undefined]);
  const { createOnnxSession } = await import('../module/onnx/session.js');
  let session: OnnxSession;
  try {
    session = await createOnnxSession(bytes, { layout, inputName: meta?.inputName ?? input?.inputName, batch: input?.batch });
  } catch (err) {
    throw new RetrainError(`ONNX Runtime cannot load --graph ${opts.graph}: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
  }
  opts.onnx?.log.info(`Classifier on onnxruntime (${session.threads} thread${session.threads === 1 ? '' : 's'}): ${opts.graph}`);
  const labels = opts.labels ? readLabels(opts.labels) : meta?.labels;
  return {
    labels,
    spec,
    metadata: meta,
    run: () => {
      throw new RetrainError(`--graph ${opts.graph} is an ONNX model: it runs on onnxruntime only`);
    },
    onnx: { session: async () => session, dispose: () => void session.dispose().catch(() => {}) },
    dispose: () => void session.dispose().catch(() => {}),
  };
}

/**
 * A `.tflite` classifier: read into the shared Graph (quantized tensors as fake-quant
 * nodes), written as ONNX and run on ONNX Runtime; labels and normalisation come from
 * its TFLite metadata (flags first).
 */
async function loadTfliteClassifier(opts: ClassifierOptions): Promise<Classifier> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(fs.readFileSync(opts.graph));
  } catch (err) {
    throw new UsageError(`--graph ${opts.graph}: cannot read it (${errorMessage(err)}): give the .tflite file retrain wrote to --output_graph`);
  }
  const { readTfliteMetadata } = await import('./tflite/metadata.js');
  const { fromTflite } = await import('../graph/from_tflite.js');
  const { toOnnx } = await import('../graph/to_onnx.js');
  const { encodeModel } = await import('../module/onnx/builder.js');
  let onnxBytes: Uint8Array;
  let tfl: Awaited<ReturnType<typeof readTfliteMetadata>> | undefined;
  try {
    // A model without metadata still runs when --labels and the normalisation flags are given.
    tfl = await readTfliteMetadata(bytes, `--graph ${opts.graph}`).catch((err: unknown) => {
      if (opts.labels && opts.inputMean !== undefined && opts.inputStd !== undefined) return undefined;
      throw err;
    });
    onnxBytes = encodeModel(toOnnx(fromTflite(bytes), { outputName: 'final_result' }));
  } catch (err) {
    if (err instanceof RetrainError) throw err;
    throw new RetrainError(`cannot read --graph ${opts.graph} as a TFLite classifier: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
  }
  const meta = tfl && {
    inputHeight: tfl.inputHeight,
    inputWidth: tfl.inputWidth,
    inputMean: tfl.mean.length === 1 ? tfl.mean[0]! : tfl.mean,
    inputStd: tfl.std.length === 1 ? tfl.std[0]! : tfl.std,
  };
  const spec = feedSpec(opts, meta as RetrainMetadata | undefined, [tfl?.inputHeight, tfl?.inputWidth]);
  const { createOnnxSession } = await import('../module/onnx/session.js');
  let session: OnnxSession;
  try {
    session = await createOnnxSession(onnxBytes, { threads: opts.threads });
  } catch (err) {
    throw new RetrainError(`ONNX Runtime cannot run --graph ${opts.graph} once converted: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
  }
  opts.onnx?.log.info(`Classifier on onnxruntime (${session.threads} thread${session.threads === 1 ? '' : 's'}): ${opts.graph}`);
  return {
    labels: opts.labels ? readLabels(opts.labels) : tfl?.labels,
    spec,
    metadata: undefined,
    run: () => {
      throw new RetrainError(`--graph ${opts.graph} is a TFLite model: it runs on onnxruntime only`);
    },
    onnx: { session: async () => session, dispose: () => void session.dispose().catch(() => {}) },
    dispose: () => void session.dispose().catch(() => {}),
  };
}

/** The classifier on ONNX Runtime, keyed by its files and how it is fed. */
function classifierOnnx(files: LoadedModelFiles, output: string, spec: InputSpec, run: (x: tf.Tensor4D) => tf.Tensor2D, o: { cacheDir: string; log: Logger }): OnnxForward {
  const { height, width } = spec;
  const id = createHash('sha256')
    .update(files.jsonText)
    .update(weightBytes(files.artifacts))
    .update(JSON.stringify({ output, height, width }))
    .digest('hex');
  // The probe's inputs only need to lie where real ones do.
  const range = normalisedSpan(spec.mean, spec.std);
  const ref = { id, bottleneckTensor: output, inputHeight: height, inputWidth: width, inputRange: range };
  return onnxForward(ref, files, run, { cacheDir: o.cacheDir }, o.log, 'Classifier');
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

