/**
 * TF.js layers models → Graph, walking the loaded model's own graph (so nested
 * Model/Sequential layers and any Keras config version tfjs reads are handled as
 * tfjs itself built them), from its input to one output tensor. Weights keep the
 * names of tfjs' variables (`conv1/kernel`...).
 */
import * as tf from '@tensorflow/tfjs';
import { IrBuilder } from './build.js';
import { UnsupportedOpsError } from './errors.js';
import type { Activation, BinaryNode, Graph, Padding } from './ir.js';

/** tfjs getConfig() keys (camelCase). */
interface LayerConfig {
  strides?: number | number[];
  padding?: string | number | number[] | number[][];
  dilationRate?: number | number[];
  dataFormat?: string;
  activation?: string;
  useBias?: boolean;
  maxValue?: number | null;
  alpha?: number;
  axis?: number | number[];
  epsilon?: number;
  center?: boolean;
  scale?: boolean;
  poolSize?: number | number[];
  keepDims?: boolean;
  targetShape?: Array<number | null>;
  depthMultiplier?: number;
}

const ACTIVATIONS: Record<string, Activation> = {
  linear: 'linear',
  relu: 'relu',
  relu6: 'relu6',
  sigmoid: 'sigmoid',
  tanh: 'tanh',
  swish: 'swish',
  hardSigmoid: 'hard_sigmoid',
  elu: 'elu',
  softmax: 'softmax',
};

const SIMPLE = new Set([
  'InputLayer',
  'Conv2D',
  'DepthwiseConv2D',
  'SeparableConv2D',
  'BatchNormalization',
  'ReLU',
  'LeakyReLU',
  'ELU',
  'Softmax',
  'Activation',
  'Add',
  'Average',
  'Multiply',
  'Rescaling',
  'Maximum',
  'Minimum',
  'ZeroPadding2D',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'GlobalMaxPooling2D',
  'Concatenate',
  'Reshape',
  'Flatten',
  'Dense',
  'Dropout',
  'SpatialDropout2D',
  'GaussianNoise',
  'GaussianDropout',
  'AlphaDropout',
]);

const pair = (v: number | number[] | undefined, dflt: number): [number, number] =>
  v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [v[0] ?? dflt, v[1] ?? v[0] ?? dflt];

const isContainer = (l: tf.layers.Layer): l is tf.LayersModel => l instanceof tf.LayersModel;

/** Why a layer can't be read, or undefined. */
function unsupported(l: tf.layers.Layer): string | undefined {
  const cls = l.getClassName();
  if (isContainer(l)) return undefined;
  if (!SIMPLE.has(cls)) return cls;
  const c = l.getConfig() as LayerConfig;
  if (c.dataFormat !== undefined && c.dataFormat !== 'channelsLast') return `${cls}(dataFormat=${c.dataFormat})`;
  if (c.activation !== undefined && !(c.activation in ACTIVATIONS)) return `${cls}(activation=${c.activation})`;
  if (cls === 'ReLU' && c.maxValue != null && c.maxValue !== 6) return `ReLU(maxValue=${c.maxValue})`;
  return undefined;
}

/** Every layer the output depends on, nested models' layers included. */
function collectLayers(t: tf.SymbolicTensor, seen: Set<tf.layers.Layer>, out: tf.layers.Layer[]): void {
  const stack = [t];
  while (stack.length) {
    const s = stack.pop()!;
    const layer = s.sourceLayer as tf.layers.Layer;
    const node = layer.inboundNodes[s.nodeIndex];
    if (!seen.has(layer)) {
      seen.add(layer);
      out.push(layer);
      if (isContainer(layer)) for (const o of layer.outputs) stack.push(o);
    }
    if (node && layer.getClassName() !== 'InputLayer') for (const i of node.inputTensors) if (i !== s) stack.push(i);
  }
}

export interface LayersReadOptions {
  height: number;
  width: number;
  /** Top-level layer whose output is the graph's output; default: the model's output. */
  outputLayer?: string;
}

