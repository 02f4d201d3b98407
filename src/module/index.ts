/**
 * The `module` stage: resolve --tfhub_module to local files, load it, and expose it
 * as a FeatureExtractor (image batch in, bottleneck batch out). Everything else in
 * the pipeline sees only this interface, so another engine replaces this file alone.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { RetrainError, UsageError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { MAX_INPUT_SIDE, normalisedSpan, rangeToMeanStd, type Channels, type InputSpec } from '../image/index.js';
import { activeBackend, wantsOnnxRuntime, type BackendChoice } from '../backend.js';
import { locateModelJson, modelFormat, readModelFiles, type LoadedModelFiles } from './io.js';
import { downloadModule, isModuleUrl } from './download.js';
import { flattenTopology } from './flatten.js';
import { declaredVectorSize, layersForward, type FusedMode } from './fused.js';
import { BUILTIN_MODULE, resolveNamedModule } from './catalog.js';
import { onnxForward, type OnnxForward, type OnnxForwardOptions } from './onnx_forward.js';
import type { Layout, OnnxSignature } from './onnx/signature.js';
import { isOnnxModulePath, onnxModuleForward, onnxModuleId, onnxNormalisation, readOnnxModule } from './onnx_module.js';

/** Shipped in the package: a run without --tfhub_module needs no network. */
export const DEFAULT_MODULE = BUILTIN_MODULE;

export type ModuleFormat = 'graph-model' | 'layers-model' | 'saved-model' | 'onnx';

/** What identifies a module and how to feed it; recorded in bottleneck headers and exports. */
export interface ModuleInfo {
  /** --tfhub_module as given. */
  spec: string;
  /** Short readable name used in cache file names. */
  name: string;
  /** sha256 (hex) of the model files and the options that change its output. */
  id: string;
  format: ModuleFormat;
  /** The model.json (or SavedModel folder) that was loaded. */
  path: string;
  inputHeight: number;
  inputWidth: number;
  /** Values the module expects: pixel 0 maps to range[0], 255 to range[1] (.onnx modules: the span over channels). */
  inputRange: [number, number];
  /** .onnx modules: how images are laid out, and the per-channel `(pixel - mean) / std`. */
  inputLayout?: Layout;
  inputMean?: Channels;
  inputStd?: Channels;
  /** Layer (layers model) or node (graph model) that gives the bottleneck. */
  bottleneckTensor: string;
  bottleneckSize: number;
}

/** What every engine gives: image batch in, bottleneck batch out. */
interface ExtractorBase {
  info: ModuleInfo;
  inputSpec: InputSpec;
  /** [N, H, W, 3] in the module's range → [N, bottleneckSize]. */
  extract(batch: tf.Tensor4D): tf.Tensor2D;
  /** The forward pass on ONNX Runtime, when --backend allows it (TF.js modules only). */
  onnx?: OnnxForward;
  dispose(): void;
}

/** A TF.js layers model: exportable as layers, and fine-tunable. */
export interface LayersExtractor extends ExtractorBase {
  kind: 'layers';
  files: LoadedModelFiles;
  /** The model cut at the bottleneck layer, nested models flattened. */
  model: tf.LayersModel;
  /** Whether inference runs with fused conv+bias+ReLU kernels. */
  readonly fused: boolean;
  /** Checks the fused kernels against the plain model now; returns `fused`. */
  verifyFused(): boolean;
}

/** A TF.js graph model: exportable as a graph, a frozen .pb or a SavedModel. */
export interface GraphExtractor extends ExtractorBase {
  kind: 'graph';
  files: LoadedModelFiles;
  /** The bottleneck's rank: 2, or 4 for [N,1,1,D]. */
  bottleneckRank: number;
}

/** A TensorFlow SavedModel run by native TensorFlow: bottlenecks only. */
export interface SavedModelExtractor extends ExtractorBase {
  kind: 'saved-model';
}

/** An ONNX feature extractor (`--tfhub_module x.onnx`): always on ONNX Runtime; exportable as .onnx, and as .tflite and fine-tunable through src/graph/from_onnx.ts. */
export interface OnnxExtractor extends ExtractorBase {
  kind: 'onnx';
  /** The module file: the .onnx export appends the head to it. */
  bytes: Uint8Array;
  signature: OnnxSignature;
  onnx: OnnxForward;
}

/** The loaded module; export and fine-tuning choose by `kind`. */
export type FeatureExtractor = LayersExtractor | GraphExtractor | SavedModelExtractor | OnnxExtractor;

