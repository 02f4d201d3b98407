/**
 * Graph → one TFLite flatbuffer (schema.fbs, through the flatc-generated object API):
 * input [1, H, W, C] float32, builtin ops only, fused activations where TFLite has
 * them. Float32 weights, float16 weights behind DEQUANTIZE ops (as TFLite's converter
 * writes them), or full-integer int8 (./quantize.ts gives the parameters).
 */
import * as flatbuffers from 'flatbuffers';
import {
  ActivationFunctionType,
  AddOptionsT,
  Buffer as FbBuffer,
  BufferT,
  BuiltinOperator,
  BuiltinOptions,
  ConcatenationOptionsT,
  Conv2DOptionsT,
  DepthwiseConv2DOptionsT,
  DequantizeOptionsT,
  DivOptionsT,
  FullyConnectedOptionsT,
  LeakyReluOptionsT,
  MaximumMinimumOptionsT,
  MetadataT,
  Model,
  ModelT,
  MulOptionsT,
  OperatorCodeT,
  OperatorT,
  PadOptionsT,
  PadV2OptionsT,
  Padding as FbPadding,
  Pool2DOptionsT,
  QuantizationParameters,
  QuantizationParametersT,
  QuantizeOptionsT,
  ReducerOptionsT,
  ReshapeOptionsT,
  SoftmaxOptionsT,
  SubGraphT,
  SubOptionsT,
  TensorT,
  TensorType,
} from '../export/tflite/generated/schema_generated.js';
import { setFloat16 } from '@petamoriken/float16';
import { UnsupportedOpsError } from './errors.js';
import type { Activation, Graph, Node, Padding, Weight } from './ir.js';
import { transposeArray } from './tensor.js';

/** Per-value int8 parameters: real = (q - zeroPoint) * scale. */
export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

export interface TfliteQuantization {
  /** Activation parameters of every value the graph defines (int8, from calibration). */
  activations: Map<string, QuantParams>;
  /** Type of the model's input and output tensors. */
  io: 'uint8' | 'int8';
  /** Float weights that replace the graph's before they are quantized (bias correction, ../export/calibrate.ts). */
  weights?: Map<string, Weight>;
}

export interface TfliteWriteOptions {
  /** Weights: float32 (default), float16 behind DEQUANTIZE, or full-integer int8. */
  weights?: 'float32' | 'float16' | 'int8';
  int8?: TfliteQuantization;
  /** The input tensor's name; default `input`. */
  inputName?: string;
  description?: string;
  /** Model.metadata entries (e.g. TFLITE_METADATA) and the bytes of their buffers. */
  metadata?: Array<{ name: string; data: Uint8Array }>;
}

const FUSED: Partial<Record<Activation, ActivationFunctionType>> = {
  linear: ActivationFunctionType.NONE,
  relu: ActivationFunctionType.RELU,
  relu6: ActivationFunctionType.RELU6,
};

/** A buffer whose bytes start 16-byte aligned, as TFLite's converter writes them (schema.fbs: force_align 16). */
class AlignedBuffer extends BufferT {
  constructor(private readonly bytes: Uint8Array) {
    super();
  }
  override pack(builder: flatbuffers.Builder): flatbuffers.Offset {
    if (this.bytes.length === 0) return FbBuffer.createBuffer(builder, 0);
    builder.startVector(1, this.bytes.length, 16);
    for (let i = this.bytes.length - 1; i >= 0; i--) builder.addInt8(this.bytes[i]!);
    return FbBuffer.createBuffer(builder, builder.endVector());
  }
}

/** One all-zero zero-point vector per length and builder. */
const zeroVectors = new WeakMap<flatbuffers.Builder, Map<number, flatbuffers.Offset>>();

/**
 * Per-channel parameters (int8 weights and biases) have all-zero int64 zero points; a
 * flatbuffer may point many tables at one vector, so those share one per length: about
 * 8% of an int8 MobileNet V2.
 */
