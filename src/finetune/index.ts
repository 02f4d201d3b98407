/**
 * --fine_tune_layers: after the head is trained on bottlenecks, unfreeze the top
 * layers of a layers-model module and train them with the head, end to end on
 * images, at a low learning rate (the Keras transfer-learning tutorial's second stage).
 *
 * The frozen bottom runs outside the gradient tape and only the unfrozen top is
 * recorded, so memory and time for the backward pass scale with the top alone.
 * Layers always run with training=false: batch normalization keeps its moving
 * statistics (inference mode), as the tutorial requires.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor, LayersExtractor } from '../module/index.js';
import type { LabeledSet } from '../bottleneck/sets.js';
import { MAX_CROSS_ENTROPY, divergence, makeRng, type Head } from '../train/index.js';
import { classWeights, headLoss, makeOptimizer, type ClassWeighting, type OptimizerName } from '../train/options.js';
import type { ImageBatchSource } from '../image/batches.js';
import { throwIfInterrupted, yieldToEventLoop } from '../util/abort.js';

export interface FineTuneOptions {
  /** Layers with weights, counted down from the bottleneck. */
  layers: number;
  steps: number;
  learningRate: number;
  batchSize: number;
  evalStepInterval: number;
  seed: number;
  optimizer: OptimizerName;
  labelSmoothing?: number;
  classWeighting?: ClassWeighting;
  /** Training images for each step. */
  batches: ImageBatchSource;
  /** Checked at every step (Ctrl-C): fine-tuning stops with an InterruptedError. */
  signal?: AbortSignal;
  log: Logger;
}

export interface FineTuneResult {
  layers: string[];
  /** Trainable values unfrozen in the module. */
  parameters: number;
  history: Array<{ step: number; crossEntropy: number }>;
}

type Sym = tf.SymbolicTensor;

/** The module split at the first unfrozen layer: the frozen part's outputs feed the trainable top. */
interface Split {
  model: tf.LayersModel;
  top: tf.layers.Layer[];
  region: tf.layers.Layer[];
  frontier: Sym[];
  variables: tf.Variable[];
}

/** The module's layers with weights, the ones --fine_tune_layers counts; refuses what cannot be fine-tuned. */
export function fineTunableLayers(ex: FeatureExtractor, n: number): tf.layers.Layer[] {
  if (ex.kind !== 'layers') {
    throw new UsageError(
      `--fine_tune_layers works with layers-model modules only; ${ex.info.spec} is a ${ex.info.format}: ` +
        'use a layers-model version of the module (e.g. tfjs-models MobileNet) or drop --fine_tune_layers',
    );
  }
  // Nested models are flattened when the module loads (module/flatten.ts), so inner layers count.
  const weighted = ex.model.layers.filter((l) => l.weights.length > 0);
  if (n > weighted.length) throw new UsageError(`--fine_tune_layers ${n} is more than the ${weighted.length} layers with weights in module ${ex.info.spec}`);
  return weighted;
}

export function splitModule(ex: FeatureExtractor, n: number): Split {
  const weighted = fineTunableLayers(ex, n);
  const model = (ex as LayersExtractor).model;
  const top = weighted.slice(-n);
  const region = model.layers.slice(model.layers.indexOf(top[0]!)).filter((l) => l.getClassName() !== 'InputLayer');
  const produced = new Set<number>(region.map((l) => (l.output as Sym).id));
  const frontier: Sym[] = [];
  for (const l of region) {
    if (l.inboundNodes.length !== 1) throw new UsageError(`--fine_tune_layers: layer ${l.name} is shared; cannot fine-tune across it, use a smaller value`);
    for (const t of l.inboundNodes[0]!.inputTensors) {
      if (!produced.has(t.id) && !frontier.some((f) => f.id === t.id)) frontier.push(t);
    }
  }
  for (const l of top) l.trainable = true;
  const variables = top.flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  return { model, top, region, frontier, variables };
}

/** The frozen part: values of the frontier tensors, computed without a gradient tape. */
function frozenPart(s: Split, x: tf.Tensor4D): tf.Tensor[] {
  const inputs = new Set(s.model.inputs.map((t) => t.id));
  const names = s.frontier.filter((t) => !inputs.has(t.id)).map((t) => t.name);
  const computed = names.length ? (s.model.execute(x, names.length === 1 ? names[0]! : names) as tf.Tensor | tf.Tensor[]) : [];
  const list = Array.isArray(computed) ? computed : [computed];
  let k = 0;
  return s.frontier.map((t) => (inputs.has(t.id) ? x.clone() : list[k++]!));
}

interface ConvLike {
  kernelSize: number[];
  strides: number[];
  dilationRate: number | number[];
  padding: string;
  dataFormat: string;
  depthMultiplier?: number;
  activation: { apply(x: tf.Tensor): tf.Tensor };
}