export interface ModuleOptions {
  spec: string;
  cacheDir: string;
  bottleneckLayer?: string;
  /** --input_range: overrides the model's metadata and the format default. */
  inputRange?: [number, number];
  /** --input_mean/--input_std (one value, or three per channel for .onnx modules). */
  inputMean?: number[];
  inputStd?: number[];
  inputHeight?: number;
  inputWidth?: number;
  timeoutMs?: number;
  /** Stops a download on Ctrl-C. */
  signal?: AbortSignal;
  /** Layers modules: false keeps tfjs' own layer-by-layer predict; 'trusted' skips the fused check. */
  fused?: FusedMode;
  /** Set: bottlenecks may run on ONNX Runtime (converted, cached here, probed against tfjs). */
  onnx?: OnnxForwardOptions;
  log: Logger;
}

/** retrain.py names bottleneck files after the module spec with separators replaced. */
function moduleName(spec: string, resolvedPath: string, id: string): string {
  const base = isModuleUrl(spec)
    ? spec.replace('://', '~').replace(/[/:\\]/g, '~').replace(/~+$/, '')
    : path.basename(path.resolve(resolvedPath.endsWith('model.json') ? path.dirname(resolvedPath) : resolvedPath)).replace(/[^A-Za-z0-9._-]+/g, '_');
  // The id's first characters keep two modules of the same name apart.
  return `${base}-${id.slice(0, 8)}`;
}

async function resolveSpec(opts: ModuleOptions): Promise<string> {
  if (isModuleUrl(opts.spec)) return downloadModule(opts.spec, { cacheDir: opts.cacheDir, timeoutMs: opts.timeoutMs, signal: opts.signal, log: opts.log });
  const p = path.resolve(opts.spec);
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (st?.isDirectory() && !fs.existsSync(path.join(p, 'model.json'))) {
    if (fs.statSync(path.join(p, 'saved_model.pb'), { throwIfNoEntry: false })?.isFile()) return p;
    if (path.basename(p) !== 'model.json') throw new UsageError(`--tfhub_module ${opts.spec} has no model.json or saved_model.pb: is it a model folder?`);
  }
  return locateModelJson(p, '--tfhub_module', 'give a TF Hub or Kaggle URL, or a local TF.js model folder or model.json');
}

function layersInputSize(model: tf.LayersModel): [number | null, number | null] {
  const shape = model.inputs[0]!.shape;
  return [shape[1] ?? null, shape[2] ?? null];
}

function graphInputSize(model: tf.GraphModel): [number | null, number | null] {
  const shape = model.inputs[0]?.shape ?? [];
  const dim = (d: number | undefined) => (d === undefined || d < 0 ? null : d);
  return [dim(shape[1]), dim(shape[2])];
}

function pickSize(fromModel: [number | null, number | null], opts: ModuleOptions, where: string): [number, number] {
  const h = opts.inputHeight ?? fromModel[0];
  const w = opts.inputWidth ?? fromModel[1];
  if (!h || !w) {
    throw new UsageError(`module ${where} has a dynamic input size: give --input_height and --input_width (e.g. 224)`);
  }
  if (fromModel[0] && fromModel[1] && (h !== fromModel[0] || w !== fromModel[1])) {
    throw new UsageError(
      `--input_height/--input_width ${h}x${w} differ from the module's fixed input ${fromModel[0]}x${fromModel[1]}: drop the flags`,
    );
  }
  if (h > MAX_INPUT_SIDE || w > MAX_INPUT_SIDE) {
    throw new RetrainError(`module ${where} takes ${h}x${w} images, beyond any image model (at most ${MAX_INPUT_SIDE} a side): is its model.json corrupt?`);
  }
  return [h, w];
}

/** The metadata our own exports carry, so a retrained model can be a module again. */
function metadataRange(files: LoadedModelFiles): [number, number] | undefined {
  const meta = files.json.userDefinedMetadata as { retrain?: { inputRange?: unknown } } | undefined;
  const r = meta?.retrain?.inputRange;
  return Array.isArray(r) && r.length === 2 && r.every((v) => typeof v === 'number') ? [r[0], r[1]] : undefined;
}

function defaultBottleneckLayer(model: tf.LayersModel): string {
  const pools = model.layers.filter((l) => /^Global(Average|Max)Pooling2D$/.test(l.getClassName()));
  const last = pools[pools.length - 1];
  if (last) return last.name;
  const out = model.outputs[0]!;
  if (out.shape.length === 2) return model.layers[model.layers.length - 1]!.name;
  throw new UsageError(
    `the module has no global pooling layer and its output is ${out.shape.length}-D: name the feature layer with --bottleneck_layer`,
  );
}

