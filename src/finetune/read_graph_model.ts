/**
 * A TF.js graph model (GraphDef-style model.json) as an ir.ts Graph, for fine-tuning:
 * one IR node per TF node the bottleneck depends on, Consts as named weights (their
 * TF names, so updated values go back into the model's weights by name).
 *
 * Fine-tuning's own minimal reader; the shared readers (src/graph/from_*.ts) replace it
 * when they land. Shapes are filled by running the graph once (executor.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import type { Activation, Graph, Node, Operand, Padding } from '../graph/ir.js';

interface AttrValue {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  list?: { i?: Array<string | number>; s?: string[] };
}

export interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, AttrValue>;
}

const ACTIVATIONS: Record<string, Activation> = { Relu: 'relu', Relu6: 'relu6', Sigmoid: 'sigmoid', Tanh: 'tanh', Elu: 'elu', LeakyRelu: 'leaky_relu', Softmax: 'softmax' };
const BINARY: Record<string, 'add' | 'mul' | 'sub' | 'div' | 'maximum' | 'minimum'> = {
  Add: 'add',
  AddV2: 'add',
  BiasAdd: 'add',
  Mul: 'mul',
  Sub: 'sub',
  RealDiv: 'div',
  Maximum: 'maximum',
  Minimum: 'minimum',
};

const str = (a: AttrValue | undefined): string | undefined => (a?.s === undefined ? undefined : Buffer.from(a.s, 'base64').toString('utf8'));
const ints = (a: AttrValue | undefined): number[] => (a?.list?.i ?? []).map(Number);
const fusedOps = (n: TfNode): string[] => (n.attr?.['fused_ops']?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));
const dataInputs = (n: TfNode): string[] => (n.input ?? []).filter((i) => !i.startsWith('^')).map((i) => i.replace(/:0$/, ''));
const hw = (list: number[]): [number, number] => (list.length === 4 ? [list[1]!, list[2]!] : [1, 1]);

/** The nodes `output` depends on, inputs first. */
function dependencies(nodes: Map<string, TfNode>, output: string): TfNode[] {
  const target = nodes.get(output);
  if (!target) throw new UsageError(`node ${output} is not in the module's graph`);
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
      const m = nodes.get(i);
      if (!m) throw new UsageError(`--fine_tune_layers: node ${n.name} reads ${i}, which this reader does not follow`);
      stack.push([m, false]);
    }
  }
  return order;
}