/**
 * Pointwise and stride-1 depthwise convolutions (MobileNet's top blocks) written
 * with matMul, slice and mul, whose gradients every backend has: the wasm backend
 * lacks the convolution gradient kernels, and the JS backend's take minutes per step.
 * Other layers return undefined and run as they are.
 */
function convAsBasicOps(l: tf.layers.Layer, x: tf.Tensor): tf.Tensor | undefined {
  const cls = l.getClassName();
  if (cls !== 'Conv2D' && cls !== 'DepthwiseConv2D') return undefined;
  const c = l as unknown as ConvLike;
  const dil = Array.isArray(c.dilationRate) ? c.dilationRate : [c.dilationRate, c.dilationRate];
  if (c.dataFormat !== 'channelsLast' || dil.some((v) => v !== 1) || x.rank !== 4) return undefined;
  const [kernel, bias] = l.weights.map((w) => w.read());
  const [n, h, w, cin] = x.shape as [number, number, number, number];
  let y: tf.Tensor;
  if (cls === 'Conv2D') {
    if (c.kernelSize.some((v) => v !== 1) || c.strides.some((v) => v !== 1)) return undefined;
    const cout = kernel!.shape[3]!;
    y = tf.matMul(x.reshape([n * h * w, cin]), kernel!.reshape([cin, cout])).reshape([n, h, w, cout]);
  } else {
    if ((c.depthMultiplier ?? 1) !== 1 || !['same', 'valid'].includes(c.padding)) return undefined;
    y = depthwiseAsSlices(x, kernel!, c.kernelSize as [number, number], c.strides as [number, number], c.padding === 'same');
  }
  if (bias) y = tf.add(y, bias);
  return c.activation.apply(y);
}

/**
 * Depthwise convolution as a sum over kernel taps of (strided window of x) * (tap's
 * per-channel weights), with TensorFlow's padding. A stride s is taken by reshaping
 * each spatial axis into (length / s, s) and slicing, since slice and reshape have
 * gradients everywhere.
 */
function depthwiseAsSlices(x: tf.Tensor, kernel: tf.Tensor, [kh, kw]: [number, number], [sh, sw]: [number, number], same: boolean): tf.Tensor {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const oh = same ? Math.ceil(h / sh) : Math.ceil((h - kh + 1) / sh);
  const ow = same ? Math.ceil(w / sw) : Math.ceil((w - kw + 1) / sw);
  const padH = same ? Math.max((oh - 1) * sh + kh - h, 0) : 0;
  const padW = same ? Math.max((ow - 1) * sw + kw - w, 0) : 0;
  // Long enough that every tap's window fits, and a multiple of the stride.
  const lh = sh * (oh + Math.ceil((kh - 1) / sh));
  const lw = sw * (ow + Math.ceil((kw - 1) / sw));
  const top = Math.floor(padH / 2);
  const left = Math.floor(padW / 2);
  const xp = tf.pad(x, [[0, 0], [top, lh - h - top], [left, lw - w - left], [0, 0]]).reshape([n, lh / sh, sh, lw / sw, sw, c]);
  const terms: tf.Tensor[] = [];
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      const win = tf.slice(xp, [0, Math.floor(a / sh), a % sh, Math.floor(b / sw), b % sw, 0], [n, oh, 1, ow, 1, c]).reshape([n, oh, ow, c]);
      terms.push(tf.mul(win, tf.slice(kernel, [a, b, 0, 0], [1, 1, c, 1]).reshape([c])));
    }
  }
  return tf.addN(terms);
}

/** The trainable top, layer by layer, from the frontier values to the bottleneck [N, D]. */
function topPart(s: Split, frontier: tf.Tensor[]): tf.Tensor2D {
  const values = new Map<number, tf.Tensor>(s.frontier.map((t, i) => [t.id, frontier[i]!]));
  for (const l of s.region) {
    const ins = l.inboundNodes[0]!.inputTensors.map((t) => values.get(t.id)!);
    const basic = ins.length === 1 ? convAsBasicOps(l, ins[0]!) : undefined;
    values.set((l.output as Sym).id, basic ?? (l.apply(ins.length === 1 ? ins[0]! : ins, { training: false }) as tf.Tensor));
  }
  const out = values.get(s.model.outputs[0]!.id)!;
  return out.reshape([out.shape[0]!, -1]);
}

/** Frozen part then top part: the same features as the module's predict, for checks. */
export function forwardSplit(s: Split, x: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => topPart(s, frozenPart(s, x)));
}

/** Kernels the backward pass of conv layers needs; the wasm backend has none of them. */
const GRADIENT_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'DepthwiseConv2dNativeBackpropFilter', 'DepthwiseConv2dNativeBackpropInput'];