function hashModule(files: LoadedModelFiles, extra: unknown): string {
  const h = createHash('sha256');
  h.update(files.jsonText);
  h.update(new Uint8Array(files.artifacts.weightData as ArrayBuffer));
  h.update(JSON.stringify(extra));
  return h.digest('hex');
}

/** Runs one zero image through, to learn the bottleneck's shape before any real work. */
function probe(run: (x: tf.Tensor4D) => tf.Tensor, h: number, w: number): number[] {
  return tf.tidy(() => run(tf.zeros([1, h, w, 3]) as tf.Tensor4D).shape);
}

function toVectorBatch(t: tf.Tensor, where: string): tf.Tensor2D {
  if (t.rank === 2) return t as tf.Tensor2D;
  if (t.rank === 4 && t.shape[1] === 1 && t.shape[2] === 1) return t.reshape([t.shape[0]!, t.shape[3]!]);
  throw new RetrainError(`${where} gives shape [${t.shape.join(',')}], not a feature vector: pick another with --bottleneck_layer`);
}

/** TF.js modules take one range: --input_mean/--input_std become it; per-channel values need an .onnx module. */
function meanStdAsRange(opts: ModuleOptions): ModuleOptions {
  const { inputMean: mean, inputStd: std } = opts;
  if (!mean || !std) return opts;
  const same = (v: number[]) => v.every((x) => x === v[0]);
  if (!same(mean) || !same(std)) {
    throw new UsageError(`--input_mean/--input_std with per-channel values work for .onnx modules only, and ${opts.spec} is a TF.js module: give one value each, or --input_range`);
  }
  return { ...opts, inputRange: normalisedSpan(mean[0]!, std[0]!) };
}

