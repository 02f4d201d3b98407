/**
 * A .tflite model (what --output_graph x.tflite writes, or any classifier of the same
 * builtin ops) → Graph, so it runs on ONNX Runtime through the ONNX writer. Float16
 * weights are decoded; int8/uint8 weights and biases are dequantized, and every
 * quantized activation becomes a fake_quant node with its tensor's parameters, so the
 * float run rounds and clamps where an integer runtime does.
 */
import * as flatbuffers from 'flatbuffers';
import { getFloat16 } from '@petamoriken/float16';
import {
  ActivationFunctionType,
  BuiltinOperator,
  Model,
  Padding as FbPadding,
  TensorType,
  type ConcatenationOptionsT,
  type Conv2DOptionsT,
  type DepthwiseConv2DOptionsT,
  type FullyConnectedOptionsT,
  type LeakyReluOptionsT,
  type Pool2DOptionsT,
  type ReducerOptionsT,
  type SoftmaxOptionsT,
  type SqueezeOptionsT,
  type Tensor,
} from '../export/tflite/generated/schema_generated.js';
import { IrBuilder } from './build.js';
import { UnsupportedOpsError } from './errors.js';
import type { Activation, BinaryNode, Graph, Operand } from './ir.js';
import { transposeArray } from './tensor.js';

const FUSED: Partial<Record<ActivationFunctionType, Activation>> = {
  [ActivationFunctionType.NONE]: 'linear',
  [ActivationFunctionType.RELU]: 'relu',
  [ActivationFunctionType.RELU6]: 'relu6',
  [ActivationFunctionType.TANH]: 'tanh',
};

const BINARY: Partial<Record<BuiltinOperator, BinaryNode['op']>> = {
  [BuiltinOperator.ADD]: 'add',
  [BuiltinOperator.MUL]: 'mul',
  [BuiltinOperator.SUB]: 'sub',
  [BuiltinOperator.DIV]: 'div',
  [BuiltinOperator.MAXIMUM]: 'maximum',
  [BuiltinOperator.MINIMUM]: 'minimum',
};

const ACTIVATION_OPS: Partial<Record<BuiltinOperator, Activation>> = {
  [BuiltinOperator.RELU]: 'relu',
  [BuiltinOperator.RELU6]: 'relu6',
  [BuiltinOperator.LOGISTIC]: 'sigmoid',
  [BuiltinOperator.TANH]: 'tanh',
  [BuiltinOperator.ELU]: 'elu',
  [BuiltinOperator.LEAKY_RELU]: 'leaky_relu',
  [BuiltinOperator.SOFTMAX]: 'softmax',
};

const OTHER = new Set<BuiltinOperator>([
  BuiltinOperator.CONV_2D,
  BuiltinOperator.DEPTHWISE_CONV_2D,
  BuiltinOperator.FULLY_CONNECTED,
  BuiltinOperator.AVERAGE_POOL_2D,
  BuiltinOperator.MAX_POOL_2D,
  BuiltinOperator.MEAN,
  BuiltinOperator.RESHAPE,
  BuiltinOperator.SQUEEZE,
  BuiltinOperator.PAD,
  BuiltinOperator.PADV2,
  BuiltinOperator.CONCATENATION,
  BuiltinOperator.QUANTIZE,
  BuiltinOperator.DEQUANTIZE,
]);

const QRANGE: Partial<Record<TensorType, [number, number]>> = {
  [TensorType.INT8]: [-128, 127],
  [TensorType.UINT8]: [0, 255],
};

