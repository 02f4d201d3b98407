/**
 * The fine-tuned top of a module, run by tfjs from an ir.ts Graph: each IR op as tfjs
 * ops, the top's weights as tf.Variables. Batch norm is in inference mode (its stored
 * statistics). With `basicOps`, convolutions are computed with pad / reshape / slice /
 * matMul / mul, whose gradients every backend has: the wasm backend has no convolution
 * gradient kernels, and the JS backend's take minutes per step.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import type { Activation, ConvNode, Graph, Node, Padding } from '../graph/ir.js';
import { nodeWeights } from '../graph/build.js';
import type { GraphSplit } from './split.js';

/**
 * matMul whose gradient multiplies by explicitly transposed operands: tfjs-wasm's
 * matMul with a transpose flag (what the built-in gradient uses) is about 8x slower
 * than a transpose followed by a plain matMul.
 */
export const matMul = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.matMul(dy as tf.Tensor2D, tf.transpose(saved[1]!)), tf.matMul(tf.transpose(saved[0]!), dy as tf.Tensor2D)],
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * Stride-1 VALID depthwise convolution with its gradients written as forward
 * depthwise convolutions (which every backend has): the input's is the output
 * gradient, padded, through the flipped filter; the filter's treats the batch as
 * channels, so one depthwise convolution of the input by the output gradient
 * computes every tap at once. Much faster than tap-by-tap slices.
 */
const depthwiseValid = tf.customGrad(((x: tf.Tensor4D, f: tf.Tensor4D, save: tf.GradSaveFunc) => {
  save([x, f]);
  return {
    value: tf.depthwiseConv2d(x, f, 1, 'valid'),
    gradFunc: (dy: tf.Tensor4D, [xs, fs]: tf.Tensor[]) => {
      const [n, hp, wp, c] = (xs as tf.Tensor4D).shape;
      const [kh, kw] = (fs as tf.Tensor4D).shape;
      const [, oh, ow] = dy.shape;
      const dx = tf.depthwiseConv2d(tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]]), tf.reverse(fs!, [0, 1]) as tf.Tensor4D, 1, 'valid');
      const xc = tf.transpose(xs!, [1, 2, 0, 3]).reshape([1, hp, wp, n * c]) as tf.Tensor4D;
      const dyk = tf.transpose(dy, [1, 2, 0, 3]).reshape([oh, ow, n * c, 1]) as tf.Tensor4D;
      const df = tf.sum(tf.depthwiseConv2d(xc, dyk, 1, 'valid').reshape([kh, kw, n, c]), 2).reshape([kh, kw, c, 1]);
      return [dx, df];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor4D, f: tf.Tensor4D) => tf.Tensor4D;

function activate(x: tf.Tensor, a: Activation, alpha?: number): tf.Tensor {
  switch (a) {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.clipByValue(x, 0, 6);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'tanh':
      return tf.tanh(x);
    case 'swish':
      return tf.mul(x, tf.sigmoid(x));
    case 'hard_sigmoid':
      return tf.clipByValue(tf.add(tf.mul(x, 0.2), 0.5), 0, 1);
    case 'elu':
      return tf.elu(x);
    case 'leaky_relu':
      return tf.leakyRelu(x, alpha ?? 0.2);
    case 'softmax':
      return tf.softmax(x);
  }
}

/** TF's padding as explicit [top, bottom, left, right] for an input of h x w. */
function explicitPads(p: Padding, h: number, w: number, [kh, kw]: [number, number], [sh, sw]: [number, number], [dh, dw]: [number, number]): [number, number, number, number] {
  if (typeof p === 'object') return [p.top, p.bottom, p.left, p.right];
  if (p === 'VALID') return [0, 0, 0, 0];
  const ekh = (kh - 1) * dh + 1;
  const ekw = (kw - 1) * dw + 1;
  const ph = Math.max((Math.ceil(h / sh) - 1) * sh + ekh - h, 0);
  const pw = Math.max((Math.ceil(w / sw) - 1) * sw + ekw - w, 0);
  return [Math.floor(ph / 2), ph - Math.floor(ph / 2), Math.floor(pw / 2), pw - Math.floor(pw / 2)];
}

/**
 * A convolution as a sum over kernel taps of (strided window of x) times the tap's
 * weights: matMul for conv2d, a per-channel mul for depthwise. A stride s is taken by
 * reshaping each padded spatial axis into (length / s, s) and slicing, since slice and
 * reshape have gradients everywhere. 1x1 stride-1 convs are one matMul.
 */
function convAsBasicOps(node: ConvNode, x: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const [kh, kw, , m] = filter.shape;
  const [sh, sw] = node.strides;
  if (node.dilations.some((d) => d !== 1)) throw new UsageError(`--fine_tune_layers: dilated convolution ${node.name} cannot be trained on this backend; use a smaller value`);
  const depthwise = node.op === 'depthwise_conv2d';
  if (depthwise && m !== 1) throw new UsageError(`--fine_tune_layers: depthwise convolution ${node.name} has depth multiplier ${m}; use a smaller value`);
  const cout = depthwise ? c : m;
  const [pt, pb, pl, pr] = explicitPads(node.padding, h, w, [kh, kw], [sh, sw], [1, 1]);
  const oh = Math.floor((h + pt + pb - kh) / sh) + 1;
  const ow = Math.floor((w + pl + pr - kw) / sw) + 1;
  if (!depthwise && kh === 1 && kw === 1 && sh === 1 && sw === 1 && pt + pb + pl + pr === 0) {
    return matMul(x.reshape([n * h * w, c]), filter.reshape([c, cout])).reshape([n, h, w, cout]);
  }
  if (depthwise && sh === 1 && sw === 1) return depthwiseValid(tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]]), filter);
  // Long enough that every tap's window fits, and a multiple of the stride.
  const lh = sh * (oh + Math.ceil((kh - 1) / sh));
  const lw = sw * (ow + Math.ceil((kw - 1) / sw));
  const xp = tf.slice(tf.pad(x, [[0, 0], [pt, Math.max(lh - h - pt, 0)], [pl, Math.max(lw - w - pl, 0)], [0, 0]]), [0, 0, 0, 0], [n, lh, lw, c]);
  // Rank-4 slices only: tfjs' slices of higher rank take a slow generic path.
  const rows = (a: number): tf.Tensor => (sh === 1 ? tf.slice(xp, [0, a, 0, 0], [n, oh, lw, c]) : tf.slice(xp.reshape([n, lh / sh, sh, lw * c]), [0, Math.floor(a / sh), a % sh, 0], [n, oh, 1, lw * c]));
  const window = (r: tf.Tensor, b: number): tf.Tensor =>
    sw === 1 ? tf.slice(r.reshape([n, oh, lw, c]), [0, 0, b, 0], [n, oh, ow, c]) : tf.slice(r.reshape([n * oh, lw / sw, sw, c]), [0, Math.floor(b / sw), b % sw, 0], [n * oh, ow, 1, c]).reshape([n, oh, ow, c]);
  const terms: tf.Tensor[] = [];
  for (let a = 0; a < kh; a++) {
    const r = rows(a);
    for (let b = 0; b < kw; b++) {
      const win = window(r, b);
      const tap = tf.slice(filter, [a, b, 0, 0], [1, 1, c, m]);
      terms.push(depthwise ? tf.mul(win, tap.reshape([c])) : matMul(win.reshape([n * oh * ow, c]), tap.reshape([c, m])).reshape([n, oh, ow, m]));
    }
  }
  return (terms.length === 1 ? terms[0]! : tf.addN(terms)) as tf.Tensor4D;
}