export async function loadFeatureExtractor(opts: ModuleOptions): Promise<FeatureExtractor> {
  if (!isModuleUrl(opts.spec) && isOnnxModulePath(opts.spec)) return loadOnnxModule(opts);
  opts = resolveNamedModule(meanStdAsRange(opts));
  const resolved = await resolveSpec(opts);
  if (fs.statSync(resolved).isDirectory()) return loadSavedModel(resolved, opts);

  const files = readModelFiles(resolved);
  const format = modelFormat(files.json);
  const where = opts.spec;
  const loadErr = (err: unknown): never => {
    const msg = errorMessage(err);
    const op = /(?:op|Op)[^']*'([^']+)'|Unknown layer: (\S+?)\.?(?:\s|$)|class name: (\S+)/.exec(msg);
    const what = op ? ` (unsupported op or layer: ${op[1] ?? op[2] ?? op[3]})` : '';
    throw new RetrainError(`cannot load module ${where} as a TF.js ${format}${what}: ${msg.split('\n')[0]}`, 1, { cause: err });
  };

  if (format === 'layers-model') {
    let model: tf.LayersModel;
    try {
      const flat = flattenTopology(files.artifacts.modelTopology);
      model = await tf.loadLayersModel(tf.io.fromMemory(flat ? { ...files.artifacts, modelTopology: flat } : files.artifacts));
    } catch (err) {
      return loadErr(err);
    }
    const layerName = opts.bottleneckLayer ?? defaultBottleneckLayer(model);
    let layer: tf.layers.Layer;
    try {
      layer = model.getLayer(layerName);
    } catch {
      throw new UsageError(`--bottleneck_layer ${layerName} is not a layer of module ${where}`);
    }
    const cut = layer === model.layers[model.layers.length - 1] ? model : tf.model({ inputs: model.inputs, outputs: layer.output as tf.SymbolicTensor });
    const [h, w] = pickSize(layersInputSize(cut), opts, where);
    const range = opts.inputRange ?? metadataRange(files) ?? [-1, 1];
    const lf = layersForward(cut, layerName, h, w, opts.fused ?? true);
    const run = (x: tf.Tensor4D) => toVectorBatch(lf.forward(x), `layer ${layerName}`);
    // The declared shape spares a cached run its first (slow, kernel-compiling) inference.
    const size = declaredVectorSize(cut, layerName) ?? probe(run, h, w)[1]!;
    const info = makeInfo(opts, resolved, files, format, h, w, range, layerName, size);
    const onnx = opts.onnx && onnxForward(info, files, run, opts.onnx, opts.log);
    return {
      kind: 'layers',
      info,
      inputSpec: { height: h, width: w, ...rangeToMeanStd(range) },
      extract: (x) => tf.tidy(() => run(x)),
      onnx,
      dispose: () => {
        onnx?.dispose();
        model.dispose();
      },
      files,
      model: cut,
      get fused() {
        return lf.fused;
      },
      verifyFused: () => lf.verify(),
    };
  }

  let model: tf.GraphModel;
  try {
    model = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
  } catch (err) {
    return loadErr(err);
  }
  const node = opts.bottleneckLayer ?? model.outputs[0]?.name ?? model.outputNodes[0]!;
  if (!(files.json.modelTopology as { node: Array<{ name: string }> }).node.some((n) => n.name === node)) {
    throw new UsageError(`--bottleneck_layer ${node} is not a node of module ${where}`);
  }
  const [h, w] = pickSize(graphInputSize(model), opts, where);
  const range = opts.inputRange ?? metadataRange(files) ?? [0, 1];
  let rank = 2;
  const run = (x: tf.Tensor4D) => {
    const t = model.execute(x, node) as tf.Tensor;
    rank = t.rank;
    return toVectorBatch(t, `node ${node}`);
  };
  let shape: number[];
  try {
    shape = probe(run, h, w);
  } catch (err) {
    return loadErr(err);
  }
  const info = makeInfo(opts, resolved, files, format, h, w, range, node, shape[1]!);
  const onnx = opts.onnx && onnxForward(info, files, run, opts.onnx, opts.log);
  return {
    kind: 'graph',
    info,
    inputSpec: { height: h, width: w, ...rangeToMeanStd(range) },
    extract: (x) => tf.tidy(() => run(x)),
    onnx,
    dispose: () => {
      onnx?.dispose();
      model.dispose();
    },
    files,
    bottleneckRank: rank,
  };
}

function makeInfo(
  opts: ModuleOptions,
  resolved: string,
  files: LoadedModelFiles,
  format: ModuleFormat,
  h: number,
  w: number,
  range: [number, number],
  bottleneckTensor: string,
  size: number,
): ModuleInfo {
  const id = hashModule(files, { bottleneckTensor, range, h, w });
  return {
    spec: opts.spec,
    name: moduleName(opts.spec, resolved, id),
    id,
    format,
    path: resolved,
    inputHeight: h,
    inputWidth: w,
    inputRange: range,
    bottleneckTensor,
    bottleneckSize: size,
  };
}

async function loadOnnxModule(opts: ModuleOptions): Promise<OnnxExtractor> {
  const { file, bytes, signature: sig } = await readOnnxModule(opts.spec);
  if (opts.bottleneckLayer && opts.bottleneckLayer !== sig.outputName) {
    throw new UsageError(`--bottleneck_layer ${opts.bottleneckLayer}: an .onnx module gives its one output (${sig.outputName}); drop the flag`);
  }
  const [h, w] = pickSize([sig.height, sig.width], opts, opts.spec);
  const norm = onnxNormalisation(opts, opts.log);
  const id = onnxModuleId(bytes, { layout: sig.layout, h, w, mean: norm.mean, std: norm.std, output: sig.outputName });
  const onnx = onnxModuleForward(opts.spec, bytes, sig, opts.onnx?.threads, opts.log);
  return {
    kind: 'onnx',
    info: {
      spec: opts.spec,
      name: moduleName(opts.spec, file, id),
      id,
      format: 'onnx',
      path: file,
      inputHeight: h,
      inputWidth: w,
      inputRange: normalisedSpan(norm.mean, norm.std),
      inputLayout: sig.layout,
      inputMean: norm.mean,
      inputStd: norm.std,
      bottleneckTensor: sig.outputName,
      bottleneckSize: sig.bottleneckSize,
    },
    inputSpec: { height: h, width: w, mean: norm.mean, std: norm.std },
    extract: () => {
      throw new RetrainError(`--tfhub_module ${opts.spec} is an ONNX model: it runs on onnxruntime only`);
    },
    onnx,
    dispose: () => onnx.dispose(),
    bytes,
    signature: sig,
  };
}

/** TF2 SavedModels need native TensorFlow; tfjs alone cannot execute them. */
async function loadSavedModel(dir: string, opts: ModuleOptions): Promise<FeatureExtractor> {
  const backend = activeBackend();
  if (backend?.name !== 'tensorflow') {
    throw new RetrainError(
      `--tfhub_module ${opts.spec} is a TensorFlow SavedModel, which needs native TensorFlow (@tensorflow/tfjs-node, --backend tensorflow); ` +
        `otherwise use the module's TF.js version (a tfjs-model URL) or convert it with tensorflowjs_converter`,
    );
  }
  const tfn = (await import(backend.package)) as { node: { loadSavedModel(d: string): Promise<tf.InferenceModel> } };
  const model = await tfn.node.loadSavedModel(dir);
  const [h, w] = pickSize([null, null], opts, opts.spec);
  const range = opts.inputRange ?? [0, 1];
  const run = (x: tf.Tensor4D) => toVectorBatch(model.predict(x, {}) as tf.Tensor, 'the SavedModel output');
  const shape = probe(run, h, w);
  const id = createHash('sha256').update(fs.readFileSync(path.join(dir, 'saved_model.pb'))).update(JSON.stringify({ range, h, w })).digest('hex');
  return {
    kind: 'saved-model',
    info: {
      spec: opts.spec,
      name: moduleName(opts.spec, dir, id),
      id,
      format: 'saved-model',
      path: dir,
      inputHeight: h,
      inputWidth: w,
      inputRange: range,
      bottleneckTensor: 'serving_default',
      bottleneckSize: shape[1]!,
    },
    inputSpec: { height: h, width: w, ...rangeToMeanStd(range) },
    extract: (x) => tf.tidy(() => run(x)),
    dispose: () => {},
  };
}

/** The module as the run summary records it. */
export interface ModuleSection {
  spec: string;
  name: string;
  id: string;
  format: string;
  path: string;
  input_size: [number, number];
  input_range: [number, number];
  bottleneck_tensor: string;
  bottleneck_size: number;
  /** .onnx modules: layout and per-channel normalisation. */
  input_layout?: Layout;
  input_mean?: number[];
  input_std?: number[];
}

export function moduleSection(info: ModuleInfo): ModuleSection {
  return {
    spec: info.spec,
    name: info.name,
    id: info.id,
    format: info.format,
    path: info.path,
    input_size: [info.inputHeight, info.inputWidth],
    input_range: info.inputRange,
    bottleneck_tensor: info.bottleneckTensor,
    bottleneck_size: info.bottleneckSize,
    ...(info.inputLayout && { input_layout: info.inputLayout, input_mean: [...info.inputMean!], input_std: [...info.inputStd!] }),
  };
}

/** What the module step reads of the run's options (the flags of the same names; the input ones pass through as given). */
export interface LoadModuleOptions extends Pick<ModuleOptions, 'bottleneckLayer' | 'inputRange' | 'inputMean' | 'inputStd' | 'inputHeight' | 'inputWidth'> {
  tfhubModule: string;
  /** auto and onnxruntime let the module's forward pass run on ONNX Runtime. */
  backend: BackendChoice;
  /** Also ONNX Runtime's intra-op threads (default: one per core). */
  numWorkers?: number;
  moduleCacheDir: string;
  signal?: AbortSignal;
}

/**
 * Step "load the module": resolves --tfhub_module (downloading a URL into the cache
 * once), loads it and logs how it will be fed and what it gives.
 */
export async function loadModule(o: LoadModuleOptions, log: Logger): Promise<FeatureExtractor> {
  const onnxModule = !isModuleUrl(o.tfhubModule) && isOnnxModulePath(o.tfhubModule);
  if (onnxModule && !wantsOnnxRuntime(o.backend)) log.info(`--backend ${o.backend}: the .onnx module ${o.tfhubModule} runs on onnxruntime; ${o.backend} trains the head`);
  const extractor = await loadFeatureExtractor({
    spec: o.tfhubModule,
    cacheDir: o.moduleCacheDir,
    bottleneckLayer: o.bottleneckLayer,
    inputRange: o.inputRange,
    inputMean: o.inputMean,
    inputStd: o.inputStd,
    inputHeight: o.inputHeight,
    inputWidth: o.inputWidth,
    signal: o.signal,
    onnx: wantsOnnxRuntime(o.backend) || onnxModule ? { cacheDir: path.join(o.moduleCacheDir, 'onnx'), threads: o.numWorkers || undefined } : undefined,
    log,
  });
  const { info } = extractor;
  if (o.backend === 'onnxruntime' && !extractor.onnx) log.warn(`Module forward pass on tfjs, not onnxruntime: ${info.spec} is a ${info.format}, which the ONNX converter does not read`);
  const fed = info.inputLayout
    ? `${info.inputLayout} input ${info.inputHeight}x${info.inputWidth}, (pixel - [${info.inputMean!.join(', ')}]) / [${info.inputStd!.join(', ')}]`
    : `input ${info.inputHeight}x${info.inputWidth} in [${info.inputRange.join(', ')}]`;
  log.info(
    `Module ${info.spec}: ${info.format}, ${fed}, ` +
      `bottleneck ${info.bottleneckTensor} (${info.bottleneckSize} values)`,
  );
  return extractor;
}