/**
 * The backend for the trainable top: the active one when it has the convolution
 * gradient kernels or every convolution of the top has a basic-op form, else
 * tfjs' plain JS backend. Tensors move between backends on first
 * use, so the variables settle on the training backend after one step.
 */
export function gradientBackend(s: Split): string {
  const active = tf.getBackend();
  if (GRADIENT_KERNELS.every((k) => tf.getKernel(k, active) !== undefined)) return active;
  const rewritable = s.region.every((l) => {
    if (!/Conv/.test(l.getClassName())) return true;
    const shape = (l.inboundNodes[0]!.inputTensors[0]!.shape as number[]).map((d) => d ?? 1);
    return tf.tidy(() => convAsBasicOps(l, tf.zeros(shape)) !== undefined);
  });
  return rewritable ? active : 'cpu';
}

export async function fineTune(ex: FeatureExtractor, head: Head, training: LabeledSet, o: FineTuneOptions): Promise<FineTuneResult> {
  const split = splitModule(ex, o.layers);
  const log = o.log;
  const parameters = split.variables.reduce((sum, v) => sum + v.size, 0);
  log.info(
    `Fine-tuning the top ${o.layers} layers of the module (${split.top[0]!.name} … ${split.top[split.top.length - 1]!.name}, ` +
      `${parameters} values) with the head: ${o.steps} steps of ${o.batchSize} images at learning rate ${o.learningRate}`,
  );
  const optimizer = makeOptimizer(o.optimizer, o.learningRate);
  const weights = classWeights(training.y, head.classCount, o.classWeighting);
  const pick = makeRng(o.seed, 'fine_tune');
  const vars = [...split.variables, ...head.variables];
  const history: FineTuneResult['history'] = [];
  const mainBackend = tf.getBackend();
  const trainBackend = gradientBackend(split);
  if (trainBackend !== mainBackend) {
    log.info(`Fine-tuning: the ${mainBackend} backend has no convolution gradients; the frozen layers run on ${mainBackend}, the unfrozen top on ${trainBackend}`);
  }
  // A step is long and synchronous: between its parts, let a Ctrl-C handler run and honour it.
  const checkpoint = async (step: number) => {
    if (!o.signal) return;
    await yieldToEventLoop();
    throwIfInterrupted(o.signal, `interrupted at fine-tuning step ${step}: the model was not exported; the bottleneck cache is kept`);
  };
  try {
    for (let step = 0; step < o.steps; step++) {
      const rows = Array.from({ length: o.batchSize }, () => pick(training.y.length));
      const x = await o.batches(rows.map((r) => training.files[r]!), step);
      const y = tf.tensor1d(rows.map((r) => training.y[r]!), 'int32');
      const frontier = tf.tidy(() => frozenPart(split, x));
      await checkpoint(step);
      let cost: number;
      await tf.setBackend(trainBackend);
      try {
        cost = tf.tidy(() => {
          const c = optimizer.minimize(() => headLoss(head.logits(topPart(split, frontier), true), y, head.classCount, o.labelSmoothing, weights), true, vars);
          return c!.dataSync()[0]!;
        });
      } finally {
        await tf.setBackend(mainBackend);
      }
      tf.dispose([x, y, ...frontier]);
      if (!(cost <= MAX_CROSS_ENTROPY)) throw divergence(`the fine-tuning cross entropy is ${cost} at step ${step}`, o.learningRate, '--fine_tune_learning_rate');
      await checkpoint(step);
      if (step % o.evalStepInterval === 0 || step + 1 === o.steps) {
        history.push({ step, crossEntropy: cost });
        log.info(`Fine-tune step ${step}: Cross entropy = ${cost.toFixed(6)}`);
      }
      log.progress?.('fine-tuning', step + 1, o.steps);
    }
  } finally {
    optimizer.dispose();
  }
  return { layers: split.top.map((l) => l.name), parameters, history };
}

/** Bottlenecks of a set through the (fine-tuned) module, in memory: the disk cache holds the original module's. */
export async function recomputeBottlenecks(ex: FeatureExtractor, set: LabeledSet, batches: ImageBatchSource, batchSize: number, signal?: AbortSignal): Promise<LabeledSet> {
  const size = ex.info.bottleneckSize;
  const x = new Float32Array(set.y.length * size);
  for (let i = 0; i < set.files.length; i += batchSize) {
    if (signal) {
      await yieldToEventLoop();
      throwIfInterrupted(signal, 'interrupted after fine-tuning: the model was not exported; the bottleneck cache is kept');
    }
    const files = set.files.slice(i, i + batchSize);
    const input = await batches(files, 0);
    const out = ex.extract(input);
    x.set((await out.data()) as Float32Array, i * size);
    tf.dispose([input, out]);
  }
  return { x, y: set.y, files: set.files };
}
