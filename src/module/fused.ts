/**
 * Runs a layers model's graph with fused kernels: each Conv2D / DepthwiseConv2D
 * becomes one `tf.fused.*` call with its bias and a following ReLU / ReLU6, which
 * tfjs' layers API never does (it runs conv, bias and activation as three kernels).
 * Only the layer kinds below are understood; for anything else the caller keeps
 * the plain `model.predict`.
 */
import * as tf from '@tensorflow/tfjs';

type Activation = 'linear' | 'relu' | 'relu6';
type Run = (inputs: tf.Tensor[]) => tf.Tensor;

interface Step {
  name: string;
  inputs: string[];
  run: Run;
}

/** tfjs' own getConfig() keys (camelCase, unlike the model.json). */
interface LayerConfig {
  strides?: number[];
  padding?: string;
  dilationRate?: number | number[];
  dataFormat?: string;
  activation?: string;
  useBias?: boolean;
  maxValue?: number | null;
  keepDims?: boolean;
}

function activationOf(name: string | undefined): Activation | undefined {
  if (name === undefined || name === 'linear') return 'linear';
  if (name === 'relu') return 'relu';
  if (name === 'relu6') return 'relu6';
  return undefined;
}

/** A ReLU layer that tf.fused can take over, or undefined. */
function reluKind(layer: tf.layers.Layer): Activation | undefined {
  const c = layer.getConfig() as LayerConfig;
  if (layer.getClassName() === 'ReLU') {
    if (c.maxValue === undefined || c.maxValue === null) return 'relu';
    return c.maxValue === 6 ? 'relu6' : undefined;
  }
  if (layer.getClassName() === 'Activation') {
    const a = activationOf(c.activation);
    return a === 'relu' || a === 'relu6' ? a : undefined;
  }
  return undefined;
}

function applyActivation(x: tf.Tensor, a: Activation): tf.Tensor {
  return a === 'relu' ? tf.relu(x) : a === 'relu6' ? tf.relu6(x) : x;
}

function inboundNames(layer: tf.layers.Layer): string[] | undefined {
  if (layer.inboundNodes.length !== 1) return undefined; // shared layers: not handled
  return layer.inboundNodes[0]!.inboundLayers.map((l) => l.name);
}

function convParams(c: LayerConfig): { strides: [number, number]; pad: 'same' | 'valid'; dilations: [number, number] } | undefined {
  if (c.dataFormat && c.dataFormat !== 'channelsLast') return undefined;
  if (c.padding !== 'same' && c.padding !== 'valid') return undefined;
  const s = c.strides ?? [1, 1];
  const d = c.dilationRate === undefined ? [1, 1] : typeof c.dilationRate === 'number' ? [c.dilationRate, c.dilationRate] : c.dilationRate;
  return { strides: [s[0]!, s[1]!], pad: c.padding, dilations: [d[0]!, d[1]!] };
}

/**
 * Builds a fused runner for `model` (input → `outputLayer`), or returns undefined
 * when the graph has a layer it does not know. The weights are the model's own
 * tensors, so the runner lives as long as the model.
 */