/** A constant tensor's values as floats (float16 decoded; integers dequantized with their scales). */
function constValues(t: Tensor, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Array.from(t.shapeArray() ?? []).reduce((p, d) => p * d, 1);
  const q = t.quantization();
  const scales = q?.scaleArray() ?? new Float32Array();
  const zps = Array.from({ length: q?.zeroPointLength() ?? 0 }, (_, i) => Number(q!.zeroPoint(i)));
  const shape = Array.from(t.shapeArray() ?? []);
  const qdim = q?.quantizedDimension() ?? 0;
  const inner = shape.slice(qdim + 1).reduce((p, d) => p * d, 1);
  const channels = shape[qdim] ?? 1;
  const deq = (raw: number, i: number): number => {
    if (scales.length === 0) return raw;
    const c = scales.length === 1 ? 0 : Math.floor(i / inner) % channels;
    return (raw - (zps[c] ?? zps[0] ?? 0)) * scales[c]!;
  };
  const out = new Float32Array(n);
  switch (t.type()) {
    case TensorType.FLOAT32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case TensorType.FLOAT16:
      for (let i = 0; i < n; i++) out[i] = getFloat16(view, i * 2, true);
      break;
    case TensorType.INT8:
      for (let i = 0; i < n; i++) out[i] = deq(view.getInt8(i), i);
      break;
    case TensorType.UINT8:
      for (let i = 0; i < n; i++) out[i] = deq(view.getUint8(i), i);
      break;
    case TensorType.INT32:
      for (let i = 0; i < n; i++) out[i] = deq(view.getInt32(i * 4, true), i);
      break;
    default:
      throw new UnsupportedOpsError([`constant ${t.name()} of type ${TensorType[t.type()]}`]);
  }
  return out;
}

