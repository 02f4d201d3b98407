/**
 * .onnx modules (an ONNX ModelProto, e.g. a torchvision/timm or Keras backbone, or our
 * own converter's output) → Graph, from the image input to the one output.
 *
 * ONNX convolutions are NCHW; the Graph is NHWC. Each 4-D ONNX value is tracked with
 * whether it is channels-first (`cf`): then the Graph value is its NHWC permutation, and
 * its axes, constants and weights are remapped ([O, I, kh, kw] → [kh, kw, I, O]). The
 * layout transposes at the input (Transpose 0,3,1,2 of an NHWC input, or its inverse)
 * only flip `cf`. The Graph's input is the normalised image [-1, H, W, 3] whatever the
 * model's layout: the module's mean/std stay outside, as for TF.js modules. Only the
 * nodes the output depends on are read; their unknown ops are reported together.
 */
import { IrBuilder } from './build.js';
import { UnsupportedOpsError } from './errors.js';
import type { Activation, BinaryNode, Graph, Operand, Padding } from './ir.js';
import { transposeArray } from './tensor.js';
import type { ModelProto } from '../module/onnx/builder.js';
import { detectLayout } from '../module/onnx/signature.js';

type OnnxNode = NonNullable<NonNullable<ModelProto['graph']>['node']>[number];
type OnnxTensor = NonNullable<NonNullable<ModelProto['graph']>['initializer']>[number];
type OnnxAttr = NonNullable<OnnxNode['attribute']>[number];

const ACTIVATIONS: Record<string, Activation> = { Relu: 'relu', Sigmoid: 'sigmoid', Tanh: 'tanh', Elu: 'elu', LeakyRelu: 'leaky_relu', HardSigmoid: 'hard_sigmoid' };
const BINARY: Record<string, BinaryNode['op']> = { Add: 'add', Mul: 'mul', Sub: 'sub', Div: 'div', Max: 'maximum', Min: 'minimum' };
const OTHER = new Set([
  'Constant',
  'Identity',
  'Dropout',
  'Transpose',
  'Conv',
  'BatchNormalization',
  'Clip',
  'GlobalAveragePool',
  'ReduceMean',
  'AveragePool',
  'MaxPool',
  'Pad',
  'Concat',
  'Flatten',
  'Reshape',
  'Squeeze',
  'Gemm',
  'MatMul',
]);

/** Graph (NHWC) axis of each axis of a channels-first 4-D ONNX value. */
const NHWC_OF_NCHW = [0, 3, 1, 2];

export interface OnnxReadOptions {
  /** The image size the module runs at (fixed by the model, or chosen by the flags). */
  height: number;
  width: number;
}

/** A constant (int64/int32/double tensors as float32: shapes, axes and pads fit). */
interface Const {
  data: Float32Array;
  dims: number[];
}

/** An ONNX value: a Graph value (4-D: `cf` when the ONNX tensor is NCHW), or a constant. */
type Ref = { value: string; cf: boolean } | { constant: Const; name: string };

const num = (v: unknown): number => Number(v);

function tensorValues(t: OnnxTensor): Const {
  const dims = (t.dims ?? []).map(num);
  const size = dims.reduce((p, d) => p * d, 1);
  if (t.dataLocation === 1) throw new UnsupportedOpsError([`initializer ${t.name}(external data)`]);
  const raw = t.rawData && t.rawData.length ? t.rawData : undefined;
  const type = t.dataType ?? 1;
  let data: Float32Array;
  if (type === 1) {
    data = raw ? new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer) : Float32Array.from(t.floatData ?? []);
  } else if (type === 7) {
    data = raw ? Float32Array.from(new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer), Number) : Float32Array.from((t.int64Data ?? []).map(num));
  } else if (type === 6) {
    data = raw ? Float32Array.from(new Int32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer)) : Float32Array.from(t.int32Data ?? []);
  } else if (type === 11) {
    data = raw ? Float32Array.from(new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer)) : Float32Array.from(t.doubleData ?? []);
  } else throw new UnsupportedOpsError([`initializer ${t.name}(ONNX type ${type})`]);
  if (data.length !== size) throw new Error(`initializer ${t.name}: ${data.length} values for dims [${dims.join(',')}]`);
  return { data, dims };
}

