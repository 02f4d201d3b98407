/**
 * TF.js graph models (model.json with a GraphDef-style `modelTopology.node`) → Graph,
 * from the input Placeholder to the bottleneck node. Only the nodes the bottleneck
 * depends on are read; their unknown ops are reported together, before anything is built.
 */
import * as tf from '@tensorflow/tfjs';
import { IrBuilder } from './build.js';
import { UnsupportedOpsError } from './errors.js';
import type { Activation, BinaryNode, Graph, Operand, Padding } from './ir.js';

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
const BINARY: Record<string, BinaryNode['op']> = {
  Add: 'add',
  AddV2: 'add',
  BiasAdd: 'add',
  Mul: 'mul',
  Sub: 'sub',
  RealDiv: 'div',
  Maximum: 'maximum',
  Minimum: 'minimum',
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

/** Why a node can't be read, or undefined when it can. */
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

export interface TfjsGraphReadOptions {
  /** Node whose output is the graph's output (the bottleneck). */
  outputNode: string;
  height: number;
  width: number;
}

/**
 * The nodes `outputNode` depends on as a Graph: input `input` [-1, H, W, 3], output the
 * node's value. Weights keep the names of the TF constants they come from.
 */
export function fromTfjsGraph(artifacts: tf.io.ModelArtifacts, opts: TfjsGraphReadOptions): Graph {
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

  const consts = decodeConsts(artifacts);
  const b = new IrBuilder();
  /** A TF node's value: a graph value, or a constant (a weight once a node reads it). */
  type Ref = { value: string } | { constant: string };
  const refs = new Map<string, Ref>();
  const weightNames = new Map<string, string>();
  const constOf = (name: string, n: TfNode): Const => {
    const r = refs.get(name);
    if (!r || !('constant' in r)) throw new UnsupportedOpsError([`${n.op}(non-constant ${name})`]);
    return consts.get(r.constant)!;
  };
  const weightOf = (name: string, n: TfNode, data?: (c: Const) => Const): string => {
    const c = constOf(name, n);
    const r = refs.get(name) as { constant: string };
    if (data) {
      const d = data(c);
      return b.weight(r.constant, d.data, d.shape);
    }
    let w = weightNames.get(r.constant);
    if (w === undefined) weightNames.set(r.constant, (w = b.weight(r.constant, c.data, c.shape)));
    return w;
  };
  const valueOf = (name: string, n: TfNode): string => {
    const r = refs.get(name);
    if (r === undefined) throw new Error(`value ${name} is missing`);
    if ('constant' in r) throw new UnsupportedOpsError([`${n.op}(constant input ${name})`]);
    return r.value;
  };
  const operand = (name: string, n: TfNode): Operand => {
    const r = refs.get(name)!;
    return 'value' in r ? r : { weight: weightOf(name, n) };
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
  const alphaOf = (n: TfNode, key: string): number | undefined => n.attr?.[key]?.f;

  let input = '';
  for (const n of order) {
    const ins = dataInputs(n);
    const name = n.name;
    let ref: Ref;
    if (n.op === 'Placeholder') ref = { value: (input = b.input(name, [-1, opts.height, opts.width, 3])) };
    else if (n.op === 'Const') {
      if (!consts.has(n.name)) throw new Error(`constant ${n.name} has no value in the weights manifest`);
      ref = { constant: n.name };
    } else if (n.op === 'Identity' || n.op === 'StopGradient') ref = refs.get(ins[0]!)!;
    else if (CONV.has(n.op)) {
      const fused = fusedOps(n);
      const act = fused[1] ? ACTIVATIONS[fused[1]]! : 'linear';
      const alpha = alphaOf(n, 'leakyrelu_alpha');
      ref = {
        value: b.add({
          op: n.op.includes('Depthwise') ? 'depthwise_conv2d' : 'conv2d',
          name,
          x: valueOf(ins[0]!, n),
          filter: weightOf(ins[1]!, n),
          ...(fused.length ? { bias: weightOf(ins[2]!, n) } : {}),
          strides: hw(ints(n.attr?.['strides'])),
          dilations: hw(ints(n.attr?.['dilations'])),
          padding: padding(n),
          activation: act,
          ...(alpha !== undefined && act === 'leaky_relu' ? { alpha } : {}),
        }),
      };
    } else if (n.op === 'MatMul' || n.op === '_FusedMatMul') {
      const tb = n.attr?.['transpose_b']?.b === true;
      const kernel = weightOf(ins[1]!, n, tb ? (c) => ({ data: transpose2(c.data, c.shape), shape: [c.shape[1]!, c.shape[0]!] }) : undefined);
      const fused = fusedOps(n);
      const act = fused[1] ? ACTIVATIONS[fused[1]]! : 'linear';
      const alpha = alphaOf(n, 'leakyrelu_alpha');
      ref = {
        value: b.add({
          op: 'dense',
          name,
          x: valueOf(ins[0]!, n),
          kernel,
          ...(fused[0] === 'BiasAdd' ? { bias: weightOf(ins[2]!, n) } : {}),
          activation: act,
          ...(alpha !== undefined && act === 'leaky_relu' ? { alpha } : {}),
        }),
      };
    } else if (n.op in BINARY) {
      const [x, y] = [refs.get(ins[0]!)!, refs.get(ins[1]!)!];
      if ('constant' in x && 'constant' in y) throw new UnsupportedOpsError([`${n.op}(two constants)`]);
      ref = { value: b.add({ op: BINARY[n.op]!, name, a: operand(ins[0]!, n), b: operand(ins[1]!, n), activation: 'linear' }) };
    } else if (n.op in ACTIVATIONS) {
      const alpha = alphaOf(n, 'alpha');
      ref = { value: b.add({ op: 'activation', name, x: valueOf(ins[0]!, n), activation: ACTIVATIONS[n.op]!, ...(alpha !== undefined ? { alpha } : {}) }) };
    } else if (n.op.startsWith('FusedBatchNorm')) {
      const [scale, offset, mean, variance] = ins.slice(1, 5).map((i) => weightOf(i, n)) as [string, string, string, string];
      ref = { value: b.add({ op: 'batch_norm', name, x: valueOf(ins[0]!, n), scale, offset, mean, variance, epsilon: n.attr?.['epsilon']?.f ?? 1e-3 }) };
    } else if (n.op === 'Pad' || n.op === 'PadV2') {
      const p = constOf(ins[1]!, n).data;
      const x = valueOf(ins[0]!, n);
      if (b.shapeOf(x).length !== 4 || p[0] || p[1] || p[6] || p[7]) throw new UnsupportedOpsError([`${n.op}(not H/W)`]);
      const value = n.op === 'PadV2' ? constOf(ins[2]!, n).data[0]! : 0;
      ref = { value: b.add({ op: 'pad', name, x, pads: { top: p[2]!, bottom: p[3]!, left: p[4]!, right: p[5]! }, value }) };
    } else if (n.op === 'AvgPool' || n.op === 'MaxPool') {
      ref = {
        value: b.add({ op: n.op === 'AvgPool' ? 'avg_pool' : 'max_pool', name, x: valueOf(ins[0]!, n), ksize: hw(ints(n.attr?.['ksize'])), strides: hw(ints(n.attr?.['strides'])), padding: padding(n) }),
      };
    } else if (n.op === 'Mean') {
      const axes = Array.from(constOf(ins[1]!, n).data);
      ref = { value: b.add({ op: 'mean', name, x: valueOf(ins[0]!, n), axes, keepDims: n.attr?.['keep_dims']?.b === true }) };
    } else if (n.op === 'ConcatV2') {
      const axis = constOf(ins[ins.length - 1]!, n).data[0]!;
      ref = { value: b.add({ op: 'concat', name, xs: ins.slice(0, -1).map((i) => valueOf(i, n)), axis }) };
    } else if (n.op === 'Reshape') {
      ref = { value: b.add({ op: 'reshape', name, x: valueOf(ins[0]!, n), target: Array.from(constOf(ins[1]!, n).data) }) };
    } else {
      // Squeeze
      const x = valueOf(ins[0]!, n);
      let axes = ints(n.attr?.['squeeze_dims']);
      if (axes.length === 0) axes = b.shapeOf(x).map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
      ref = { value: b.add({ op: 'squeeze', name, x, axes }) };
    }
    refs.set(n.name, ref);
  }
  const last = refs.get(target.name)!;
  if ('constant' in last) throw new Error(`node ${target.name} is a constant`);
  return b.graph(input, last.value);
}

function transpose2(data: Float32Array, shape: number[]): Float32Array {
  const [r, c] = shape as [number, number];
  const out = new Float32Array(data.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j]!;
  return out;
}