class PerChannelParams extends QuantizationParametersT {
  override pack(builder: flatbuffers.Builder): flatbuffers.Offset {
    if (this.zeroPoint.some((z) => z !== 0n)) return super.pack(builder);
    let cache = zeroVectors.get(builder);
    if (!cache) zeroVectors.set(builder, (cache = new Map()));
    let zp = cache.get(this.zeroPoint.length);
    if (zp === undefined) cache.set(this.zeroPoint.length, (zp = QuantizationParameters.createZeroPointVector(builder, this.zeroPoint)));
    const scale = QuantizationParameters.createScaleVector(builder, this.scale);
    return QuantizationParameters.createQuantizationParameters(builder, 0, 0, scale, zp, this.detailsType, 0, this.quantizedDimension);
  }
}

const bytesOf = (a: Float32Array | Int32Array | Int8Array | Uint8Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();

function float16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) setFloat16(view, i * 2, values[i]!, true);
  return out;
}

const batch1 = (shape: number[]): number[] => shape.map((d, i) => (i === 0 && d < 0 ? 1 : d));

/** Symmetric int8 of `data` split along axis 0 (`channels` slices; 1: per tensor), TFLite's weight scheme. */
function quantizeSymmetric(data: Float32Array, channels: number): { q: Int8Array; scales: number[] } {
  const per = data.length / channels;
  const q = new Int8Array(data.length);
  const scales: number[] = [];
  for (let c = 0; c < channels; c++) {
    let m = 0;
    for (let i = c * per; i < (c + 1) * per; i++) m = Math.max(m, Math.abs(data[i]!));
    const s = m > 0 ? m / 127 : 1;
    scales.push(s);
    for (let i = c * per; i < (c + 1) * per; i++) q[i] = Math.max(-127, Math.min(127, Math.round(data[i]! / s)));
  }
  return { q, scales };
}

class Writer {
  readonly tensors: TensorT[] = [];
  readonly buffers: BufferT[] = [new BufferT()];
  readonly operators: OperatorT[] = [];
  readonly codes: OperatorCodeT[] = [];
  private readonly codeIndex = new Map<string, number>();
  /** Tensor index of each graph value. */
  readonly values = new Map<string, number>();
  private readonly names = new Set<string>();

  constructor(
    readonly graph: Graph,
    readonly opts: TfliteWriteOptions,
  ) {}

  get int8(): TfliteQuantization | undefined {
    return this.opts.weights === 'int8' ? this.opts.int8 : undefined;
  }

  unique(base: string): string {
    let name = base;
    for (let k = 1; this.names.has(name); k++) name = `${base}_${k}`;
    this.names.add(name);
    return name;
  }

  tensor(name: string, shape: number[], type: TensorType, data?: Uint8Array, quant?: QuantizationParametersT): number {
    let buffer = 0;
    if (data) {
      buffer = this.buffers.length;
      this.buffers.push(new AlignedBuffer(data));
    }
    const t = new TensorT(batch1(shape), type, buffer, this.unique(name), quant ?? null);
    this.tensors.push(t);
    return this.tensors.length - 1;
  }

  /** The activation tensor of a graph value (int8 with its calibrated parameters when quantizing). */
  valueTensor(name: string, shape: number[]): number {
    const q = this.int8?.activations.get(name);
    const idx = this.int8 ? this.tensor(name, shape, TensorType.INT8, undefined, this.quant(q, name)) : this.tensor(name, shape, TensorType.FLOAT32);
    this.values.set(name, idx);
    return idx;
  }

  quant(q: QuantParams | undefined, name: string): QuantizationParametersT {
    if (!q) throw new Error(`no int8 range for ${name}`);
    return new QuantizationParametersT([], [], [q.scale], [BigInt(q.zeroPoint)]);
  }

  value(name: string): number {
    const t = this.values.get(name);
    if (t === undefined) throw new Error(`value ${name} is used before it is defined`);
    return t;
  }