/** A layers model as a Graph: input [-1, H, W, C], output the chosen layer's value. */
export function fromLayersModel(model: tf.LayersModel, opts: LayersReadOptions): Graph {
  if (model.inputs.length !== 1) throw new Error(`the module has ${model.inputs.length} inputs; one image input is supported`);
  const target = opts.outputLayer ? (model.getLayer(opts.outputLayer).output as tf.SymbolicTensor) : model.outputs[0]!;
  const layers: tf.layers.Layer[] = [];
  collectLayers(target, new Set(), layers);
  const bad = layers.map(unsupported).filter((o): o is string => o !== undefined);
  if (bad.length) throw new UnsupportedOpsError(bad);

  const b = new IrBuilder();
  const input = b.input('input', [-1, opts.height, opts.width, model.inputs[0]!.shape[3] ?? 3]);
  const weightNames = new Map<tf.LayerVariable, string>();
  const weightsOf = (layer: tf.layers.Layer): string[] =>
    layer.weights.map((v) => {
      let w = weightNames.get(v);
      if (w === undefined) {
        const t = v.read();
        weightNames.set(v, (w = b.weight(v.originalName ?? v.name, Float32Array.from(t.dataSync() as Float32Array), t.shape)));
      }
      return w;
    });

  /** Emits tensor `t` of a (possibly nested) model whose inputs are bound in `inputs`. */
  const emit = (t: tf.SymbolicTensor, inputs: Map<number, string>, memo: Map<number, string>): string => {
    const hit = memo.get(t.id) ?? inputs.get(t.id);
    if (hit) return hit;
    const layer = t.sourceLayer as tf.layers.Layer;
    if (layer.getClassName() === 'InputLayer') throw new Error(`input ${t.name} is not bound`);
    const node = layer.inboundNodes[t.nodeIndex]!;
    const xs = node.inputTensors.map((i) => emit(i, inputs, memo));
    let y: string;
    if (isContainer(layer)) {
      const inner = new Map<number, string>(layer.inputs.map((i, k) => [i.id, xs[k]!]));
      y = emit(layer.outputs[t.tensorIndex]!, inner, new Map());
    } else y = readLayer(b, layer, xs, weightsOf(layer));
    memo.set(t.id, y);
    return y;
  };

  return b.graph(input, emit(target, new Map([[model.inputs[0]!.id, input]]), new Map()));
}

function convPadding(c: LayerConfig): Padding {
  if (c.padding === 'same') return 'SAME';
  if (c.padding === 'valid') return 'VALID';
  throw new UnsupportedOpsError([`padding=${String(c.padding)}`]);
}

function activationOf(c: LayerConfig): Activation {
  return ACTIVATIONS[c.activation ?? 'linear']!;
}