function convOp(node: ConvNode, x: tf.Tensor4D, filter: tf.Tensor4D, basicOps: boolean): tf.Tensor4D {
  if (basicOps) return convAsBasicOps(node, x, filter);
  let pad: 'same' | 'valid' = node.padding === 'SAME' ? 'same' : 'valid';
  let input = x;
  if (typeof node.padding === 'object') {
    const p = node.padding;
    input = tf.pad(x, [[0, 0], [p.top, p.bottom], [p.left, p.right], [0, 0]]);
    pad = 'valid';
  }
  return node.op === 'depthwise_conv2d'
    ? tf.depthwiseConv2d(input, filter, node.strides, pad, 'NHWC', node.dilations)
    : tf.conv2d(input, filter, node.strides, pad, 'NHWC', node.dilations);
}

function poolOp(node: Extract<Node, { op: 'avg_pool' | 'max_pool' }>, x: tf.Tensor4D): tf.Tensor {
  const [, h, w] = x.shape;
  // A pool over the whole map (MobileNet's last AvgPool) is a mean, whose gradient every backend has.
  if (node.padding === 'VALID' && node.ksize[0] === h && node.ksize[1] === w) return node.op === 'avg_pool' ? tf.mean(x, [1, 2], true) : tf.max(x, [1, 2], true);
  let input = x;
  let pad: 'same' | 'valid' = node.padding === 'SAME' ? 'same' : 'valid';
  if (typeof node.padding === 'object') {
    const p = node.padding;
    input = tf.pad(x, [[0, 0], [p.top, p.bottom], [p.left, p.right], [0, 0]]);
    pad = 'valid';
  }
  return node.op === 'avg_pool' ? tf.avgPool(input, node.ksize, node.strides, pad) : tf.maxPool(input, node.ksize, node.strides, pad);
}

