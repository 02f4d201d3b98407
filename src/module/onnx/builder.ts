/**
 * An ONNX graph under construction, with the image ops both converters share.
 * TF.js modules are NHWC; ONNX Runtime's conv kernels are NCHW. A 4-D image value
 * is kept NCHW inside the graph (one Transpose at the input), and every Value
 * carries its logical (TensorFlow, NHWC) shape, so TF axes and shapes map in one place.
 */
import onnxProto from 'onnx-proto';
import { UnsupportedOpsError } from './errors.js';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;

/** Opset 14: Squeeze/Pad/Clip take their parameters as inputs, ReduceMean still as attributes. */
export const OPSET = 14;
/** IR version of onnx 1.10, the schema onnx-proto carries. */
export const IR_VERSION = 8;

export const INPUT_NAME = 'input';
export const BOTTLENECK_NAME = 'bottleneck';

const FLOAT = 1;
const INT64 = 7;

/** A value in the graph: its ONNX name and TF-logical shape (-1 = batch or unknown). */
export interface Value {
  name: string;
  shape: number[];
  /** 4-D value stored NCHW (its `shape` is still NHWC). */
  nchw: boolean;
}

export type Attr = { i: number } | { f: number } | { ints: number[] } | { floats: number[] } | { s: string };

/** Physical position of each logical NHWC axis in an NCHW tensor. */
const NCHW_OF_NHWC = [0, 2, 3, 1];

import type { Activation, Padding } from '../../graph/ir.js';
import { outSize, samePads } from '../../graph/shape.js';
import { transposeArray as transpose } from '../../graph/tensor.js';

export type { Activation, Padding };
export { transpose };

export interface ConvSpec {
  /** TF layout: [kh, kw, cin, cout] (conv) or [kh, kw, cin, multiplier] (depthwise). */
  kernel: Float32Array;
  kernelShape: number[];
  depthwise: boolean;
  strides: [number, number];
  dilations: [number, number];
  padding: Padding;
  bias?: Float32Array;
}