export function fusedLayersRunner(model: tf.LayersModel, outputLayer: string): ((x: tf.Tensor4D) => tf.Tensor) | undefined {
  if (model.inputs.length !== 1) return undefined;
  const layers = model.layers;
  const consumers = new Map<string, number>();
  const inbound = new Map<string, string[]>();
  for (const layer of layers) {
    const names = layer.getClassName() === 'InputLayer' ? [] : inboundNames(layer);
    if (!names) return undefined;
    inbound.set(layer.name, names);
    for (const n of names) consumers.set(n, (consumers.get(n) ?? 0) + 1);
  }
  if (!inbound.has(outputLayer)) return undefined;

  const steps: Step[] = [];
  const absorbed = new Set<string>();
  let inputName: string | undefined;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    const name = layer.name;
    if (absorbed.has(name)) continue;
    const cls = layer.getClassName();
    const c = layer.getConfig() as LayerConfig;
    const ins = inbound.get(name)!;
    const w = layer.getWeights();
    let step: Run | undefined;
    let outName = name;
    switch (cls) {
      case 'InputLayer':
        inputName = name;
        continue;
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        const p = convParams(c);
        let act = activationOf(c.activation);
        if (!p || !act) return undefined;
        const kernel = w[0] as tf.Tensor4D;
        const bias = c.useBias === false ? undefined : (w[1] as tf.Tensor1D);
        // Take over the next layer when it is a ReLU that only this conv feeds.
        const next = layers[i + 1];
        if (act === 'linear' && next && name !== outputLayer && consumers.get(name) === 1 && inbound.get(next.name)?.[0] === name) {
          const r = reluKind(next);
          if (r) {
            act = r;
            absorbed.add(next.name);
            outName = next.name;
          }
        }
        const activation = act;
        step =
          cls === 'Conv2D'
            ? ([x]) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: kernel, strides: p.strides, pad: p.pad, dilations: p.dilations, bias, activation })
            : ([x]) =>
                tf.fused.depthwiseConv2d({ x: x as tf.Tensor4D, filter: kernel, strides: p.strides, pad: p.pad, dilations: p.dilations, bias, activation });
        break;
      }
      case 'ReLU':
      case 'Activation': {
        const r = cls === 'ReLU' ? reluKind(layer) : activationOf(c.activation);
        if (!r) return undefined;
        step = ([x]) => applyActivation(x!, r);
        break;
      }
      case 'Add':
        step = (xs) => tf.addN(xs);
        break;
      case 'GlobalAveragePooling2D':
        if (c.dataFormat && c.dataFormat !== 'channelsLast') return undefined;
        step = ([x]) => tf.mean(x!, [1, 2], c.keepDims === true);
        break;
      case 'Dense': {
        const act = activationOf(c.activation);
        if (!act) return undefined;
        const kernel = w[0] as tf.Tensor2D;
        const bias = c.useBias === false ? undefined : (w[1] as tf.Tensor1D);
        if (kernel.rank !== 2) return undefined;
        step = ([x]) => tf.fused.matMul({ a: x as tf.Tensor2D, b: kernel, bias, activation: act });
        break;
      }
      default:
        return undefined;
    }
    steps.push({ name: outName, inputs: ins, run: step });
    if (name === outputLayer || outName === outputLayer) break;
  }
  if (!inputName) return undefined;
  const last = steps[steps.length - 1];
  if (!last || (last.name !== outputLayer && !steps.some((s) => s.name === outputLayer))) return undefined;

  // How many steps read each value, so intermediates are freed as soon as they are used up.
  const reads = new Map<string, number>();
  for (const s of steps) for (const n of s.inputs) reads.set(n, (reads.get(n) ?? 0) + 1);
  return (x: tf.Tensor4D) => {
    const values = new Map<string, tf.Tensor>([[inputName!, x]]);
    const left = new Map(reads);
    let out: tf.Tensor | undefined;
    for (const s of steps) {
      const xs = s.inputs.map((n) => values.get(n)!);
      const y = s.run(xs);
      for (const n of s.inputs) {
        const k = left.get(n)! - 1;
        left.set(n, k);
        if (k === 0 && n !== inputName) {
          values.get(n)!.dispose();
          values.delete(n);
        }
      }
      values.set(s.name, y);
      if (s.name === outputLayer) {
        out = y;
        break;
      }
    }
    for (const [n, t] of values) if (t !== out && n !== inputName) t.dispose();
    return out!;
  };
}

/** Largest difference allowed between the fused and the plain model on the check input. */
export const FUSED_TOLERANCE = 1e-4;

/** true: fused after a check at first use; 'trusted': fused, already checked elsewhere; false: plain predict. */
export type FusedMode = boolean | 'trusted';

export interface LayersForward {
  forward(x: tf.Tensor4D): tf.Tensor;
  /** Runs the check now (if not done yet); false when the plain model is what runs. */
  verify(): boolean;
  /** Whether the fused runner is in use (it may still be dropped at the first call's check). */
  readonly fused: boolean;
}

/**
 * The fused runner when it exists and gives the plain model's output on a random
 * image (within FUSED_TOLERANCE), else the plain `predict`. The check guards against
 * any layer option this file reads wrongly; it runs at the first call, so a run
 * that finds every bottleneck cached never runs the model at all.
 */
export function layersForward(
  model: tf.LayersModel,
  outputLayer: string,
  height: number,
  width: number,
  mode: FusedMode = true,
): LayersForward {
  const plain = (x: tf.Tensor4D) => model.predict(x) as tf.Tensor;
  let fused = mode === false ? undefined : fusedLayersRunner(model, outputLayer);
  let checked = mode === 'trusted';
  const check = (run: (x: tf.Tensor4D) => tf.Tensor) => {
    checked = true;
    const diff = tf.tidy(() => {
      const x = tf.randomUniform([1, height, width, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
      const a = run(x);
      const b = plain(x);
      return a.shape.join() === b.shape.join() ? tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! : Infinity;
    });
    if (!(diff <= FUSED_TOLERANCE)) fused = undefined;
  };
  return {
    forward(x) {
      if (fused && !checked) check(fused);
      return fused ? fused(x) : plain(x);
    },
    verify() {
      if (fused && !checked) check(fused);
      return fused !== undefined;
    },
    get fused() {
      return fused !== undefined;
    },
  };
}

/** The bottleneck size a layer declares ([N, D] or [N, 1, 1, D]), without running the model. */
export function declaredVectorSize(model: tf.LayersModel, layerName: string): number | undefined {
  const shape = model.getLayer(layerName).outputShape;
  if (!Array.isArray(shape) || Array.isArray(shape[0])) return undefined;
  const dims = shape as Array<number | null>;
  const d = dims[dims.length - 1];
  if (typeof d !== 'number' || d <= 0) return undefined;
  if (dims.length === 2 || (dims.length === 4 && dims[1] === 1 && dims[2] === 1)) return d;
  return undefined;
}
