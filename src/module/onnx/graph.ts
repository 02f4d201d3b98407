/**
 * TF.js graph models (model.json with a GraphDef-style `modelTopology.node`) → ONNX,
 * from the input Placeholder to the bottleneck node. Only the nodes the bottleneck
 * depends on are converted; their unknown ops are reported together.
 */
import * as tf from '@tensorflow/tfjs';
import { GraphBuilder, INPUT_NAME, BOTTLENECK_NAME, type Activation, type ModelProto, type Padding, type Value } from './builder.js';
import { UnsupportedOpsError } from './errors.js';

interface AttrValue {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  list?: { i?: Array<string | number>; s?: string[]; f?: number[] };
}

interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, AttrValue>;
}

interface Const {
  data: Float32Array;
  shape: number[];
}

const ACTIVATIONS: Record<string, Activation> = {
  Relu: 'relu',
  Relu6: 'relu6',
  Sigmoid: 'sigmoid',
  Tanh: 'tanh',
  Elu: 'elu',
  LeakyRelu: 'leaky_relu',
  Softmax: 'softmax',
};
const BINARY: Record<string, 'Add' | 'Mul' | 'Sub' | 'Div' | 'Max' | 'Min'> = {
  Add: 'Add',
  AddV2: 'Add',
  BiasAdd: 'Add',
  Mul: 'Mul',
  Sub: 'Sub',
  RealDiv: 'Div',
  Maximum: 'Max',
  Minimum: 'Min',
};
const CONV = new Set(['Conv2D', '_FusedConv2D', 'DepthwiseConv2dNative', 'FusedDepthwiseConv2dNative']);
const OTHER = new Set([
  'Placeholder',
  'Const',
  'Identity',
  'StopGradient',
  'FusedBatchNorm',
  'FusedBatchNormV2',
  'FusedBatchNormV3',
  'Pad',
  'PadV2',
  'AvgPool',
  'MaxPool',
  'Mean',
  'ConcatV2',
  'Reshape',
  'Squeeze',
  'MatMul',
  '_FusedMatMul',
]);

const str = (a: AttrValue | undefined): string | undefined => (a?.s === undefined ? undefined : Buffer.from(a.s, 'base64').toString('utf8'));
const ints = (a: AttrValue | undefined): number[] => (a?.list?.i ?? []).map(Number);
const fusedOps = (n: TfNode): string[] => (n.attr?.['fused_ops']?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));

/** Why a node can't be converted, or undefined when it can. */
function unsupported(n: TfNode): string | undefined {
  if (!(n.op in ACTIVATIONS || n.op in BINARY || CONV.has(n.op) || OTHER.has(n.op))) return n.op;
  const fmt = str(n.attr?.['data_format']);
  if (fmt !== undefined && fmt !== 'NHWC') return `${n.op}(data_format=${fmt})`;
  if (n.op === '_FusedConv2D' || n.op === 'FusedDepthwiseConv2dNative' || n.op === '_FusedMatMul') {
    const [first, act, ...rest] = fusedOps(n);
    // tfjs itself refuses FusedBatchNorm inside fused convs, so no TF.js module has it.
    if (first !== 'BiasAdd' || rest.length > 0 || (act !== undefined && !(act in ACTIVATIONS))) return `${n.op}(${fusedOps(n).join(',')})`;
  }
  if (n.op === 'MatMul' || n.op === '_FusedMatMul') {
    if (n.attr?.['transpose_a']?.b) return `${n.op}(transpose_a)`;
  }
  return undefined;
}

/** Strips `^control` inputs and the `:0` output index. */
function dataInputs(n: TfNode): string[] {
  return (n.input ?? []).filter((i) => !i.startsWith('^')).map((i) => i.replace(/:0$/, ''));
}

function decodeConsts(artifacts: tf.io.ModelArtifacts): Map<string, Const> {
  const out = new Map<string, Const>();
  const map = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs ?? []);
  for (const [name, t] of Object.entries(map)) {
    out.set(name, { data: Float32Array.from(t.dataSync() as ArrayLike<number>), shape: t.shape });
    t.dispose();
  }
  return out;
}

export interface GraphConvertOptions {
  /** Node whose output is the bottleneck. */
  outputNode: string;
  height: number;
  width: number;
}