/** Runs one node; `v` gives values, `wt` weights. */
function runNode(node: Node, v: (name: string) => tf.Tensor, wt: (name: string) => tf.Tensor, basicOps: boolean): tf.Tensor {
  switch (node.op) {
    case 'input':
      throw new Error('the input node is fed, not run');
    case 'conv2d':
    case 'depthwise_conv2d': {
      let y: tf.Tensor = convOp(node, v(node.x) as tf.Tensor4D, wt(node.filter) as tf.Tensor4D, basicOps);
      if (node.bias) y = tf.add(y, wt(node.bias));
      return activate(y, node.activation, node.alpha);
    }
    case 'dense': {
      const x = v(node.x);
      const k = wt(node.kernel);
      let y: tf.Tensor = matMul(x.reshape([-1, x.shape[x.rank - 1]!]), k as tf.Tensor2D);
      y = y.reshape([...x.shape.slice(0, -1), k.shape[1]!]);
      if (node.bias) y = tf.add(y, wt(node.bias));
      return activate(y, node.activation, node.alpha);
    }
    case 'avg_pool':
    case 'max_pool':
      return poolOp(node, v(node.x) as tf.Tensor4D);
    case 'mean':
      return tf.mean(v(node.x), node.axes, node.keepDims);
    case 'batch_norm': {
      const inv = tf.div(wt(node.scale), tf.sqrt(tf.add(wt(node.variance), node.epsilon)));
      return tf.add(tf.mul(tf.sub(v(node.x), wt(node.mean)), inv), wt(node.offset));
    }
    case 'activation':
      return activate(v(node.x), node.activation, node.alpha);
    case 'add':
    case 'mul':
    case 'sub':
    case 'div':
    case 'maximum':
    case 'minimum': {
      const get = (o: { value: string } | { weight: string }) => ('value' in o ? v(o.value) : wt(o.weight));
      const f = { add: tf.add, mul: tf.mul, sub: tf.sub, div: tf.div, maximum: tf.maximum, minimum: tf.minimum }[node.op];
      return activate(f(get(node.a), get(node.b)), node.activation);
    }
    case 'pad': {
      const p = node.pads;
      return tf.pad(v(node.x), [[0, 0], [p.top, p.bottom], [p.left, p.right], [0, 0]], node.value);
    }
    case 'concat': {
      const xs = node.xs.map(v);
      return tf.concat(xs, node.axis < 0 ? node.axis + xs[0]!.rank : node.axis);
    }
    case 'reshape': {
      const x = v(node.x);
      return x.reshape([x.shape[0]!, ...node.target.slice(1)]);
    }
    case 'squeeze': {
      const x = v(node.x);
      return tf.squeeze(x, node.axes.length ? node.axes : undefined);
    }
    case 'fake_quant': {
      // Only a quantized .tflite read back has these; run them as its int8 runtime would.
      const q = tf.clipByValue(tf.add(tf.round(tf.div(v(node.x), node.scale)), node.zeroPoint), node.qmin, node.qmax);
      return tf.mul(tf.sub(q, node.zeroPoint), node.scale);
    }
  }
}

/** Runs `nodes` (in order) from the fed values; returns every value computed. */
export function runNodes(nodes: Node[], fed: Map<string, tf.Tensor>, wt: (name: string) => tf.Tensor, basicOps: boolean): Map<string, tf.Tensor> {
  const values = new Map(fed);
  const v = (name: string) => {
    const t = values.get(name);
    if (!t) throw new Error(`value ${name} is not computed before it is read`);
    return t;
  };
  for (const node of nodes) if (node.op !== 'input') values.set(node.name, runNode(node, v, wt, basicOps));
  return values;
}

/** The top of a graph as a trainable function: activation at the cut in, bottleneck out. */
export class GraphTop {
  readonly variables: Map<string, tf.Variable>;
  private readonly frozen: Map<string, tf.Tensor>;
  constructor(
    readonly graph: Graph,
    readonly split: GraphSplit,
  ) {
    const trainable = new Set(split.trainable);
    this.variables = new Map();
    this.frozen = new Map();
    for (const name of new Set(split.top.flatMap(nodeWeights))) {
      const w = graph.weights.get(name)!;
      if (trainable.has(name)) this.variables.set(name, tf.variable(tf.tensor(w.data, w.shape), true, `fine_tune/${name}`));
      else this.frozen.set(name, tf.tensor(w.data, w.shape));
    }
  }
  /** [N, ...cutShape] → [N, D]. */
  forward(x: tf.Tensor, basicOps: boolean): tf.Tensor2D {
    return tf.tidy(() => {
      const wt = (k: string) => this.variables.get(k) ?? this.frozen.get(k)!;
      const values = runNodes(this.split.top, new Map([[this.split.cut, x]]), wt, basicOps);
      const out = values.get(this.graph.output)!;
      return out.reshape([out.shape[0]!, -1]);
    });
  }
  /** The trained weights' current values, by weight name. */
  values(): Map<string, Float32Array> {
    return new Map([...this.variables].map(([k, v]) => [k, v.dataSync() as Float32Array]));
  }
  assign(values: Map<string, Float32Array>): void {
    tf.tidy(() => {
      for (const [k, v] of this.variables) v.assign(tf.tensor(values.get(k)!, v.shape));
    });
  }
  dispose(): void {
    tf.dispose([...this.variables.values(), ...this.frozen.values()]);
  }
}