  int32(name: string, data: number[], shape = [data.length]): number {
    return this.tensor(name, shape, TensorType.INT32, bytesOf(Int32Array.from(data)));
  }

  /**
   * A float constant read by a float op: float32 as it is; float16 stored and dequantized
   * by a DEQUANTIZE op; int8 (only for element-wise operands) quantized per tensor.
   */
  floatConst(name: string, data: Float32Array, shape: number[]): number {
    if (this.int8) {
      let lo = 0;
      let hi = 0;
      for (const v of data) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      const scale = hi > lo ? (hi - lo) / 255 : 1;
      const zp = Math.round(-128 - lo / scale);
      const q = Int8Array.from(data, (v) => Math.max(-128, Math.min(127, Math.round(v / scale) + zp)));
      return this.tensor(name, shape, TensorType.INT8, bytesOf(q), new QuantizationParametersT([], [], [scale], [BigInt(zp)]));
    }
    if (this.opts.weights === 'float16') {
      const half = this.tensor(name, shape, TensorType.FLOAT16, float16Bytes(data));
      const out = this.tensor(`${name}/dequantize`, shape, TensorType.FLOAT32);
      this.op(BuiltinOperator.DEQUANTIZE, 3, [half], [out], BuiltinOptions.DequantizeOptions, new DequantizeOptionsT());
      return out;
    }
    return this.tensor(name, shape, TensorType.FLOAT32, bytesOf(data));
  }

  /** Conv/depthwise/dense weights: int8 symmetric (per output channel on `axis` 0 when asked), else floatConst. */
  weightConst(name: string, data: Float32Array, shape: number[], perChannel: boolean, quantizedDimension = 0): number {
    if (!this.int8) return this.floatConst(name, data, shape);
    const channels = perChannel ? shape[quantizedDimension]! : 1;
    // Depthwise filters are [1, kh, kw, C]: channel-last, so quantize a transposed copy.
    const moved = perChannel && quantizedDimension === 3 ? transposeArray(data, shape, [3, 0, 1, 2]) : data;
    const { q, scales } = quantizeSymmetric(moved, channels);
    const back = perChannel && quantizedDimension === 3 ? Int8Array.from(transposeArray(Float32Array.from(q), [shape[3]!, shape[0]!, shape[1]!, shape[2]!], [1, 2, 3, 0])) : q;
    return this.tensor(name, shape, TensorType.INT8, bytesOf(back), new PerChannelParams([], [], scales, scales.map(() => 0n), undefined, null, quantizedDimension));
  }

  /** Bias: int32 with scale input_scale * weight_scale (per channel) when int8, else a float const. */
  biasConst(name: string, data: Float32Array, input: number, weights: number): number {
    if (!this.int8) return this.floatConst(name, data, [data.length]);
    const sIn = this.tensors[input]!.quantization!.scale[0]!;
    const ws = this.tensors[weights]!.quantization!.scale;
    const scales = Array.from(data, (_, i) => sIn * ws[ws.length === 1 ? 0 : i]!);
    const q = Int32Array.from(data, (v, i) => Math.round(v / scales[i]!));
    const perChannel = ws.length > 1;
    return this.tensor(name, [data.length], TensorType.INT32, bytesOf(q), new PerChannelParams([], [], perChannel ? scales : [scales[0]!], (perChannel ? scales : [0]).map(() => 0n)));
  }

  op(code: BuiltinOperator, version: number, inputs: number[], outputs: number[], optionsType = BuiltinOptions.NONE, options: OperatorT['builtinOptions'] = null): void {
    const key = `${code}:${version}`;
    let index = this.codeIndex.get(key);
    if (index === undefined) {
      index = this.codes.length;
      // deprecated_builtin_code holds codes below 127 (PLACEHOLDER_FOR_GREATER_OP_CODES) for older readers.
      this.codes.push(new OperatorCodeT(Math.min(code, 127), null, version, code));
      this.codeIndex.set(key, index);
    }
    this.operators.push(new OperatorT(index, inputs, outputs, optionsType, options));
  }