/** The graph from the input Placeholder to `outputNode`; shapes are [] until executor.inferShapes fills them. */
export function readGraphModel(artifacts: tf.io.ModelArtifacts, outputNode: string): Graph {
  const topo = artifacts.modelTopology as { node?: TfNode[] };
  const all = new Map((topo.node ?? []).map((n) => [n.name, n]));
  const order = dependencies(all, outputNode.replace(/:0$/, ''));
  const decoded = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs ?? []);
  const weights: Graph['weights'] = new Map();
  const consts = new Map<string, Float32Array>();
  const nodes: Node[] = [];
  const alias = new Map<string, string>();
  const ref = (name: string) => alias.get(name) ?? name;
  let input: string | undefined;
  const weightOf = (name: string, n: TfNode): string => {
    if (!consts.has(name)) throw new UsageError(`--fine_tune_layers: ${n.op} node ${n.name} takes a computed ${name} where a constant was expected`);
    return name;
  };
  const constData = (name: string, n: TfNode): Float32Array => consts.get(weightOf(name, n))!;
  const padding = (n: TfNode): Padding => {
    const p = str(n.attr?.['padding']);
    if (p === 'SAME' || p === 'VALID') return p;
    if (p === 'EXPLICIT') {
      const e = ints(n.attr?.['explicit_paddings']);
      return { top: e[2] ?? 0, bottom: e[3] ?? 0, left: e[4] ?? 0, right: e[5] ?? 0 };
    }
    throw new UsageError(`--fine_tune_layers: ${n.op} node ${n.name} has padding ${p}`);
  };
  const fusedActivation = (n: TfNode): { activation: Activation; alpha?: number } => {
    const f = fusedOps(n);
    if (f.length === 0) return { activation: 'linear' };
    if (f[0] !== 'BiasAdd' || f.length > 2 || (f[1] !== undefined && !(f[1] in ACTIVATIONS))) throw new UsageError(`--fine_tune_layers: ${n.op}(${f.join(',')}) in node ${n.name} is not covered`);
    return { activation: f[1] ? ACTIVATIONS[f[1]]! : 'linear', alpha: n.attr?.['leakyrelu_alpha']?.f };
  };
  for (const n of order) {
    const ins = dataInputs(n).map(ref);
    const base = { name: n.name, shape: [] as number[] };
    const fmt = str(n.attr?.['data_format']);
    if (fmt !== undefined && fmt !== 'NHWC') throw new UsageError(`--fine_tune_layers: node ${n.name} is ${fmt}, only NHWC is covered`);
    if (n.op === 'Placeholder') {
      if (input) throw new UsageError('--fine_tune_layers: the bottleneck depends on more than one input');
      input = n.name;
      nodes.push({ ...base, op: 'input' });
    } else if (n.op === 'Const') {
      const t = decoded[n.name];
      if (!t) throw new UsageError(`--fine_tune_layers: constant ${n.name} has no value in the weights manifest`);
      const data = Float32Array.from(t.dataSync() as ArrayLike<number>);
      consts.set(n.name, data);
      weights.set(n.name, { data, shape: t.shape });
    } else if (n.op === 'Identity' || n.op === 'StopGradient') alias.set(n.name, ins[0]!);
    else if (n.op === 'Conv2D' || n.op === '_FusedConv2D' || n.op === 'DepthwiseConv2dNative' || n.op === 'FusedDepthwiseConv2dNative') {
      const fused = fusedOps(n);
      nodes.push({
        ...base,
        op: n.op.includes('Depthwise') ? 'depthwise_conv2d' : 'conv2d',
        x: ins[0]!,
        filter: weightOf(ins[1]!, n),
        ...(fused.length && { bias: weightOf(ins[2]!, n) }),
        strides: hw(ints(n.attr?.['strides'])),
        dilations: hw(ints(n.attr?.['dilations'])),
        padding: padding(n),
        ...fusedActivation(n),
      });
    } else if (n.op === 'MatMul' || n.op === '_FusedMatMul') {
      if (n.attr?.['transpose_a']?.b || n.attr?.['transpose_b']?.b) throw new UsageError(`--fine_tune_layers: transposed MatMul ${n.name} is not covered`);
      const fused = fusedOps(n);
      nodes.push({ ...base, op: 'dense', x: ins[0]!, kernel: weightOf(ins[1]!, n), ...(fused.length && { bias: weightOf(ins[2]!, n) }), ...fusedActivation(n) });
    } else if (n.op in BINARY) {
      const operand = (i: string): Operand => (consts.has(i) ? { weight: i } : { value: i });
      nodes.push({ ...base, op: BINARY[n.op]!, a: operand(ins[0]!), b: operand(ins[1]!), activation: 'linear' });
    } else if (n.op in ACTIVATIONS) {
      nodes.push({ ...base, op: 'activation', x: ins[0]!, activation: ACTIVATIONS[n.op]!, alpha: n.attr?.['alpha']?.f });
    } else if (n.op.startsWith('FusedBatchNorm')) {
      const [scale, offset, mean, variance] = ins.slice(1, 5).map((i) => weightOf(i, n)) as [string, string, string, string];
      nodes.push({ ...base, op: 'batch_norm', x: ins[0]!, scale, offset, mean, variance, epsilon: n.attr?.['epsilon']?.f ?? 1e-3 });
    } else if (n.op === 'Pad' || n.op === 'PadV2') {
      const p = constData(ins[1]!, n);
      if (p[0] || p[1] || p[6] || p[7]) throw new UsageError(`--fine_tune_layers: Pad ${n.name} pads more than H and W`);
      nodes.push({ ...base, op: 'pad', x: ins[0]!, pads: { top: p[2]!, bottom: p[3]!, left: p[4]!, right: p[5]! }, value: n.op === 'PadV2' ? constData(ins[2]!, n)[0]! : 0 });
    } else if (n.op === 'AvgPool' || n.op === 'MaxPool') {
      nodes.push({ ...base, op: n.op === 'AvgPool' ? 'avg_pool' : 'max_pool', x: ins[0]!, ksize: hw(ints(n.attr?.['ksize'])), strides: hw(ints(n.attr?.['strides'])), padding: padding(n) });
    } else if (n.op === 'Mean') {
      nodes.push({ ...base, op: 'mean', x: ins[0]!, axes: Array.from(constData(ins[1]!, n)), keepDims: n.attr?.['keep_dims']?.b === true });
    } else if (n.op === 'ConcatV2') {
      nodes.push({ ...base, op: 'concat', xs: ins.slice(0, -1), axis: constData(ins[ins.length - 1]!, n)[0]! });
    } else if (n.op === 'Reshape') {
      nodes.push({ ...base, op: 'reshape', x: ins[0]!, target: Array.from(constData(ins[1]!, n)) });
    } else if (n.op === 'Squeeze') {
      nodes.push({ ...base, op: 'squeeze', x: ins[0]!, axes: ints(n.attr?.['squeeze_dims']) });
    } else throw new UsageError(`--fine_tune_layers: op ${n.op} (node ${n.name}) is not covered by fine-tuning's graph reader`);
  }
  for (const t of Object.values(decoded)) t.dispose();
  if (!input) throw new UsageError('--fine_tune_layers: the bottleneck depends on no input');
  // Constants used only as shapes or axes are not weights.
  const used = new Set(nodes.flatMap(weightNames));
  for (const k of [...weights.keys()]) if (!used.has(k)) weights.delete(k);
  return { nodes, input, output: ref(outputNode.replace(/:0$/, '')), weights };
}

/** The weights a node reads. */
export function weightNames(n: Node): string[] {
  switch (n.op) {
    case 'conv2d':
    case 'depthwise_conv2d':
      return [n.filter, ...(n.bias ? [n.bias] : [])];
    case 'dense':
      return [n.kernel, ...(n.bias ? [n.bias] : [])];
    case 'batch_norm':
      return [n.scale, n.offset, n.mean, n.variance];
    case 'add':
    case 'mul':
    case 'sub':
    case 'div':
    case 'maximum':
    case 'minimum':
      return [n.a, n.b].flatMap((o) => ('weight' in o ? [o.weight] : []));
    default:
      return [];
  }
}

/** The values a node reads. */
export function valueInputs(n: Node): string[] {
  switch (n.op) {
    case 'input':
      return [];
    case 'concat':
      return n.xs;
    case 'add':
    case 'mul':
    case 'sub':
    case 'div':
    case 'maximum':
    case 'minimum':
      return [n.a, n.b].flatMap((o) => ('value' in o ? [o.value] : []));
    default:
      return [n.x];
  }
}