function attrOf(n: OnnxNode, name: string): OnnxAttr | undefined {
  return (n.attribute ?? []).find((a) => a.name === name);
}
const intAttr = (n: OnnxNode, name: string, dflt: number): number => {
  const a = attrOf(n, name);
  return a && a.i !== undefined && a.i !== null ? num(a.i) : dflt;
};
const floatAttr = (n: OnnxNode, name: string, dflt: number): number => {
  const a = attrOf(n, name);
  return a && a.f !== undefined && a.f !== null ? a.f : dflt;
};
const intsAttr = (n: OnnxNode, name: string): number[] | undefined => {
  const a = attrOf(n, name);
  return a?.ints && a.ints.length ? a.ints.map(num) : undefined;
};
const strAttr = (n: OnnxNode, name: string): string | undefined => {
  const a = attrOf(n, name);
  return a?.s && a.s.length ? new TextDecoder().decode(a.s) : undefined;
};

/**
 * The .onnx model as a Graph: input `input` [-1, H, W, 3] (NHWC, normalised), output
 * [-1, D] (a [N, D, 1, 1] or [N, 1, 1, D] output is squeezed). Weights keep their
 * initializer names where the data is unchanged by the layout mapping.
 */
export function fromOnnx(model: ModelProto, opts: OnnxReadOptions): Graph {
  const graph = model.graph;
  if (!graph) throw new Error('the model has no graph');
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const inputs = (graph.input ?? []).filter((i) => !inits.has(i.name ?? ''));
  if (inputs.length !== 1) throw new Error(`the model has ${inputs.length} inputs; a module takes one image batch`);
  const outputs = graph.output ?? [];
  if (outputs.length !== 1) throw new Error(`the model has ${outputs.length} outputs; a module gives one bottleneck`);
  const inputName = inputs[0]!.name ?? '';
  const dims = (inputs[0]!.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue === undefined || d.dimValue === null || num(d.dimValue) <= 0 ? null : num(d.dimValue)));
  const layout = detectLayout(dims);
  if (layout !== 'NCHW' && layout !== 'NHWC') throw new Error(`the input ${inputName} ${layout}`);
  const inputCf = layout === 'NCHW';

  // The nodes the output depends on, in the model's (topological) order.
  const producer = new Map<string, OnnxNode>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) producer.set(o, n);
  const needed = new Set<OnnxNode>();
  const stack = [outputs[0]!.name ?? ''];
  const seen = new Set<string>();
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v) || v === '' || v === inputName || inits.has(v)) continue;
    seen.add(v);
    const n = producer.get(v);
    if (!n) throw new Error(`value ${v} has no producer in the graph`);
    needed.add(n);
    stack.push(...(n.input ?? []));
  }
  const order = (graph.node ?? []).filter((n) => needed.has(n));
  const bad = [...new Set(order.map((n) => n.opType ?? '').filter((op) => !(op in ACTIVATIONS || op in BINARY || OTHER.has(op))))];
  const domains = order.filter((n) => n.domain && n.domain !== 'ai.onnx').map((n) => `${n.domain}.${n.opType}`);
  if (bad.length || domains.length) throw new UnsupportedOpsError([...bad, ...domains]);

  const b = new IrBuilder();
  const refs = new Map<string, Ref>();
  const input = b.input('input', [-1, opts.height, opts.width, 3]);
  refs.set(inputName, { value: input, cf: inputCf });
  const weightNames = new Map<string, string>();
  const refOf = (name: string): Ref => {
    let r = refs.get(name);
    if (!r && inits.has(name)) refs.set(name, (r = { constant: tensorValues(inits.get(name)!), name }));
    if (!r) throw new Error(`value ${name} is missing`);
    return r;
  };
  const constOf = (name: string, n: OnnxNode): Const => {
    const r = refOf(name);
    if (!('constant' in r)) throw new UnsupportedOpsError([`${n.opType}(non-constant ${name})`]);
    return r.constant;
  };
  const optConst = (n: OnnxNode, k: number): Const | undefined => {
    const name = n.input?.[k];
    return name ? constOf(name, n) : undefined;
  };
  const valueOf = (name: string, n: OnnxNode): { value: string; cf: boolean } => {
    const r = refOf(name);
    if ('constant' in r) throw new UnsupportedOpsError([`${n.opType}(constant input ${name})`]);
    return r;
  };
  /** A weight holding the constant as it is (shared between readers). */
  const weightOf = (name: string, n: OnnxNode): string => {
    const c = constOf(name, n);
    let w = weightNames.get(name);
    if (w === undefined) weightNames.set(name, (w = b.weight(name, c.data, c.dims)));
    return w;
  };
  const rank = (v: string) => b.shapeOf(v).length;
  /** A channels-first 4-D value, as ONNX's image ops take it. */
  const image = (name: string, n: OnnxNode): string => {
    const v = valueOf(name, n);
    if (rank(v.value) !== 4 || !v.cf) throw new UnsupportedOpsError([`${n.opType}(input not NCHW)`]);
    return v.value;
  };
  const irAxis = (v: { value: string; cf: boolean }, a: number): number => {
    const r = rank(v.value);
    const x = a < 0 ? a + r : a;
    return r === 4 && v.cf ? NHWC_OF_NCHW[x]! : x;
  };
  /** Kernel window attributes → Graph padding. */
  const windowPadding = (n: OnnxNode): Padding => {
    const auto = strAttr(n, 'auto_pad') ?? 'NOTSET';
    if (auto === 'VALID') return 'VALID';
    if (auto === 'SAME_UPPER') return 'SAME';
    if (auto !== 'NOTSET') throw new UnsupportedOpsError([`${n.opType}(auto_pad=${auto})`]);
    const p = intsAttr(n, 'pads') ?? [0, 0, 0, 0];
    if (p.every((x) => x === 0)) return 'VALID';
    return { top: p[0]!, left: p[1]!, bottom: p[2]!, right: p[3]! };
  };
  const pair = (n: OnnxNode, name: string): [number, number] => {
    const v = intsAttr(n, name) ?? [1, 1];
    return [v[0]!, v[1]!];
  };
  /** A constant operand in the Graph's layout, against value `like`. */
  const operand = (name: string, n: OnnxNode, like: { value: string; cf: boolean } | undefined): Operand => {
    const r = refOf(name);
    if (!('constant' in r)) return { value: r.value };
    const c = r.constant;
    if (!like || !(rank(like.value) === 4 && like.cf) || c.dims.length === 0) return { weight: weightOf(name, n) };
    if (c.dims.length > 4) throw new UnsupportedOpsError([`${n.opType}(${c.dims.length}-D constant)`]);
    const d4 = [...Array<number>(4 - c.dims.length).fill(1), ...c.dims];
    const data = transposeArray(c.data, d4, [0, 2, 3, 1]);
    const shape = [d4[0]!, d4[2]!, d4[3]!, d4[1]!];
    while (shape.length > 1 && shape[0] === 1) shape.shift();
    return { weight: b.weight(name, data, shape) };
  };

  for (const n of order) {
    const op = n.opType ?? '';
    const ins = n.input ?? [];
    const name = n.output?.[0] ?? n.name ?? op;
    let ref: Ref;
    if (op === 'Constant') {
      const t = attrOf(n, 'value')?.t;
      if (!t) throw new UnsupportedOpsError(['Constant(not a tensor value)']);
      ref = { constant: tensorValues(t), name };
    } else if (op === 'Identity' || op === 'Dropout') ref = refOf(ins[0]!);
    else if (op === 'Transpose') {
      const v = valueOf(ins[0]!, n);
      const perm = (intsAttr(n, 'perm') ?? []).join(',');
      if (rank(v.value) === 4 && !v.cf && perm === '0,3,1,2') ref = { value: v.value, cf: true };
      else if (rank(v.value) === 4 && v.cf && perm === '0,2,3,1') ref = { value: v.value, cf: false };
      else throw new UnsupportedOpsError([`Transpose(perm=${perm})`]);
    } else if (op === 'Conv') {
      const x = image(ins[0]!, n);
      const w = constOf(ins[1]!, n);
      if (w.dims.length !== 4) throw new UnsupportedOpsError(['Conv(not 2-D)']);
      const [o, i, kh, kw] = w.dims as [number, number, number, number];
      const cin = b.shapeOf(x)[3]!;
      const group = intAttr(n, 'group', 1);
      // [O, I, kh, kw] → [kh, kw, I, O]; depthwise: O = cin·m, channel c·m + j is input c's j-th filter.
      const data = transposeArray(w.data, w.dims, [2, 3, 1, 0]);
      let conv: 'conv2d' | 'depthwise_conv2d';
      let shape: number[];
      if (group === 1) [conv, shape] = ['conv2d', [kh, kw, i, o]];
      else if (group === cin && i === 1 && o % cin === 0) [conv, shape] = ['depthwise_conv2d', [kh, kw, cin, o / cin]];
      else throw new UnsupportedOpsError([`Conv(group=${group})`]);
      ref = {
        value: b.add({
          op: conv,
          name,
          x,
          filter: b.weight(ins[1]!, data, shape),
          ...(ins[2] ? { bias: weightOf(ins[2], n) } : {}),
          strides: pair(n, 'strides'),
          dilations: pair(n, 'dilations'),
          padding: windowPadding(n),
          activation: 'linear',
        }),
        cf: true,
      };
    } else if (op === 'BatchNormalization') {
      const v = valueOf(ins[0]!, n);
      if (rank(v.value) === 4 && !v.cf) throw new UnsupportedOpsError(['BatchNormalization(input not NCHW)']);
      if (rank(v.value) !== 4 && rank(v.value) !== 2) throw new UnsupportedOpsError([`BatchNormalization(${rank(v.value)}-D)`]);
      const [scale, offset, mean, variance] = ins.slice(1, 5).map((i) => weightOf(i, n)) as [string, string, string, string];
      ref = { value: b.add({ op: 'batch_norm', name, x: v.value, scale, offset, mean, variance, epsilon: floatAttr(n, 'epsilon', 1e-5) }), cf: v.cf };
    } else if (op in ACTIVATIONS) {
      const v = valueOf(ins[0]!, n);
      const act = ACTIVATIONS[op]!;
      if (act === 'hard_sigmoid' && (floatAttr(n, 'alpha', 0.2) !== Math.fround(0.2) || floatAttr(n, 'beta', 0.5) !== 0.5)) throw new UnsupportedOpsError(['HardSigmoid(alpha, beta)']);
      const alpha = act === 'elu' ? floatAttr(n, 'alpha', 1) : act === 'leaky_relu' ? floatAttr(n, 'alpha', 0.01) : undefined;
      ref = { value: b.add({ op: 'activation', name, x: v.value, activation: act, ...(alpha !== undefined ? { alpha } : {}) }), cf: v.cf };
    } else if (op === 'Clip') {
      const v = valueOf(ins[0]!, n);
      const lo = optConst(n, 1)?.data[0] ?? floatAttr(n, 'min', -Infinity);
      const hi = optConst(n, 2)?.data[0] ?? floatAttr(n, 'max', Infinity);
      if (lo === 0 && (hi === 6 || hi === Infinity)) ref = { value: b.add({ op: 'activation', name, x: v.value, activation: hi === 6 ? 'relu6' : 'relu' }), cf: v.cf };
      else {
        let x = v.value;
        if (lo > -Infinity) x = b.add({ op: 'maximum', name: hi < Infinity ? `${name}/min` : name, a: { value: x }, b: { weight: b.weight(`${name}/min`, Float32Array.of(lo), []) }, activation: 'linear' });
        if (hi < Infinity) x = b.add({ op: 'minimum', name, a: { value: x }, b: { weight: b.weight(`${name}/max`, Float32Array.of(hi), []) }, activation: 'linear' });
        ref = { value: x, cf: v.cf };
      }
    } else if (op in BINARY) {
      const [ra, rb] = [refOf(ins[0]!), refOf(ins[1]!)];
      if ('constant' in ra && 'constant' in rb) throw new UnsupportedOpsError([`${op}(two constants)`]);
      const va = 'value' in ra ? ra : undefined;
      const vb = 'value' in rb ? rb : undefined;
      if (va && vb && (rank(va.value) === 4 || rank(vb.value) === 4) && !(rank(va.value) === rank(vb.value) && va.cf === vb.cf)) throw new UnsupportedOpsError([`${op}(mixed layouts)`]);
      const like = va ?? vb!;
      ref = { value: b.add({ op: BINARY[op]!, name, a: operand(ins[0]!, n, like), b: operand(ins[1]!, n, like), activation: 'linear' }), cf: like.cf };
    } else if (op === 'GlobalAveragePool') {
      ref = { value: b.add({ op: 'mean', name, x: image(ins[0]!, n), axes: [1, 2], keepDims: true }), cf: true };
    } else if (op === 'ReduceMean') {
      const v = valueOf(ins[0]!, n);
      const r = rank(v.value);
      const axes = (optConst(n, 1) ? Array.from(optConst(n, 1)!.data) : intsAttr(n, 'axes')) ?? [...Array(r).keys()];
      const keep = intAttr(n, 'keepdims', 1) === 1;
      const ir = axes.map((a) => irAxis(v, a)).sort();
      if (!keep && r === 4 && v.cf && r - ir.length > 2) throw new UnsupportedOpsError(['ReduceMean(of one NCHW axis)']);
      ref = { value: b.add({ op: 'mean', name, x: v.value, axes: ir, keepDims: keep }), cf: keep && v.cf };
    } else if (op === 'AveragePool' || op === 'MaxPool') {
      const x = image(ins[0]!, n);
      if (intAttr(n, 'ceil_mode', 0) !== 0) throw new UnsupportedOpsError([`${op}(ceil_mode)`]);
      if ((intsAttr(n, 'dilations') ?? [1, 1]).some((d) => d !== 1)) throw new UnsupportedOpsError([`${op}(dilations)`]);
      const padding = windowPadding(n);
      // The Graph's average pool counts the window's real pixels only (TF's).
      if (op === 'AveragePool' && typeof padding === 'object' && intAttr(n, 'count_include_pad', 0) !== 0) throw new UnsupportedOpsError(['AveragePool(count_include_pad)']);
      const k = intsAttr(n, 'kernel_shape')!;
      let input = x;
      let pads = padding;
      // torchvision's max pool after a ReLU (pads 1, not TF's SAME): zero padding is exact there, and TFLite has no explicit pool padding.
      const prev = b.nodes.find((v) => v.name === x);
      if (op === 'MaxPool' && typeof padding === 'object' && prev && 'activation' in prev && (prev.activation === 'relu' || prev.activation === 'relu6')) {
        input = b.add({ op: 'pad', name: `${name}/pad`, x, pads: padding, value: 0 });
        pads = 'VALID';
      }
      ref = { value: b.add({ op: op === 'AveragePool' ? 'avg_pool' : 'max_pool', name, x: input, ksize: [k[0]!, k[1]!], strides: pair(n, 'strides'), padding: pads }), cf: true };
    } else if (op === 'Pad') {
      const v = valueOf(ins[0]!, n);
      const mode = strAttr(n, 'mode') ?? 'constant';
      if (mode !== 'constant') throw new UnsupportedOpsError([`Pad(mode=${mode})`]);
      if (ins[3]) throw new UnsupportedOpsError(['Pad(axes)']);
      const p = optConst(n, 1) ? Array.from(optConst(n, 1)!.data) : (intsAttr(n, 'pads') ?? []);
      const value = optConst(n, 2)?.data[0] ?? floatAttr(n, 'value', 0);
      if (rank(v.value) !== 4 || p.length !== 8) throw new UnsupportedOpsError(['Pad(not 4-D)']);
      const [h, w] = v.cf ? [2, 3] : [1, 2];
      if (p.some((x, i) => x !== 0 && i % 4 !== h && i % 4 !== w)) throw new UnsupportedOpsError(['Pad(not H/W)']);
      ref = { value: b.add({ op: 'pad', name, x: v.value, pads: { top: p[h]!, bottom: p[h + 4]!, left: p[w]!, right: p[w + 4]! }, value }), cf: v.cf };
    } else if (op === 'Concat') {
      const vs = ins.map((i) => valueOf(i, n));
      if (vs.some((v) => v.cf !== vs[0]!.cf && rank(v.value) === 4)) throw new UnsupportedOpsError(['Concat(mixed layouts)']);
      ref = { value: b.add({ op: 'concat', name, xs: vs.map((v) => v.value), axis: irAxis(vs[0]!, intAttr(n, 'axis', 0)) }), cf: vs[0]!.cf };
    } else if (op === 'Flatten' || op === 'Reshape' || op === 'Squeeze') {
      const v = valueOf(ins[0]!, n);
      const s = b.shapeOf(v.value);
      const r = s.length;
      // The value's ONNX shape, batch first.
      const onnxShape = r === 4 && v.cf ? [s[0]!, s[3]!, s[1]!, s[2]!] : s;
      let target: number[];
      if (op === 'Flatten') {
        if (intAttr(n, 'axis', 1) !== 1) throw new UnsupportedOpsError(['Flatten(axis)']);
        target = [-1, onnxShape.slice(1).reduce((p, d) => p * d, 1)];
      } else if (op === 'Squeeze') {
        const given = optConst(n, 1) ? Array.from(optConst(n, 1)!.data) : intsAttr(n, 'axes');
        const axes = (given ?? onnxShape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((a) => (a < 0 ? a + r : a));
        target = onnxShape.filter((_, i) => !axes.includes(i));
        target[0] = -1;
      } else {
        const t = Array.from(constOf(ins[1]!, n).data).map((d, i) => (d === 0 ? onnxShape[i]! : d));
        if (t[0] !== -1 && t[0] !== onnxShape[0] && !(onnxShape[0] === -1 && t[0] === 1)) throw new UnsupportedOpsError(['Reshape(mixes the batch)']);
        const per = onnxShape.slice(1).reduce((p, d) => p * d, 1);
        const rest = t.slice(1);
        const known = rest.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
        target = [-1, ...rest.map((d) => (d === -1 ? per / known : d))];
      }
      // NCHW order differs from NHWC unless the channels or the pixels are one.
      const orderKept = !(r === 4 && v.cf) || s[3] === 1 || s[1]! * s[2]! === 1;
      if (target.length === 2 && orderKept) ref = { value: b.add({ op: 'reshape', name, x: v.value, target }), cf: false };
      else if (target.length === 4 && r === 2 && target[2] === 1 && target[3] === 1) ref = { value: b.add({ op: 'reshape', name, x: v.value, target: [-1, 1, 1, target[1]!] }), cf: true };
      else if (target.length === 4 && r === 2 && target[1] === 1 && target[2] === 1) ref = { value: b.add({ op: 'reshape', name, x: v.value, target: [-1, 1, 1, target[3]!] }), cf: false };
      else throw new UnsupportedOpsError([`${op}([${onnxShape.join(',')}] to [${target.join(',')}])`]);
    } else if (op === 'Gemm' || op === 'MatMul') {
      const v = valueOf(ins[0]!, n);
      if (rank(v.value) !== 2) throw new UnsupportedOpsError([`${op}(${rank(v.value)}-D input)`]);
      if (op === 'Gemm' && intAttr(n, 'transA', 0) !== 0) throw new UnsupportedOpsError(['Gemm(transA)']);
      const w = constOf(ins[1]!, n);
      if (w.dims.length !== 2) throw new UnsupportedOpsError([`${op}(${w.dims.length}-D weights)`]);
      const transB = op === 'Gemm' && intAttr(n, 'transB', 0) !== 0;
      const alpha = op === 'Gemm' ? floatAttr(n, 'alpha', 1) : 1;
      const beta = op === 'Gemm' ? floatAttr(n, 'beta', 1) : 1;
      const [k, out] = transB ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
      const kernel = transB || alpha !== 1 ? b.weight(ins[1]!, transB ? transposeArray(w.data, w.dims, [1, 0]).map((x) => x * alpha) : w.data.map((x) => x * alpha), [k, out]) : weightOf(ins[1]!, n);
      let bias: string | undefined;
      if (op === 'Gemm' && ins[2]) {
        const c = constOf(ins[2], n);
        if (c.data.length !== out) throw new UnsupportedOpsError([`Gemm(bias of ${c.data.length} for ${out} outputs)`]);
        bias = beta === 1 && c.dims.length === 1 ? weightOf(ins[2], n) : b.weight(ins[2], c.data.map((x) => x * beta), [out]);
      }
      ref = { value: b.add({ op: 'dense', name, x: v.value, kernel, ...(bias ? { bias } : {}), activation: 'linear' }), cf: false };
    } else throw new UnsupportedOpsError([op]);
    refs.set(name, ref);
  }
  const last = refOf(outputs[0]!.name ?? '');
  if ('constant' in last) throw new Error(`the output ${outputs[0]!.name} is a constant`);
  let output = last.value;
  const s = b.shapeOf(output);
  if (s.length === 4) {
    if (s[1] !== 1 || s[2] !== 1) throw new Error(`the output has shape [${s.join(',')}], not a feature vector`);
    output = b.add({ op: 'squeeze', name: `${output}/squeeze`, x: output, axes: [1, 2] });
  } else if (s.length !== 2) throw new Error(`the output has shape [${s.join(',')}], not a feature vector`);
  return b.graph(input, output);
}