function readLayer(b: IrBuilder, layer: tf.layers.Layer, xs: string[], w: string[]): string {
  const cls = layer.getClassName();
  const c = layer.getConfig() as LayerConfig;
  const name = layer.name;
  const x = xs[0]!;
  const scalar = (base: string, v: number) => b.weight(base, Float32Array.of(v), []);
  const act = (op: Activation, alpha?: number) => b.add({ op: 'activation', name, x, activation: op, ...(alpha !== undefined ? { alpha } : {}) });
  switch (cls) {
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      const useBias = c.useBias !== false;
      return b.add({
        op: cls === 'Conv2D' ? 'conv2d' : 'depthwise_conv2d',
        name,
        x,
        filter: w[0]!,
        ...(useBias ? { bias: w[1]! } : {}),
        strides: pair(c.strides, 1),
        dilations: pair(c.dilationRate, 1),
        padding: convPadding(c),
        activation: activationOf(c),
      });
    }
    case 'SeparableConv2D': {
      const useBias = c.useBias !== false;
      const dw = b.add({ op: 'depthwise_conv2d', name: `${name}/depthwise`, x, filter: w[0]!, strides: pair(c.strides, 1), dilations: pair(c.dilationRate, 1), padding: convPadding(c), activation: 'linear' });
      return b.add({ op: 'conv2d', name, x: dw, filter: w[1]!, ...(useBias ? { bias: w[2]! } : {}), strides: [1, 1], dilations: [1, 1], padding: 'VALID', activation: activationOf(c) });
    }
    case 'BatchNormalization': {
      const axis = typeof c.axis === 'number' ? c.axis : (c.axis ?? [-1])[0]!;
      const rank = b.shapeOf(x).length;
      if (axis !== -1 && axis !== rank - 1) throw new UnsupportedOpsError([`BatchNormalization(axis=${axis})`]);
      if (rank !== 4 && rank !== 2) throw new UnsupportedOpsError([`BatchNormalization(${rank}-D)`]);
      let k = 0;
      const n = b.weightOf(w[w.length - 1]!).data.length;
      const scale = c.scale !== false ? w[k++]! : b.weight(`${name}/gamma`, new Float32Array(n).fill(1), [n]);
      const offset = c.center !== false ? w[k++]! : b.weight(`${name}/beta`, new Float32Array(n), [n]);
      return b.add({ op: 'batch_norm', name, x, scale, offset, mean: w[k]!, variance: w[k + 1]!, epsilon: c.epsilon ?? 1e-3 });
    }
    case 'ReLU':
      return act(c.maxValue === 6 ? 'relu6' : 'relu');
    case 'LeakyReLU':
      return act('leaky_relu', c.alpha ?? 0.3);
    case 'ELU':
      return act('elu', c.alpha ?? 1);
    case 'Softmax':
      return act('softmax');
    case 'Activation':
      return activationOf(c) === 'linear' ? x : act(activationOf(c));
    case 'Add':
    case 'Multiply':
    case 'Maximum':
    case 'Minimum': {
      const op = ({ Add: 'add', Multiply: 'mul', Maximum: 'maximum', Minimum: 'minimum' } as const)[cls] satisfies BinaryNode['op'];
      return xs.slice(1).reduce((a, y, i) => b.add({ op, name: i === xs.length - 2 ? name : `${name}/${i}`, a: { value: a }, b: { value: y }, activation: 'linear' }), x);
    }
    case 'Average': {
      const sum = xs.slice(1).reduce((a, y, i) => b.add({ op: 'add', name: `${name}/sum${i}`, a: { value: a }, b: { value: y }, activation: 'linear' }), x);
      return b.add({ op: 'mul', name, a: { value: sum }, b: { weight: scalar(`${name}/y`, 1 / xs.length) }, activation: 'linear' });
    }
    case 'Rescaling': {
      const { scale, offset } = c as { scale?: number; offset?: number };
      const scaled = b.add({ op: 'mul', name: `${name}/scale`, a: { value: x }, b: { weight: scalar(`${name}/scale/y`, scale ?? 1) }, activation: 'linear' });
      return b.add({ op: 'add', name, a: { value: scaled }, b: { weight: scalar(`${name}/y`, offset ?? 0) }, activation: 'linear' });
    }
    case 'ZeroPadding2D': {
      const p = c.padding as number | number[] | number[][];
      const [[top, bottom], [left, right]] =
        typeof p === 'number' ? [[p, p], [p, p]] : typeof p[0] === 'number' ? [[p[0], p[0]], [p[1] as number, p[1] as number]] : (p as [[number, number], [number, number]]);
      return b.add({ op: 'pad', name, x, pads: { top: top!, bottom: bottom!, left: left!, right: right! }, value: 0 });
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const k = pair(c.poolSize, 2);
      return b.add({ op: cls === 'MaxPooling2D' ? 'max_pool' : 'avg_pool', name, x, ksize: k, strides: c.strides == null ? k : pair(c.strides, 1), padding: convPadding(c) });
    }
    case 'GlobalAveragePooling2D':
      return b.add({ op: 'mean', name, x, axes: [1, 2], keepDims: c.keepDims === true });
    case 'GlobalMaxPooling2D': {
      // A max pool over the whole image is the global max.
      const [, h, wd] = b.shapeOf(x) as [number, number, number, number];
      const pooled = b.add({ op: 'max_pool', name: c.keepDims === true ? name : `${name}/pool`, x, ksize: [h, wd], strides: [1, 1], padding: 'VALID' });
      return c.keepDims === true ? pooled : b.add({ op: 'squeeze', name, x: pooled, axes: [1, 2] });
    }
    case 'Concatenate':
      return b.add({ op: 'concat', name, xs, axis: typeof c.axis === 'number' ? c.axis : -1 });
    case 'Reshape':
      // tfjs keeps an open size (-1) as null.
      return b.add({ op: 'reshape', name, x, target: [-1, ...c.targetShape!.map((d) => d ?? -1)] });
    case 'Flatten':
      return b.add({ op: 'reshape', name, x, target: [-1, b.shapeOf(x).slice(1).reduce((p, d) => p * d, 1)] });
    case 'Dense':
      return b.add({ op: 'dense', name, x, kernel: w[0]!, ...(c.useBias !== false ? { bias: w[1]! } : {}), activation: activationOf(c) });
    default:
      // Dropout and noise layers: identity at inference.
      return x;
  }
}
