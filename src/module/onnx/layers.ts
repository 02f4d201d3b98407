/**
 * TF.js layers models → ONNX, walking the loaded model's own graph (so nested
 * Model/Sequential layers and any Keras config version tfjs reads are handled as
 * tfjs itself built them), from its input to one output tensor.
 */
import * as tf from '@tensorflow/tfjs';
import { GraphBuilder, INPUT_NAME, BOTTLENECK_NAME, type Activation, type ModelProto, type Padding, type Value } from './builder.js';
import { UnsupportedOpsError } from './errors.js';

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

/** Why a layer can't be converted, or undefined. */
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

export interface LayersConvertOptions {
  height: number;
  width: number;
  /** Top-level layer whose output is the bottleneck; default: the model's output. */
  outputLayer?: string;
}

/** A layers model → ONNX ModelProto: input `input` [N, H, W, 3] NHWC, output `bottleneck` [N, D]. */
export function convertLayersModel(model: tf.LayersModel, opts: LayersConvertOptions): ModelProto {
  if (model.inputs.length !== 1) throw new Error(`the module has ${model.inputs.length} inputs; one image input is supported`);
  const target = opts.outputLayer ? (model.getLayer(opts.outputLayer).output as tf.SymbolicTensor) : model.outputs[0]!;
  const layers: tf.layers.Layer[] = [];
  collectLayers(target, new Set(), layers);
  const bad = layers.map(unsupported).filter((o): o is string => o !== undefined);
  if (bad.length) throw new UnsupportedOpsError(bad);

  const g = new GraphBuilder();
  const input = g.imageInput(opts.height, opts.width, model.inputs[0]!.shape[3] ?? 3);

  /** Emits tensor `t` of a (possibly nested) model whose inputs are bound in `inputs`. */
  const emit = (t: tf.SymbolicTensor, inputs: Map<number, Value>, memo: Map<number, Value>): Value => {
    const hit = memo.get(t.id) ?? inputs.get(t.id);
    if (hit) return hit;
    const layer = t.sourceLayer as tf.layers.Layer;
    if (layer.getClassName() === 'InputLayer') throw new Error(`input ${t.name} is not bound`);
    const node = layer.inboundNodes[t.nodeIndex]!;
    const xs = node.inputTensors.map((i) => emit(i, inputs, memo));
    let y: Value;
    if (isContainer(layer)) {
      const inner = new Map<number, Value>(layer.inputs.map((i, k) => [i.id, xs[k]!]));
      y = emit(layer.outputs[t.tensorIndex]!, inner, new Map());
    } else y = emitLayer(g, layer, xs);
    memo.set(t.id, y);
    return y;
  };

  const out = emit(target, new Map([[model.inputs[0]!.id, input]]), new Map());
  const output = g.vectorOutput(out, BOTTLENECK_NAME);
  return g.model([-1, opts.height, opts.width, input.shape[3]!], output, {
    'retrain.input': INPUT_NAME,
    'retrain.bottleneck_tensor': opts.outputLayer ?? target.sourceLayer.name,
  });
}

function weights(layer: tf.layers.Layer): Array<{ data: Float32Array; shape: number[] }> {
  return layer.getWeights().map((w) => ({ data: w.dataSync() as Float32Array, shape: w.shape }));
}

function convPadding(c: LayerConfig): Padding {
  if (c.padding === 'same') return 'SAME';
  if (c.padding === 'valid') return 'VALID';
  throw new UnsupportedOpsError([`padding=${String(c.padding)}`]);
}

function activationOf(c: LayerConfig): Activation {
  return ACTIVATIONS[c.activation ?? 'linear']!;
}