/** The .tflite's one subgraph as a Graph: input [-1, H, W, C] float, output the model's output (its tensor's name). */
export function fromTflite(bytes: Uint8Array): Graph {
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (!Model.bufferHasIdentifier(bb)) throw new Error('not a TFLite model (no "TFL3" file identifier)');
  const model = Model.getRootAsModel(bb);
  if (model.subgraphsLength() !== 1) throw new UnsupportedOpsError([`${model.subgraphsLength()} subgraphs`]);
  const sg = model.subgraphs(0)!;
  if (sg.inputsLength() !== 1 || sg.outputsLength() !== 1) throw new Error('expected one input and one output');
  const codes = Array.from({ length: model.operatorCodesLength() }, (_, i) => {
    const c = model.operatorCodes(i)!;
    // Older writers fill only deprecated_builtin_code.
    return Math.max(c.builtinCode(), c.deprecatedBuiltinCode()) as BuiltinOperator;
  });
  const ops = Array.from({ length: sg.operatorsLength() }, (_, i) => sg.operators(i)!);
  const bad = [...new Set(ops.map((o) => codes[o.opcodeIndex()]!).filter((c) => !(c in BINARY || c in ACTIVATION_OPS || OTHER.has(c))).map((c) => BuiltinOperator[c] ?? `op ${c}`))];
  if (bad.length) throw new UnsupportedOpsError(bad);

  const b = new IrBuilder();
  const tensor = (i: number) => sg.tensors(i)!;
  const dataOf = (i: number): Uint8Array | undefined => {
    const d = model.buffers(tensor(i).buffer())?.dataArray();
    return d && d.length > 0 ? d : undefined;
  };
  /** Each tensor's graph value, or its constant values (a weight once an op reads it). */
  const values = new Map<number, string>();
  const consts = new Map<number, { data: Float32Array; shape: number[] }>();
  const weightNames = new Map<number, string>();
  const shapeOf = (i: number) => Array.from(tensor(i).shapeArray() ?? []);
  const constOf = (i: number): { data: Float32Array; shape: number[] } | undefined => {
    let c = consts.get(i);
    if (!c) {
      const d = dataOf(i);
      if (!d) return undefined;
      c = { data: constValues(tensor(i), d), shape: shapeOf(i) };
      consts.set(i, c);
    }
    return c;
  };
  const requireConst = (i: number, what: string) => {
    const c = constOf(i);
    if (!c) throw new UnsupportedOpsError([`${what}(non-constant ${tensor(i).name()})`]);
    return c;
  };
  const weight = (i: number, transform?: (c: { data: Float32Array; shape: number[] }) => { data: Float32Array; shape: number[] }): string => {
    const c = requireConst(i, 'weight');
    if (transform) {
      const t = transform(c);
      return b.weight(tensor(i).name() ?? 'w', t.data, t.shape);
    }
    let w = weightNames.get(i);
    if (w === undefined) weightNames.set(i, (w = b.weight(tensor(i).name() ?? 'w', c.data, c.shape)));
    return w;
  };
  const value = (i: number): string => {
    const v = values.get(i);
    if (v === undefined) throw new UnsupportedOpsError([`reads ${tensor(i).name()} before it is computed`]);
    return v;
  };
  /** Defines tensor `i` as value `v`, rounded to the tensor's integer grid when it is quantized. */
  const define = (i: number, v: string): void => {
    const t = tensor(i);
    const range = QRANGE[t.type()];
    const q = t.quantization();
    if (range && q && (q.scaleArray()?.length ?? 0) === 1) {
      v = b.add({ op: 'fake_quant', name: `${t.name()}/quantized`, x: v, scale: q.scaleArray()![0]!, zeroPoint: Number(q.zeroPoint(0) ?? 0n), qmin: range[0], qmax: range[1] });
    }
    values.set(i, v);
  };
  const name = (i: number) => tensor(i).name() || `t${i}`;
  const act = (a: ActivationFunctionType, op: string): Activation => {
    const r = FUSED[a];
    if (r === undefined) throw new UnsupportedOpsError([`${op}(fused ${ActivationFunctionType[a]})`]);
    return r;
  };
  const pad = (p: FbPadding) => (p === FbPadding.SAME ? 'SAME' : 'VALID');

  const inIdx = sg.inputs(0)!;
  const inShape = shapeOf(inIdx);
  if (inShape.length !== 4) throw new Error(`the input is [${inShape.join(',')}], not an image`);
  define(inIdx, b.input('input', [-1, inShape[1]!, inShape[2]!, inShape[3]!]));

  for (const op of ops) {
    const code = codes[op.opcodeIndex()]!;
    const opName = BuiltinOperator[code]!;
    const ins = Array.from(op.inputsArray() ?? []);
    const out = op.outputsArray()![0]!;
    const o = op.unpack().builtinOptions;
    const x = () => value(ins[0]!);
    const base = name(out);
    switch (code) {
      case BuiltinOperator.DEQUANTIZE:
      case BuiltinOperator.QUANTIZE: {
        // A constant behind DEQUANTIZE (float16 or int8 weights) stays a constant.
        const c = constOf(ins[0]!);
        if (c) consts.set(out, c);
        else define(out, x());
        break;
      }
      case BuiltinOperator.CONV_2D:
      case BuiltinOperator.DEPTHWISE_CONV_2D: {
        const depthwise = code === BuiltinOperator.DEPTHWISE_CONV_2D;
        const opts = o as Conv2DOptionsT | DepthwiseConv2DOptionsT;
        const f = requireConst(ins[1]!, opName);
        const cin = shapeOf(ins[0]!)[3]!;
        const [, kh, kw] = f.shape as [number, number, number, number];
        // TFLite [O, kh, kw, I] → TF [kh, kw, I, O]; depthwise [1, kh, kw, C] → [kh, kw, cin, C / cin].
        const filter = weight(ins[1]!, (c) => (depthwise ? { data: c.data, shape: [kh, kw, cin, c.shape[3]! / cin] } : { data: transposeArray(c.data, c.shape, [1, 2, 3, 0]), shape: [kh, kw, c.shape[3]!, c.shape[0]!] }));
        const hasBias = ins.length > 2 && ins[2]! >= 0;
        define(out, b.add({
          op: depthwise ? 'depthwise_conv2d' : 'conv2d',
          name: base,
          x: x(),
          filter,
          ...(hasBias ? { bias: weight(ins[2]!) } : {}),
          strides: [opts.strideH, opts.strideW],
          dilations: [opts.dilationHFactor, opts.dilationWFactor],
          padding: pad(opts.padding),
          activation: act(opts.fusedActivationFunction, opName),
        }));
        break;
      }
      case BuiltinOperator.FULLY_CONNECTED: {
        const opts = o as FullyConnectedOptionsT;
        let v = x();
        const inS = b.shapeOf(v);
        const w = requireConst(ins[1]!, opName);
        const [dout, din] = w.shape as [number, number];
        // Without keep_num_dims, FULLY_CONNECTED flattens its input to [-1, in].
        if (!opts.keepNumDims && inS.length !== 2) v = b.add({ op: 'reshape', name: `${base}/flatten`, x: v, target: [-1, din] });
        const hasBias = ins.length > 2 && ins[2]! >= 0;
        define(out, b.add({
          op: 'dense',
          name: base,
          x: v,
          kernel: weight(ins[1]!, (c) => ({ data: transposeArray(c.data, c.shape, [1, 0]), shape: [din, dout] })),
          ...(hasBias ? { bias: weight(ins[2]!) } : {}),
          activation: act(opts.fusedActivationFunction, opName),
        }));
        break;
      }
      case BuiltinOperator.AVERAGE_POOL_2D:
      case BuiltinOperator.MAX_POOL_2D: {
        const opts = o as Pool2DOptionsT;
        const p = b.add({ op: code === BuiltinOperator.AVERAGE_POOL_2D ? 'avg_pool' : 'max_pool', name: base, x: x(), ksize: [opts.filterHeight, opts.filterWidth], strides: [opts.strideH, opts.strideW], padding: pad(opts.padding) });
        const a = act(opts.fusedActivationFunction, opName);
        define(out, a === 'linear' ? p : b.add({ op: 'activation', name: `${base}/act`, x: p, activation: a }));
        break;
      }
      case BuiltinOperator.MEAN:
        define(out, b.add({ op: 'mean', name: base, x: x(), axes: Array.from(requireConst(ins[1]!, opName).data), keepDims: (o as ReducerOptionsT).keepDims }));
        break;
      case BuiltinOperator.RESHAPE:
      case BuiltinOperator.SQUEEZE: {
        // The output tensor's shape says it all (batch 1 → -1).
        const target = shapeOf(out).map((d, k) => (k === 0 ? -1 : d));
        if (code === BuiltinOperator.SQUEEZE && (o as SqueezeOptionsT).squeezeDims.includes(0)) throw new UnsupportedOpsError(['SQUEEZE(batch axis)']);
        define(out, b.add({ op: 'reshape', name: base, x: x(), target }));
        break;
      }
      case BuiltinOperator.PAD:
      case BuiltinOperator.PADV2: {
        const p = requireConst(ins[1]!, opName).data;
        if (p.length !== 8 || p[0] || p[1] || p[6] || p[7]) throw new UnsupportedOpsError([`${opName}(not H/W)`]);
        const v = code === BuiltinOperator.PADV2 ? requireConst(ins[2]!, opName).data[0]! : 0;
        define(out, b.add({ op: 'pad', name: base, x: x(), pads: { top: p[2]!, bottom: p[3]!, left: p[4]!, right: p[5]! }, value: v }));
        break;
      }
      case BuiltinOperator.CONCATENATION: {
        const opts = o as ConcatenationOptionsT;
        const c = b.add({ op: 'concat', name: base, xs: ins.map(value), axis: opts.axis });
        const a = act(opts.fusedActivationFunction, opName);
        define(out, a === 'linear' ? c : b.add({ op: 'activation', name: `${base}/act`, x: c, activation: a }));
        break;
      }
      default: {
        const bin = BINARY[code];
        if (bin) {
          const operand = (i: number): Operand => (values.has(i) ? { value: value(i) } : { weight: weight(i) });
          const [a, c] = [operand(ins[0]!), operand(ins[1]!)];
          if ('weight' in a && 'weight' in c) throw new UnsupportedOpsError([`${opName}(two constants)`]);
          const fused = (o as { fusedActivationFunction?: ActivationFunctionType } | null)?.fusedActivationFunction ?? ActivationFunctionType.NONE;
          define(out, b.add({ op: bin, name: base, a, b: c, activation: act(fused, opName) }));
          break;
        }
        const a = ACTIVATION_OPS[code]!;
        if (a === 'softmax' && (o as SoftmaxOptionsT).beta !== 1) throw new UnsupportedOpsError([`SOFTMAX(beta=${(o as SoftmaxOptionsT).beta})`]);
        const alpha = a === 'leaky_relu' ? (o as LeakyReluOptionsT).alpha : undefined;
        define(out, b.add({ op: 'activation', name: base, x: x(), activation: a, ...(alpha !== undefined ? { alpha } : {}) }));
      }
    }
  }
  return b.graph(b.nodes[0]!.name, value(sg.outputs(0)!));
}