function attribute(name: string, a: Attr): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('i' in a) return { name, type: T.INT, i: a.i };
  if ('f' in a) return { name, type: T.FLOAT, f: a.f };
  if ('ints' in a) return { name, type: T.INTS, ints: a.ints };
  if ('floats' in a) return { name, type: T.FLOATS, floats: a.floats };
  return { name, type: T.STRING, s: new TextEncoder().encode(a.s) };
}

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly names = new Set<string>();

  /** Marks names an existing graph already uses. */
  reserve(names: Iterable<string>): void {
    for (const n of names) this.names.add(n);
  }

  /** An ONNX name not used yet, derived from a TF node or layer name. */
  unique(base: string): string {
    const clean = base.replace(/:0$/, '') || 'v';
    let name = clean;
    for (let k = 1; this.names.has(name); k++) name = `${clean}_${k}`;
    this.names.add(name);
    return name;
  }

  floatConst(base: string, data: Float32Array, dims: number[]): string {
    const name = this.unique(base);
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push({ name, dataType: FLOAT, dims, rawData: raw.slice() });
    return name;
  }

  int64Const(base: string, data: number[], dims: number[] = [data.length]): string {
    const name = this.unique(base);
    this.initializers.push({ name, dataType: INT64, dims, int64Data: data });
    return name;
  }

  node(op: string, inputs: string[], base: string, attrs: Record<string, Attr> = {}): string {
    const out = this.unique(base);
    this.nodes.push({
      opType: op,
      input: inputs,
      output: [out],
      name: out,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return out;
  }

  /** The value as NHWC (plain TF layout). */
  plain(x: Value): Value {
    if (!x.nchw) return x;
    return { name: this.node('Transpose', [x.name], `${x.name}/nhwc`, { perm: { ints: [0, 2, 3, 1] } }), shape: x.shape, nchw: false };
  }

  /** A plain 4-D value as NCHW. */
  nchw(x: Value): Value {
    if (x.nchw || x.shape.length !== 4) return x;
    return { name: this.node('Transpose', [x.name], `${x.name}/nchw`, { perm: { ints: [0, 3, 1, 2] } }), shape: x.shape, nchw: true };
  }

  /** The physical axis of logical axis `a` (negative counts from the end). */
  axis(x: Value, a: number): number {
    const r = x.shape.length;
    const logical = a < 0 ? a + r : a;
    return x.nchw ? NCHW_OF_NHWC[logical]! : logical;
  }

  /** A constant to combine element-wise with `like`, reshaped to broadcast against its physical layout. */
  broadcastConst(base: string, data: Float32Array, shape: number[], like: Value): string {
    if (!like.nchw || shape.length === 0 || shape.every((d) => d === 1)) return this.floatConst(base, data, shape);
    if (shape.length === 1) return this.floatConst(base, data, [shape[0]!, 1, 1]);
    if (shape.length === 4) return this.floatConst(base, transpose(data, shape, [0, 3, 1, 2]), [shape[0]!, shape[3]!, shape[1]!, shape[2]!]);
    // [H, W, C] against NHWC logical: as [C, H, W].
    if (shape.length === 3) return this.floatConst(base, transpose(data, shape, [2, 0, 1]), [shape[2]!, shape[0]!, shape[1]!]);
    return this.floatConst(base, transpose(data, shape, [1, 0]), [shape[1]!, 1, shape[0]!]);
  }

  conv(x: Value, spec: ConvSpec, base: string): Value {
    const v = this.nchw(x);
    const [n, h, w, cin] = v.shape as [number, number, number, number];
    const [kh, kw, kin, kout] = spec.kernelShape as [number, number, number, number];
    const [sh, sw] = spec.strides;
    const [dh, dw] = spec.dilations;
    let pads: [number, number, number, number];
    if (spec.padding === 'VALID') pads = [0, 0, 0, 0];
    else if (spec.padding === 'SAME') {
      const [t, b] = samePads(h, kh, sh, dh);
      const [l, r] = samePads(w, kw, sw, dw);
      pads = [t, l, b, r];
    } else pads = [spec.padding.top, spec.padding.left, spec.padding.bottom, spec.padding.right];
    let weights: Float32Array;
    let wShape: number[];
    let group = 1;
    let cout: number;
    if (spec.depthwise) {
      // [kh, kw, cin, m] → [cin*m, 1, kh, kw]; TF's output channel c*m + j is input c's j-th filter.
      weights = transpose(spec.kernel, spec.kernelShape, [2, 3, 0, 1]);
      cout = kin * kout;
      wShape = [cout, 1, kh, kw];
      group = cin;
    } else {
      weights = transpose(spec.kernel, spec.kernelShape, [3, 2, 0, 1]);
      cout = kout;
      wShape = [kout, kin, kh, kw];
      group = cin / kin;
    }
    const inputs = [v.name, this.floatConst(`${base}/weights`, weights, wShape)];
    if (spec.bias) inputs.push(this.floatConst(`${base}/bias`, spec.bias, [cout]));
    const name = this.node('Conv', inputs, base, {
      kernel_shape: { ints: [kh, kw] },
      strides: { ints: [sh, sw] },
      dilations: { ints: [dh, dw] },
      pads: { ints: pads },
      group: { i: group },
    });
    return { name, shape: [n, outSize(h, kh, sh, dh, pads[0], pads[2]), outSize(w, kw, sw, dw, pads[1], pads[3]), cout], nchw: true };
  }

  pool(x: Value, kind: 'avg' | 'max', k: [number, number], strides: [number, number], padding: Padding, base: string): Value {
    const v = this.nchw(x);
    const [n, h, w, c] = v.shape as [number, number, number, number];
    let pads: [number, number, number, number] = [0, 0, 0, 0];
    if (padding === 'SAME') {
      const [t, b] = samePads(h, k[0], strides[0], 1);
      const [l, r] = samePads(w, k[1], strides[1], 1);
      pads = [t, l, b, r];
    } else if (padding !== 'VALID') pads = [padding.top, padding.left, padding.bottom, padding.right];
    const attrs: Record<string, Attr> = { kernel_shape: { ints: k }, strides: { ints: strides }, pads: { ints: pads } };
    // TF averages over the window's real pixels only.
    if (kind === 'avg') attrs['count_include_pad'] = { i: 0 };
    const name = this.node(kind === 'avg' ? 'AveragePool' : 'MaxPool', [v.name], base, attrs);
    return { name, shape: [n, outSize(h, k[0], strides[0], 1, pads[0], pads[2]), outSize(w, k[1], strides[1], 1, pads[1], pads[3]), c], nchw: true };
  }

  /** Mean or max over H and W of a 4-D value. */
  globalPool(x: Value, kind: 'avg' | 'max', keepDims: boolean, base: string): Value {
    const v = this.nchw(x);
    const [n, , , c] = v.shape as [number, number, number, number];
    const name = this.node(kind === 'avg' ? 'GlobalAveragePool' : 'GlobalMaxPool', [v.name], keepDims ? base : `${base}/keepdims`);
    const pooled: Value = { name, shape: [n, 1, 1, c], nchw: true };
    return keepDims ? pooled : this.dropAxes(pooled, [1, 2], base);
  }

  /** Removes size-1 logical axes (Squeeze), keeping the logical order. */
  dropAxes(x: Value, axes: number[], base: string): Value {
    const r = x.shape.length;
    const logical = axes.map((a) => (a < 0 ? a + r : a));
    let v = x;
    if (v.nchw) {
      // Squeezing NCHW directly keeps TF's order only when the kept axes are in the same relative order.
      const kept = [0, 3, 1, 2].filter((a) => !logical.includes(a));
      if (kept.some((a, i) => i > 0 && a < kept[i - 1]!)) v = this.plain(v);
    }
    const phys = logical.map((a) => this.axis(v, a)).sort((a, b) => a - b);
    const name = this.node('Squeeze', [v.name, this.int64Const(`${base}/axes`, phys)], base);
    return { name, shape: x.shape.filter((_, i) => !logical.includes(i)), nchw: false };
  }

  /** ReduceMean over logical axes. */
  mean(x: Value, axes: number[], keepDims: boolean, base: string): Value {
    const r = x.shape.length;
    const logical = [...new Set(axes.map((a) => (a < 0 ? a + r : a)))].sort();
    if (r === 4 && logical.join() === '1,2') return this.globalPool(x, 'avg', keepDims, base);
    const v = keepDims ? x : this.plain(x);
    const name = this.node('ReduceMean', [v.name], base, { axes: { ints: logical.map((a) => this.axis(v, a)) }, keepdims: { i: keepDims ? 1 : 0 } });
    const shape = keepDims ? x.shape.map((d, i) => (logical.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !logical.includes(i));
    return { name, shape, nchw: keepDims && v.nchw };
  }

  batchNorm(x: Value, p: { scale: Float32Array; offset: Float32Array; mean: Float32Array; variance: Float32Array; epsilon: number }, base: string): Value {
    const c = p.mean.length;
    const v = x.shape.length === 4 ? this.nchw(x) : x;
    if (!v.nchw && v.shape.length !== 2) throw new Error(`batch norm ${base} on a ${v.shape.length}-D value is not supported`);
    const name = this.node(
      'BatchNormalization',
      [
        v.name,
        this.floatConst(`${base}/gamma`, p.scale, [c]),
        this.floatConst(`${base}/beta`, p.offset, [c]),
        this.floatConst(`${base}/moving_mean`, p.mean, [c]),
        this.floatConst(`${base}/moving_variance`, p.variance, [c]),
      ],
      base,
      { epsilon: { f: p.epsilon } },
    );
    return { ...v, name };
  }

  activation(x: Value, a: Activation, base: string, alpha?: number): Value {
    const out = (name: string): Value => ({ ...x, name });
    switch (a) {
      case 'linear':
        return x;
      case 'relu':
        return out(this.node('Relu', [x.name], base));
      case 'relu6':
        return out(this.node('Clip', [x.name, this.scalar(`${base}/min`, 0), this.scalar(`${base}/max`, 6)], base));
      case 'sigmoid':
        return out(this.node('Sigmoid', [x.name], base));
      case 'tanh':
        return out(this.node('Tanh', [x.name], base));
      case 'elu':
        return out(this.node('Elu', [x.name], base, { alpha: { f: alpha ?? 1 } }));
      case 'leaky_relu':
        return out(this.node('LeakyRelu', [x.name], base, { alpha: { f: alpha ?? 0.2 } }));
      case 'swish':
        return out(this.node('Mul', [x.name, this.node('Sigmoid', [x.name], `${base}/sigmoid`)], base));
      case 'hard_sigmoid':
        // tfjs' hardSigmoid: clip(0.2x + 0.5, 0, 1).
        return out(this.node('HardSigmoid', [x.name], base, { alpha: { f: 0.2 }, beta: { f: 0.5 } }));
      case 'softmax':
        return out(this.node('Softmax', [x.name], base, { axis: { i: this.axis(x, -1) } }));
    }
  }

  scalar(base: string, v: number): string {
    return this.floatConst(base, Float32Array.of(v), []);
  }

  /** Element-wise op of two values, NCHW when either is. */
  binary(op: 'Add' | 'Mul' | 'Sub' | 'Div' | 'Max' | 'Min', a: Value, b: Value, base: string): Value {
    let [x, y] = [a, b];
    if (x.nchw !== y.nchw) {
      if (x.shape.length === 4 && y.shape.length === 4) [x, y] = [this.nchw(x), this.nchw(y)];
      else [x, y] = [this.plain(x), this.plain(y)];
    }
    const rank = Math.max(x.shape.length, y.shape.length);
    const pad = (s: number[]) => [...Array<number>(rank - s.length).fill(1), ...s];
    const [sx, sy] = [pad(x.shape), pad(y.shape)];
    const shape = sx.map((d, i) => (d === 1 ? sy[i]! : d));
    return { name: this.node(op, [x.name, y.name], base), shape, nchw: x.nchw || y.nchw };
  }

  /** Element-wise op of a value and a constant (TF broadcasting, in the value's layout). */
  binaryConst(op: 'Add' | 'Mul' | 'Sub' | 'Div' | 'Max' | 'Min', x: Value, data: Float32Array, shape: number[], constFirst: boolean, base: string): Value {
    if (x.nchw && shape.length > 4) throw new Error(`${base}: a ${shape.length}-D constant against an image`);
    const c = this.broadcastConst(`${base}/${constFirst ? 'x' : 'y'}`, data, shape, x);
    const rank = Math.max(x.shape.length, shape.length);
    const pad = (s: number[]) => [...Array<number>(rank - s.length).fill(1), ...s];
    const [sx, sc] = [pad(x.shape), pad(shape)];
    const out = sx.map((d, i) => (d === 1 ? sc[i]! : d));
    return { name: this.node(op, constFirst ? [c, x.name] : [x.name, c], base), shape: out, nchw: x.nchw };
  }

  /** Zero padding of H and W. */
  pad(x: Value, p: { top: number; bottom: number; left: number; right: number }, base: string, value = 0): Value {
    const v = this.nchw(x);
    const [n, h, w, c] = v.shape as [number, number, number, number];
    const pads = this.int64Const(`${base}/pads`, [0, 0, p.top, p.left, 0, 0, p.bottom, p.right]);
    const name = this.node('Pad', [v.name, pads, this.scalar(`${base}/value`, value)], base, { mode: { s: 'constant' } });
    return { name, shape: [n, h + p.top + p.bottom, w + p.left + p.right, c], nchw: true };
  }

  concat(xs: Value[], axis: number, base: string): Value {
    const all4 = xs.every((x) => x.shape.length === 4);
    const vs = xs.map((x) => (all4 ? this.nchw(x) : this.plain(x)));
    const first = vs[0]!;
    const a = axis < 0 ? axis + first.shape.length : axis;
    const shape = first.shape.map((d, i) => (i === a ? vs.reduce((s, v) => (s < 0 || v.shape[i]! < 0 ? -1 : s + v.shape[i]!), 0) : d));
    return { name: this.node('Concat', vs.map((v) => v.name), base, { axis: { i: this.axis(first, a) } }), shape, nchw: first.nchw };
  }

  /** TF Reshape: in NHWC order, the batch kept as the first dimension; a 4-D result goes back to NCHW. */
  reshape(x: Value, target: number[], base: string): Value {
    const v = this.plain(x);
    const per = v.shape.slice(1);
    const rest = target.slice(1);
    const open = rest.filter((d) => d < 0).length;
    if (per.some((d) => d < 0) || open > 1) throw new UnsupportedOpsError([`Reshape(${base}: sizes unknown)`]);
    const size = per.reduce((p, d) => p * d, 1);
    const fixed = rest.filter((d) => d >= 0).reduce((p, d) => p * d, 1);
    const shape = [-1, ...rest.map((d) => (d < 0 ? size / fixed : d))];
    // A reshape that moves values between images (e.g. [N*H*W, C]) has no per-image form.
    if (shape.slice(1).reduce((p, d) => p * d, 1) !== size) throw new UnsupportedOpsError([`Reshape(${base}: mixes the batch)`]);
    const name = this.node('Reshape', [v.name, this.int64Const(`${base}/shape`, shape)], base);
    const out: Value = { name, shape, nchw: false };
    return out.shape.length === 4 ? this.nchw(out) : out;
  }

  /** x · W (+ b): W is [in, out]. */
  dense(x: Value, kernel: Float32Array, kernelShape: [number, number], bias: Float32Array | undefined, base: string): Value {
    const v = this.plain(x);
    let name = this.node('MatMul', [v.name, this.floatConst(`${base}/kernel`, kernel, kernelShape)], bias ? `${base}/matmul` : base);
    if (bias) name = this.node('Add', [name, this.floatConst(`${base}/bias`, bias, [kernelShape[1]])], base);
    return { name, shape: [...v.shape.slice(0, -1), kernelShape[1]], nchw: false };
  }

  /** [N, D] (or [N, 1, 1, D]) output named `name`; anything else is not a feature vector. */
  vectorOutput(x: Value, name: string): Value {
    let v = x;
    if (v.shape.length === 4) {
      if (v.shape[1] !== 1 || v.shape[2] !== 1) throw new Error(`the bottleneck has shape [${v.shape.join(',')}], not a feature vector`);
      v = { name: this.node('Flatten', [v.name], `${name}/flatten`, { axis: { i: 1 } }), shape: [v.shape[0]!, v.shape[3]!], nchw: false };
    }
    if (v.shape.length !== 2) throw new Error(`the bottleneck has shape [${v.shape.join(',')}], not a feature vector`);
    this.nodes.push({ opType: 'Identity', input: [v.name], output: [name], name });
    this.names.add(name);
    return { ...v, name };
  }

  /** Graph input [N, H, W, 3] float (NHWC as TF.js takes it), transposed to NCHW inside. */
  imageInput(h: number, w: number, c = 3): Value {
    this.names.add(INPUT_NAME);
    return this.nchw({ name: INPUT_NAME, shape: [-1, h, w, c], nchw: false });
  }

  model(inputShape: number[], output: Value, metadata: Record<string, string> = {}): ModelProto {
    return {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'retrain-ts',
      graph: {
        name: 'module',
        node: this.nodes,
        initializer: this.initializers,
        input: [valueInfo(INPUT_NAME, inputShape)],
        output: [valueInfo(output.name, output.shape)],
      },
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    };
  }
}

export function valueInfo(name: string, shape: number[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: shape.map((d, i) => (d > 0 ? { dimValue: d } : { dimParam: i === 0 ? 'N' : `d${i}` })) } } },
  };
}

export function encodeModel(m: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(m).finish();
}

export function decodeModel(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}