  /** The version TFLite's op_version.cc gives an op with these input types. */
  version(code: BuiltinOperator, extra: { keepNumDims?: boolean; dilated?: boolean } = {}): number {
    const q = this.int8 !== undefined;
    switch (code) {
      case BuiltinOperator.CONV_2D:
      case BuiltinOperator.DEPTHWISE_CONV_2D:
        return q ? 3 : extra.dilated && code === BuiltinOperator.DEPTHWISE_CONV_2D ? 2 : 1;
      case BuiltinOperator.FULLY_CONNECTED:
        return extra.keepNumDims ? 5 : q ? 4 : 1;
      case BuiltinOperator.RESHAPE:
      case BuiltinOperator.DIV:
        return 1;
      default:
        return q ? 2 : 1;
    }
  }
}

const fusedOf = (a: Activation): ActivationFunctionType | undefined => FUSED[a];

function paddingOf(p: Padding, name: string): FbPadding {
  if (p === 'SAME') return FbPadding.SAME;
  if (p === 'VALID') return FbPadding.VALID;
  throw new UnsupportedOpsError([`${name}(explicit padding)`]);
}

/** The graph as a TFLite model (the graph's output keeps its value's name, e.g. final_result). */
export function toTflite(graph: Graph, opts: TfliteWriteOptions = {}): Uint8Array {
  const w = new Writer(graph, opts);
  const weight = (name: string) => {
    const v = w.int8?.weights?.get(name) ?? graph.weights.get(name);
    if (!v) throw new Error(`weight ${name} is missing`);
    return v;
  };
  const int8 = w.int8;
  let inputTensor = -1;
  let ioInput = -1;
  for (const n of graph.nodes) emit(n);

  function emit(n: Node): void {
    switch (n.op) {
      case 'input': {
        const q = int8?.activations.get(n.name);
        if (int8) {
          // The model's input is uint8/int8 with the first value's parameters shifted to the I/O type.
          const p = w.quant(q, n.name);
          const zp = Number(p.zeroPoint[0]) + (int8.io === 'uint8' ? 128 : 0);
          ioInput = w.tensor(opts.inputName ?? 'input', n.shape, int8.io === 'uint8' ? TensorType.UINT8 : TensorType.INT8, undefined, new QuantizationParametersT([], [], p.scale, [BigInt(zp)]));
          if (int8.io === 'uint8') {
            inputTensor = w.valueTensor(n.name, n.shape);
            w.op(BuiltinOperator.QUANTIZE, 1, [ioInput], [inputTensor], BuiltinOptions.QuantizeOptions, new QuantizeOptionsT());
          } else {
            inputTensor = ioInput;
            w.values.set(n.name, ioInput);
          }
        } else {
          inputTensor = ioInput = w.tensor(opts.inputName ?? 'input', n.shape, TensorType.FLOAT32);
          w.values.set(n.name, inputTensor);
        }
        return;
      }
      case 'conv2d':
      case 'depthwise_conv2d': {
        const f = weight(n.filter);
        let x = w.value(n.x);
        const [kh, kw, cin, m] = f.shape as [number, number, number, number];
        const xShape = graph.nodes.find((v) => v.name === n.x)!.shape;
        if (n.op === 'conv2d' && cin !== xShape[3]) throw new UnsupportedOpsError([`${n.name}: grouped conv2d`]);
        let padding = n.padding;
        if (typeof padding === 'object') {
          x = padValue(x, xShape, padding, 0, `${n.name}/pad`);
          padding = 'VALID';
        }
        const depthwise = n.op === 'depthwise_conv2d';
        const cout = depthwise ? cin * m : m;
        // TFLite filters: [cout, kh, kw, cin] (conv), [1, kh, kw, cin*m] (depthwise: TF's layout, reshaped).
        const filter = depthwise
          ? w.weightConst(n.filter, f.data, [1, kh, kw, cout], true, 3)
          : w.weightConst(n.filter, transposeArray(f.data, f.shape, [3, 0, 1, 2]), [cout, kh, kw, cin], true, 0);
        const biasData = n.bias ? weight(n.bias).data : new Float32Array(cout);
        const bias = w.biasConst(n.bias ?? `${n.name}/bias`, biasData, x, filter);
        const fused = fusedOf(n.activation);
        const outName = fused === undefined ? `${n.name}/preact` : n.name;
        const out = fused === undefined ? w.tensor(outName, n.shape, TensorType.FLOAT32) : w.valueTensor(n.name, n.shape);
        if (fused === undefined && int8) throw new UnsupportedOpsError([`${n.name}(${n.activation}, int8)`]);
        const p = paddingOf(padding, n.op);
        const dilated = n.dilations[0] !== 1 || n.dilations[1] !== 1;
        if (depthwise) {
          w.op(BuiltinOperator.DEPTHWISE_CONV_2D, w.version(BuiltinOperator.DEPTHWISE_CONV_2D, { dilated }), [x, filter, bias], [out], BuiltinOptions.DepthwiseConv2DOptions,
            new DepthwiseConv2DOptionsT(p, n.strides[1], n.strides[0], m, fused ?? ActivationFunctionType.NONE, n.dilations[1], n.dilations[0]));
        } else {
          w.op(BuiltinOperator.CONV_2D, w.version(BuiltinOperator.CONV_2D), [x, filter, bias], [out], BuiltinOptions.Conv2DOptions,
            new Conv2DOptionsT(p, n.strides[1], n.strides[0], fused ?? ActivationFunctionType.NONE, n.dilations[1], n.dilations[0]));
        }
        if (fused === undefined) activation(out, n.shape, n.activation, n.alpha, n.name);
        return;
      }
      case 'dense': {
        const k = weight(n.kernel);
        const [din, dout] = k.shape as [number, number];
        const x = w.value(n.x);
        const kernel = w.weightConst(n.kernel, transposeArray(k.data, k.shape, [1, 0]), [dout, din], false);
        const bias = w.biasConst(n.bias ?? `${n.name}/bias`, n.bias ? weight(n.bias).data : new Float32Array(dout), x, kernel);
        const fused = fusedOf(n.activation);
        if (fused === undefined && int8 && n.activation !== 'softmax') throw new UnsupportedOpsError([`${n.name}(${n.activation}, int8)`]);
        const out = fused === undefined ? w.tensor(`${n.name}/preact`, n.shape, TensorType.FLOAT32) : w.valueTensor(n.name, n.shape);
        const keepNumDims = n.shape.length !== 2;
        w.op(BuiltinOperator.FULLY_CONNECTED, w.version(BuiltinOperator.FULLY_CONNECTED, { keepNumDims }), [x, kernel, bias], [out], BuiltinOptions.FullyConnectedOptions,
          new FullyConnectedOptionsT(fused ?? ActivationFunctionType.NONE, undefined, keepNumDims));
        if (fused === undefined) activation(out, n.shape, n.activation, n.alpha, n.name);
        return;
      }
      case 'avg_pool':
      case 'max_pool': {
        const out = w.valueTensor(n.name, n.shape);
        const code = n.op === 'avg_pool' ? BuiltinOperator.AVERAGE_POOL_2D : BuiltinOperator.MAX_POOL_2D;
        w.op(code, w.version(code), [w.value(n.x)], [out], BuiltinOptions.Pool2DOptions,
          new Pool2DOptionsT(paddingOf(n.padding, n.op), n.strides[1], n.strides[0], n.ksize[1], n.ksize[0], ActivationFunctionType.NONE));
        return;
      }
      case 'mean': {
        const x = w.value(n.x);
        const rank = graph.nodes.find((v) => v.name === n.x)!.shape.length;
        const axes = [...new Set(n.axes.map((a) => (a < 0 ? a + rank : a)))].sort();
        const out = w.valueTensor(n.name, n.shape);
        w.op(BuiltinOperator.MEAN, w.version(BuiltinOperator.MEAN), [x, w.int32(`${n.name}/axes`, axes)], [out], BuiltinOptions.ReducerOptions, new ReducerOptionsT(n.keepDims));
        return;
      }
      case 'batch_norm': {
        // Not after a conv (./fold.ts folds those): x * s + (offset - mean * s).
        const [scale, offset, mean, variance] = [n.scale, n.offset, n.mean, n.variance].map((v) => weight(v).data) as Float32Array[];
        const s = Float32Array.from(scale!, (g, i) => g / Math.sqrt(variance![i]! + n.epsilon));
        const t = Float32Array.from(offset!, (b, i) => b - mean![i]! * s[i]!);
        const mid = int8 ? w.valueTensor(`${n.name}/scaled`, n.shape) : w.tensor(`${n.name}/scaled`, n.shape, TensorType.FLOAT32);
        w.op(BuiltinOperator.MUL, w.version(BuiltinOperator.MUL), [w.value(n.x), w.floatConst(`${n.name}/scale`, s, [s.length])], [mid], BuiltinOptions.MulOptions, new MulOptionsT(ActivationFunctionType.NONE));
        const out = w.valueTensor(n.name, n.shape);
        w.op(BuiltinOperator.ADD, w.version(BuiltinOperator.ADD), [mid, w.floatConst(`${n.name}/offset`, t, [t.length])], [out], BuiltinOptions.AddOptions, new AddOptionsT(ActivationFunctionType.NONE));
        return;
      }
      case 'activation':
        w.values.set(n.name, activation(w.value(n.x), n.shape, n.activation, n.alpha, n.name));
        return;
      case 'add':
      case 'mul':
      case 'sub':
      case 'div':
      case 'maximum':
      case 'minimum': {
        const operand = (o: typeof n.a) => ('value' in o ? w.value(o.value) : w.floatConst(o.weight, weight(o.weight).data, weight(o.weight).shape));
        const [a, b] = [operand(n.a), operand(n.b)];
        const fused = fusedOf(n.activation);
        const withFused = n.op !== 'maximum' && n.op !== 'minimum' ? fused : n.activation === 'linear' ? ActivationFunctionType.NONE : undefined;
        const out = withFused === undefined ? w.tensor(`${n.name}/op`, n.shape, TensorType.FLOAT32) : w.valueTensor(n.name, n.shape);
        const act = withFused ?? ActivationFunctionType.NONE;
        switch (n.op) {
          case 'add':
            w.op(BuiltinOperator.ADD, w.version(BuiltinOperator.ADD), [a, b], [out], BuiltinOptions.AddOptions, new AddOptionsT(act));
            break;
          case 'mul': {
            // op_version.cc: an int8 MUL whose rescale (s_a * s_b / s_out) is 1 or more needs version 3.
            const sc = (t: number) => w.tensors[t]!.quantization?.scale[0] ?? 0;
            const v = int8 && (sc(a) * sc(b)) / sc(out) >= 1 ? 3 : w.version(BuiltinOperator.MUL);
            w.op(BuiltinOperator.MUL, v, [a, b], [out], BuiltinOptions.MulOptions, new MulOptionsT(act));
            break;
          }
          case 'sub':
            w.op(BuiltinOperator.SUB, w.version(BuiltinOperator.SUB), [a, b], [out], BuiltinOptions.SubOptions, new SubOptionsT(act));
            break;
          case 'div':
            if (int8) throw new UnsupportedOpsError([`${n.name}(div, int8)`]);
            w.op(BuiltinOperator.DIV, w.version(BuiltinOperator.DIV), [a, b], [out], BuiltinOptions.DivOptions, new DivOptionsT(act));
            break;
          default: {
            const code = n.op === 'maximum' ? BuiltinOperator.MAXIMUM : BuiltinOperator.MINIMUM;
            w.op(code, w.version(code), [a, b], [out], BuiltinOptions.MaximumMinimumOptions, new MaximumMinimumOptionsT());
          }
        }
        if (withFused === undefined) w.values.set(n.name, activation(out, n.shape, n.activation, undefined, n.name));
        return;
      }
      case 'pad': {
        const xShape = graph.nodes.find((v) => v.name === n.x)!.shape;
        w.values.set(n.name, padValue(w.value(n.x), xShape, n.pads, n.value, n.name, n.shape));
        return;
      }
      case 'concat': {
        const rank = n.shape.length;
        const out = w.valueTensor(n.name, n.shape);
        w.op(BuiltinOperator.CONCATENATION, w.version(BuiltinOperator.CONCATENATION), n.xs.map((x) => w.value(x)), [out], BuiltinOptions.ConcatenationOptions,
          new ConcatenationOptionsT(n.axis < 0 ? n.axis + rank : n.axis, ActivationFunctionType.NONE));
        return;
      }
      case 'fake_quant':
        throw new UnsupportedOpsError([`${n.name}(fake_quant)`]);
      case 'reshape':
      case 'squeeze': {
        // Batch 1: both are a reshape to the node's own shape.
        const shape = batch1(n.shape);
        const x = w.value(n.x);
        // A reshape keeps the int8 parameters of its input (TFLite requires them equal).
        const out = int8 ? w.tensor(n.name, shape, TensorType.INT8, undefined, w.tensors[x]!.quantization!) : w.tensor(n.name, shape, TensorType.FLOAT32);
        w.values.set(n.name, out);
        w.op(BuiltinOperator.RESHAPE, 1, [x, w.int32(`${n.name}/shape`, shape)], [out], BuiltinOptions.ReshapeOptions, new ReshapeOptionsT(shape));
        return;
      }
    }
  }

  /** PAD / PADV2 of H and W; the result is value `valueName` when `shape` is given. */
  function padValue(x: number, xShape: number[], p: { top: number; bottom: number; left: number; right: number }, value: number, name: string, shape?: number[]): number {
    const outShape = shape ?? [xShape[0]!, xShape[1]! + p.top + p.bottom, xShape[2]! + p.left + p.right, xShape[3]!];
    const out = shape ? w.valueTensor(name, outShape) : int8 ? w.tensor(name, outShape, TensorType.INT8, undefined, w.tensors[x]!.quantization!) : w.tensor(name, outShape, TensorType.FLOAT32);
    const pads = w.int32(`${name}/paddings`, [0, 0, p.top, p.bottom, p.left, p.right, 0, 0], [4, 2]);
    if (value === 0) w.op(BuiltinOperator.PAD, w.version(BuiltinOperator.PAD), [x, pads], [out], BuiltinOptions.PadOptions, new PadOptionsT());
    else w.op(BuiltinOperator.PADV2, w.version(BuiltinOperator.PADV2), [x, pads, w.floatConst(`${name}/value`, Float32Array.of(value), [])], [out], BuiltinOptions.PadV2Options, new PadV2OptionsT());
    return out;
  }

  /** A separate activation op on tensor `x`; returns the tensor of value `name`. */
  function activation(x: number, shape: number[], a: Activation, alpha: number | undefined, name: string): number {
    if (a === 'linear') {
      w.values.set(name, x);
      return x;
    }
    const out = w.valueTensor(name, shape);
    const simple: Partial<Record<Activation, BuiltinOperator>> = {
      relu: BuiltinOperator.RELU,
      relu6: BuiltinOperator.RELU6,
      sigmoid: BuiltinOperator.LOGISTIC,
      tanh: BuiltinOperator.TANH,
      elu: BuiltinOperator.ELU,
    };
    const code = simple[a];
    if (code !== undefined) {
      if (a === 'elu' && (alpha ?? 1) !== 1) throw new UnsupportedOpsError([`${name}(elu alpha=${alpha})`]);
      if (int8 && a === 'elu') throw new UnsupportedOpsError([`${name}(elu, int8)`]);
      w.op(code, w.version(code), [x], [out]);
    } else if (a === 'softmax') {
      w.op(BuiltinOperator.SOFTMAX, w.version(BuiltinOperator.SOFTMAX), [x], [out], BuiltinOptions.SoftmaxOptions, new SoftmaxOptionsT(1));
    } else if (a === 'leaky_relu') {
      w.op(BuiltinOperator.LEAKY_RELU, int8 ? 1 : 1, [x], [out], BuiltinOptions.LeakyReluOptions, new LeakyReluOptionsT(alpha ?? 0.2));
    } else if (a === 'swish' && !int8) {
      const sig = w.tensor(`${name}/sigmoid`, shape, TensorType.FLOAT32);
      w.op(BuiltinOperator.LOGISTIC, 1, [x], [sig]);
      w.op(BuiltinOperator.MUL, 1, [x, sig], [out], BuiltinOptions.MulOptions, new MulOptionsT(ActivationFunctionType.NONE));
    } else if (a === 'hard_sigmoid' && !int8) {
      // tfjs' hardSigmoid: min(relu(0.2x + 0.5), 1).
      const scaled = w.tensor(`${name}/scaled`, shape, TensorType.FLOAT32);
      w.op(BuiltinOperator.MUL, 1, [x, w.floatConst(`${name}/slope`, Float32Array.of(0.2), [])], [scaled], BuiltinOptions.MulOptions, new MulOptionsT(ActivationFunctionType.NONE));
      const shifted = w.tensor(`${name}/shifted`, shape, TensorType.FLOAT32);
      w.op(BuiltinOperator.ADD, 1, [scaled, w.floatConst(`${name}/offset`, Float32Array.of(0.5), [])], [shifted], BuiltinOptions.AddOptions, new AddOptionsT(ActivationFunctionType.RELU));
      w.op(BuiltinOperator.MINIMUM, 1, [shifted, w.floatConst(`${name}/one`, Float32Array.of(1), [])], [out], BuiltinOptions.MaximumMinimumOptions, new MaximumMinimumOptionsT());
    } else throw new UnsupportedOpsError([`${name}(${a}${int8 ? ', int8' : ''})`]);
    return out;
  }

  let output = w.value(graph.output);
  if (int8) {
    // The int8 result requantized to the I/O type (softmax: scale 1/256 either way).
    if (int8.io === 'uint8') {
      const q = w.tensors[output]!.quantization!;
      const o = w.tensor(`${graph.output}/uint8`, w.tensors[output]!.shape, TensorType.UINT8, undefined, new QuantizationParametersT([], [], q.scale, [q.zeroPoint[0]! + 128n]));
      w.op(BuiltinOperator.QUANTIZE, 1, [output], [o], BuiltinOptions.QuantizeOptions, new QuantizeOptionsT());
      // The model's output keeps the graph output's name.
      w.tensors[output]!.name = `${graph.output}/int8`;
      w.tensors[o]!.name = graph.output;
      output = o;
    }
  }

  const metadata: MetadataT[] = [];
  for (const m of opts.metadata ?? []) {
    metadata.push(new MetadataT(m.name, w.buffers.length));
    w.buffers.push(new AlignedBuffer(m.data));
  }
  const model = new ModelT(
    3,
    w.codes,
    [new SubGraphT(w.tensors, [ioInput], [output], w.operators, 'main')],
    opts.description ?? 'retrain-ts',
    w.buffers,
    [],
    metadata,
  );
  const builder = new flatbuffers.Builder(1024 * 1024);
  Model.finishModelBuffer(builder, model.pack(builder));
  return builder.asUint8Array();
}