export function convertGraphArtifacts(artifacts: tf.io.ModelArtifacts, opts: GraphConvertOptions): ModelProto {
  const topo = artifacts.modelTopology as { node?: TfNode[] };
  const nodes = new Map((topo.node ?? []).map((n) => [n.name, n]));
  const target = nodes.get(opts.outputNode.replace(/:0$/, ''));
  if (!target) throw new Error(`node ${opts.outputNode} is not in the graph`);

  // The nodes the bottleneck depends on, inputs first.
  const order: TfNode[] = [];
  const seen = new Set<string>();
  const stack: Array<[TfNode, boolean]> = [[target, false]];
  while (stack.length) {
    const [n, expanded] = stack.pop()!;
    if (expanded) {
      order.push(n);
      continue;
    }
    if (seen.has(n.name)) continue;
    seen.add(n.name);
    stack.push([n, true]);
    for (const i of dataInputs(n)) {
      const m = nodes.get(i.replace(/:\d+$/, ''));
      if (!m) throw new Error(`node ${n.name} reads ${i}, which is not in the graph`);
      if (/:\d+$/.test(i)) throw new UnsupportedOpsError([`${m.op}:${i.split(':').pop()}`]);
      stack.push([m, false]);
    }
  }
  const bad = [...new Set(order.map(unsupported).filter((o): o is string => o !== undefined))].sort();
  if (bad.length) throw new UnsupportedOpsError(bad);
  if (order.filter((n) => n.op === 'Placeholder').length !== 1) throw new Error('the bottleneck must depend on exactly one input');

  const weights = decodeConsts(artifacts);
  const g = new GraphBuilder();
  const values = new Map<string, Value | Const>();
  const isConst = (v: Value | Const | undefined): v is Const => v !== undefined && 'data' in v;
  const constOf = (name: string, n: TfNode): Const => {
    const v = values.get(name);
    if (!isConst(v)) throw new UnsupportedOpsError([`${n.op}(non-constant ${name})`]);
    return v;
  };
  const valueOf = (name: string): Value => {
    const v = values.get(name);
    if (v === undefined) throw new Error(`value ${name} is missing`);
    if (!isConst(v)) return v;
    return { name: g.floatConst(name, v.data, v.shape), shape: v.shape, nchw: false };
  };
  const padding = (n: TfNode): Padding => {
    const p = str(n.attr?.['padding']);
    if (p === 'SAME' || p === 'VALID') return p;
    if (p === 'EXPLICIT') {
      const e = ints(n.attr?.['explicit_paddings']);
      return { top: e[2] ?? 0, bottom: e[3] ?? 0, left: e[4] ?? 0, right: e[5] ?? 0 };
    }
    throw new UnsupportedOpsError([`${n.op}(padding=${p})`]);
  };
  const hw = (list: number[], dflt = 1): [number, number] => (list.length === 4 ? [list[1]!, list[2]!] : [dflt, dflt]);

  for (const n of order) {
    const ins = dataInputs(n);
    const base = n.name;
    let out: Value | Const;
    if (n.op === 'Placeholder') out = g.imageInput(opts.height, opts.width);
    else if (n.op === 'Const') {
      const c = weights.get(n.name);
      if (!c) throw new Error(`constant ${n.name} has no value in the weights manifest`);
      out = c;
    } else if (n.op === 'Identity' || n.op === 'StopGradient') out = values.get(ins[0]!)!;
    else if (CONV.has(n.op)) {
      const filter = constOf(ins[1]!, n);
      const fused = fusedOps(n);
      const y = g.conv(
        valueOf(ins[0]!),
        {
          kernel: filter.data,
          kernelShape: filter.shape,
          depthwise: n.op.includes('Depthwise'),
          strides: hw(ints(n.attr?.['strides'])),
          dilations: hw(ints(n.attr?.['dilations'])),
          padding: padding(n),
          bias: fused.length ? constOf(ins[2]!, n).data : undefined,
        },
        fused[1] ? `${base}/conv` : base,
      );
      out = fused[1] ? g.activation(y, ACTIVATIONS[fused[1]]!, base, n.attr?.['leakyrelu_alpha']?.f) : y;
    } else if (n.op === 'MatMul' || n.op === '_FusedMatMul') {
      const b = constOf(ins[1]!, n);
      const tb = n.attr?.['transpose_b']?.b === true;
      const kernel = tb ? transpose2(b.data, b.shape) : b.data;
      const shape: [number, number] = tb ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
      const fused = fusedOps(n);
      const bias = fused[0] === 'BiasAdd' ? constOf(ins[2]!, n).data : undefined;
      const y = g.dense(valueOf(ins[0]!), kernel, shape, bias, fused[1] ? `${base}/dense` : base);
      out = fused[1] ? g.activation(y, ACTIVATIONS[fused[1]]!, base, n.attr?.['leakyrelu_alpha']?.f) : y;
    } else if (n.op in BINARY) {
      const [a, b] = [values.get(ins[0]!), values.get(ins[1]!)];
      if (isConst(a) && isConst(b)) throw new UnsupportedOpsError([`${n.op}(two constants)`]);
      if (isConst(a)) out = g.binaryConst(BINARY[n.op]!, valueOf(ins[1]!), a.data, a.shape, true, base);
      else if (isConst(b)) out = g.binaryConst(BINARY[n.op]!, valueOf(ins[0]!), b.data, b.shape, false, base);
      else out = g.binary(BINARY[n.op]!, valueOf(ins[0]!), valueOf(ins[1]!), base);
    } else if (n.op in ACTIVATIONS) {
      out = g.activation(valueOf(ins[0]!), ACTIVATIONS[n.op]!, base, n.attr?.['alpha']?.f);
    } else if (n.op.startsWith('FusedBatchNorm')) {
      const [scale, offset, mean, variance] = ins.slice(1, 5).map((i) => constOf(i, n).data) as [Float32Array, Float32Array, Float32Array, Float32Array];
      out = g.batchNorm(valueOf(ins[0]!), { scale, offset, mean, variance, epsilon: n.attr?.['epsilon']?.f ?? 1e-3 }, base);
    } else if (n.op === 'Pad' || n.op === 'PadV2') {
      const p = constOf(ins[1]!, n).data;
      const x = valueOf(ins[0]!);
      if (x.shape.length !== 4 || p[0] || p[1] || p[6] || p[7]) throw new UnsupportedOpsError([`${n.op}(not H/W)`]);
      const value = n.op === 'PadV2' ? constOf(ins[2]!, n).data[0]! : 0;
      out = g.pad(x, { top: p[2]!, bottom: p[3]!, left: p[4]!, right: p[5]! }, base, value);
    } else if (n.op === 'AvgPool' || n.op === 'MaxPool') {
      out = g.pool(valueOf(ins[0]!), n.op === 'AvgPool' ? 'avg' : 'max', hw(ints(n.attr?.['ksize'])), hw(ints(n.attr?.['strides'])), padding(n), base);
    } else if (n.op === 'Mean') {
      const axes = Array.from(constOf(ins[1]!, n).data);
      out = g.mean(valueOf(ins[0]!), axes, n.attr?.['keep_dims']?.b === true, base);
    } else if (n.op === 'ConcatV2') {
      const axis = constOf(ins[ins.length - 1]!, n).data[0]!;
      out = g.concat(ins.slice(0, -1).map((i) => valueOf(i)), axis, base);
    } else if (n.op === 'Reshape') {
      out = g.reshape(valueOf(ins[0]!), Array.from(constOf(ins[1]!, n).data), base);
    } else {
      // Squeeze
      const x = valueOf(ins[0]!);
      let axes = ints(n.attr?.['squeeze_dims']);
      if (axes.length === 0) axes = x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
      out = g.dropAxes(x, axes, base);
    }
    values.set(n.name, out);
  }
  const last = values.get(target.name)!;
  if (isConst(last)) throw new Error(`node ${target.name} is a constant`);
  const output = g.vectorOutput(last, BOTTLENECK_NAME);
  return g.model([-1, opts.height, opts.width, 3], output, { 'retrain.input': INPUT_NAME, 'retrain.bottleneck_tensor': target.name });
}

function transpose2(data: Float32Array, shape: number[]): Float32Array {
  const [r, c] = shape as [number, number];
  const out = new Float32Array(data.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j]!;
  return out;
}