function emitLayer(g: GraphBuilder, layer: tf.layers.Layer, xs: Value[]): Value {
  const cls = layer.getClassName();
  const c = layer.getConfig() as LayerConfig;
  const base = layer.name;
  const x = xs[0]!;
  const w = weights(layer);
  const act = (y: Value) => g.activation(y, activationOf(c), base);
  const pre = activationOf(c) === 'linear' ? base : `${base}/preact`;
  switch (cls) {
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      const useBias = c.useBias !== false;
      const y = g.conv(
        x,
        {
          kernel: w[0]!.data,
          kernelShape: w[0]!.shape,
          depthwise: cls === 'DepthwiseConv2D',
          strides: pair(c.strides, 1),
          dilations: pair(c.dilationRate, 1),
          padding: convPadding(c),
          bias: useBias ? w[1]!.data : undefined,
        },
        pre,
      );
      return act(y);
    }
    case 'SeparableConv2D': {
      const useBias = c.useBias !== false;
      const dw = g.conv(
        x,
        { kernel: w[0]!.data, kernelShape: w[0]!.shape, depthwise: true, strides: pair(c.strides, 1), dilations: pair(c.dilationRate, 1), padding: convPadding(c) },
        `${base}/depthwise`,
      );
      const pw = g.conv(
        dw,
        { kernel: w[1]!.data, kernelShape: w[1]!.shape, depthwise: false, strides: [1, 1], dilations: [1, 1], padding: 'VALID', bias: useBias ? w[2]!.data : undefined },
        pre,
      );
      return act(pw);
    }
    case 'BatchNormalization': {
      const axis = typeof c.axis === 'number' ? c.axis : (c.axis ?? [-1])[0]!;
      if (axis !== -1 && axis !== x.shape.length - 1) throw new UnsupportedOpsError([`BatchNormalization(axis=${axis})`]);
      let k = 0;
      const n = w[w.length - 1]!.data.length;
      const scale = c.scale !== false ? w[k++]!.data : new Float32Array(n).fill(1);
      const offset = c.center !== false ? w[k++]!.data : new Float32Array(n);
      return g.batchNorm(x, { scale, offset, mean: w[k]!.data, variance: w[k + 1]!.data, epsilon: c.epsilon ?? 1e-3 }, base);
    }
    case 'ReLU':
      return g.activation(x, c.maxValue === 6 ? 'relu6' : 'relu', base);
    case 'LeakyReLU':
      return g.activation(x, 'leaky_relu', base, c.alpha ?? 0.3);
    case 'ELU':
      return g.activation(x, 'elu', base, c.alpha ?? 1);
    case 'Softmax':
      return g.activation(x, 'softmax', base);
    case 'Activation':
      return act(x);
    case 'Add':
    case 'Multiply':
    case 'Maximum':
    case 'Minimum': {
      const op = ({ Add: 'Add', Multiply: 'Mul', Maximum: 'Max', Minimum: 'Min' } as const)[cls];
      return xs.slice(1).reduce((a, b, i) => g.binary(op, a, b, i === xs.length - 2 ? base : `${base}/${i}`), x);
    }
    case 'Average': {
      const sum = xs.slice(1).reduce((a, b, i) => g.binary('Add', a, b, `${base}/sum${i}`), x);
      return g.binaryConst('Mul', sum, Float32Array.of(1 / xs.length), [], false, base);
    }
    case 'Rescaling': {
      const { scale, offset } = c as { scale?: number; offset?: number };
      return g.binaryConst('Add', g.binaryConst('Mul', x, Float32Array.of(scale ?? 1), [], false, `${base}/scale`), Float32Array.of(offset ?? 0), [], false, base);
    }
    case 'ZeroPadding2D': {
      const p = c.padding as number | number[] | number[][];
      const [[top, bottom], [left, right]] =
        typeof p === 'number' ? [[p, p], [p, p]] : typeof p[0] === 'number' ? [[p[0], p[0]], [p[1] as number, p[1] as number]] : (p as [[number, number], [number, number]]);
      return g.pad(x, { top: top!, bottom: bottom!, left: left!, right: right! }, base);
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const k = pair(c.poolSize, 2);
      return g.pool(x, cls === 'MaxPooling2D' ? 'max' : 'avg', k, c.strides == null ? k : pair(c.strides, 1), convPadding(c), base);
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D':
      return g.globalPool(x, cls === 'GlobalAveragePooling2D' ? 'avg' : 'max', c.keepDims === true, base);
    case 'Concatenate':
      return g.concat(xs, typeof c.axis === 'number' ? c.axis : -1, base);
    case 'Reshape':
      // tfjs keeps an open size (-1) as null.
      return g.reshape(x, [-1, ...c.targetShape!.map((d) => d ?? -1)], base);
    case 'Flatten':
      return g.reshape(x, [-1, x.shape.slice(1).reduce((p, d) => p * d, 1)], base);
    case 'Dense': {
      const y = g.dense(x, w[0]!.data, w[0]!.shape as [number, number], c.useBias !== false ? w[1]!.data : undefined, pre);
      return act(y);
    }
    default:
      // Dropout and noise layers: identity at inference.
      return x;
  }
}
