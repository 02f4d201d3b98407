/**
 * Tiny TFLite classifiers written with the flatc-generated code alone (no model writer):
 * input [1, H, W, 3] → MEAN over H and W → FULLY_CONNECTED → SOFTMAX, in float32 or fully
 * quantized (uint8 in and out, int8 inside, as TFLite's converter makes full-integer
 * models). Tests use them to check metadata and the Arm NN harness without depending on
 * the exporter.
 */
import * as flatbuffers from 'flatbuffers';
import {
  ActivationFunctionType,
  Buffer as FbBuffer,
  BuiltinOperator,
  BuiltinOptions,
  Conv2DOptions,
  FullyConnectedOptions,
  Padding,
  Metadata,
  Model,
  Operator,
  OperatorCode,
  QuantizationDetails,
  QuantizationParameters,
  QuantizeOptions,
  ReducerOptions,
  SoftmaxOptions,
  SubGraph,
  Tensor,
  TensorType,
} from '../../src/export/tflite/generated/schema_generated.js';

export interface TinyClassifier {
  height: number;
  width: number;
  /** FULLY_CONNECTED weights, [classes, 3] (TFLite's [out, in]). */
  weights: Float32Array;
  bias: Float32Array;
  /** Bytes of a TFLITE_METADATA buffer to store, if any. */
  metadata?: Uint8Array;
}

interface Quant {
  scale: number[];
  zeroPoint: number[];
  axis?: number;
}

interface TensorSpec {
  name: string;
  shape: number[];
  type: TensorType;
  data?: Uint8Array;
  quant?: Quant;
}

interface OpSpec {
  code: BuiltinOperator;
  inputs: number[];
  outputs: number[];
  options: BuiltinOptions;
  build: (b: flatbuffers.Builder) => flatbuffers.Offset;
}

const bytesOf = (a: Float32Array | Int32Array | Int8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Writes one subgraph; tensor i's constant data (if any) gets its own buffer. */
function writeModel(tensors: TensorSpec[], ops: OpSpec[], input: number, output: number, metadata?: Uint8Array): Uint8Array {
  const b = new flatbuffers.Builder(4096);
  const buffer = (data?: Uint8Array): number => {
    if (!data) {
      FbBuffer.startBuffer(b);
      return FbBuffer.endBuffer(b);
    }
    // Constant data 16-byte aligned, as the schema's force_align asks.
    b.startVector(1, data.length, 16);
    for (let i = data.length - 1; i >= 0; i--) b.addInt8(data[i]!);
    return FbBuffer.createBuffer(b, b.endVector());
  };
  const buffers = [buffer()];
  const bufferOf = tensors.map((t) => (t.data ? buffers.push(buffer(t.data)) - 1 : 0));
  const metadataBuffer = metadata ? buffers.push(buffer(metadata)) - 1 : -1;

  const tensorOffsets = tensors.map((t, i) => {
    const name = b.createString(t.name);
    const shape = Tensor.createShapeVector(b, t.shape);
    const quant = t.quant
      ? QuantizationParameters.createQuantizationParameters(
          b,
          0,
          0,
          QuantizationParameters.createScaleVector(b, t.quant.scale),
          QuantizationParameters.createZeroPointVector(b, t.quant.zeroPoint.map(BigInt)),
          QuantizationDetails.NONE,
          0,
          t.quant.axis ?? 0,
        )
      : 0;
    Tensor.startTensor(b);
    Tensor.addShape(b, shape);
    Tensor.addType(b, t.type);
    Tensor.addBuffer(b, bufferOf[i]!);
    Tensor.addName(b, name);
    if (quant) Tensor.addQuantization(b, quant);
    return Tensor.endTensor(b);
  });
  const codes = [...new Set(ops.map((o) => o.code))];
  const opOffsets = ops.map((o) => {
    const options = o.build(b);
    const inputs = Operator.createInputsVector(b, o.inputs);
    const outputs = Operator.createOutputsVector(b, o.outputs);
    Operator.startOperator(b);
    Operator.addOpcodeIndex(b, codes.indexOf(o.code));
    Operator.addInputs(b, inputs);
    Operator.addOutputs(b, outputs);
    Operator.addBuiltinOptionsType(b, o.options);
    Operator.addBuiltinOptions(b, options);
    return Operator.endOperator(b);
  });
  const subgraph = SubGraph.createSubGraph(
    b,
    SubGraph.createTensorsVector(b, tensorOffsets),
    SubGraph.createInputsVector(b, [input]),
    SubGraph.createOutputsVector(b, [output]),
    SubGraph.createOperatorsVector(b, opOffsets),
    b.createString('main'),
  );
  const codeOffsets = codes.map((code) => OperatorCode.createOperatorCode(b, Math.min(code, 127), 0, 1, code));
  const metadataEntries = metadata ? [Metadata.createMetadata(b, b.createString('TFLITE_METADATA'), metadataBuffer)] : [];
  const operatorCodes = Model.createOperatorCodesVector(b, codeOffsets);
  const subgraphs = Model.createSubgraphsVector(b, [subgraph]);
  const description = b.createString('retrain-ts test model');
  const bufferVec = Model.createBuffersVector(b, buffers);
  const metadataVec = Model.createMetadataVector(b, metadataEntries);
  Model.startModel(b);
  Model.addVersion(b, 3);
  Model.addOperatorCodes(b, operatorCodes);
  Model.addSubgraphs(b, subgraphs);
  Model.addDescription(b, description);
  Model.addBuffers(b, bufferVec);
  Model.addMetadata(b, metadataVec);
  b.finish(Model.endModel(b), 'TFL3');
  return b.asUint8Array().slice();
}

const meanOp = (inputs: number[], outputs: number[]): OpSpec => ({
  code: BuiltinOperator.MEAN,
  inputs,
  outputs,
  options: BuiltinOptions.ReducerOptions,
  build: (b) => ReducerOptions.createReducerOptions(b, false),
});
const fcOp = (inputs: number[], outputs: number[]): OpSpec => ({
  code: BuiltinOperator.FULLY_CONNECTED,
  inputs,
  outputs,
  options: BuiltinOptions.FullyConnectedOptions,
  build: (b) => {
    FullyConnectedOptions.startFullyConnectedOptions(b);
    FullyConnectedOptions.addFusedActivationFunction(b, ActivationFunctionType.NONE);
    return FullyConnectedOptions.endFullyConnectedOptions(b);
  },
});
const conv1x1Op = (inputs: number[], outputs: number[]): OpSpec => ({
  code: BuiltinOperator.CONV_2D,
  inputs,
  outputs,
  options: BuiltinOptions.Conv2DOptions,
  build: (b) => Conv2DOptions.createConv2DOptions(b, Padding.VALID, 1, 1, ActivationFunctionType.NONE, 1, 1, TensorType.FLOAT32),
});
const softmaxOp = (inputs: number[], outputs: number[]): OpSpec => ({
  code: BuiltinOperator.SOFTMAX,
  inputs,
  outputs,
  options: BuiltinOptions.SoftmaxOptions,
  build: (b) => SoftmaxOptions.createSoftmaxOptions(b, 1),
});
const quantizeOp = (inputs: number[], outputs: number[]): OpSpec => ({
  code: BuiltinOperator.QUANTIZE,
  inputs,
  outputs,
  options: BuiltinOptions.QuantizeOptions,
  build: (b) => {
    QuantizeOptions.startQuantizeOptions(b);
    return QuantizeOptions.endQuantizeOptions(b);
  },
});

export function tinyClassifier(spec: TinyClassifier): Uint8Array {
  const classes = spec.bias.length;
  const tensors: TensorSpec[] = [
    { name: 'image', shape: [1, spec.height, spec.width, 3], type: TensorType.FLOAT32 },
    { name: 'axes', shape: [2], type: TensorType.INT32, data: bytesOf(new Int32Array([1, 2])) },
    { name: 'pooled', shape: [1, 3], type: TensorType.FLOAT32 },
    { name: 'weights', shape: [classes, 3], type: TensorType.FLOAT32, data: bytesOf(spec.weights) },
    { name: 'bias', shape: [classes], type: TensorType.FLOAT32, data: bytesOf(spec.bias) },
    { name: 'logits', shape: [1, classes], type: TensorType.FLOAT32 },
    { name: 'final_result', shape: [1, classes], type: TensorType.FLOAT32 },
  ];
  const ops = [meanOp([0, 1], [2]), fcOp([2, 3, 4], [5]), softmaxOp([5], [6])];
  return writeModel(tensors, ops, 0, 6, spec.metadata);
}

/** The quantization a full-integer tiny classifier uses, so tests can feed and read it. */
export interface TinyQuantized {
  model: Uint8Array;
  /** uint8 input: real = inputScale * q (zero point 0). */
  inputScale: number;
  /** uint8 output: probability = q / 256. */
  outputScale: number;
}

/**
 * The tiny classifier, full integer: uint8 input (pixels 0..255 as 0..1) → QUANTIZE to int8
 * → the layer → SOFTMAX (int8, scale 1/256, zero point -128) → QUANTIZE to uint8. The layer
 * is MEAN → FULLY_CONNECTED (int8 weights, one scale), or, with `conv`, a 1x1 CONV_2D with
 * one weight scale per output channel (as TFLite's converter quantizes convolutions) →
 * MEAN. Biases are int32 at input scale × weight scale.
 */
export function tinyQuantizedClassifier(spec: TinyClassifier, layer: 'fc' | 'conv' = 'fc', logitRange = 8): TinyQuantized {
  const classes = spec.bias.length;
  const inputScale = 1 / 255;
  const perChannel = layer === 'conv';
  const rows = Array.from({ length: classes }, (_, k) => Array.from(spec.weights.subarray(k * 3, k * 3 + 3)));
  const wScales = perChannel
    ? rows.map((r) => Math.max(...r.map(Math.abs)) / 127)
    : Array<number>(classes).fill(Math.max(...Array.from(spec.weights, Math.abs)) / 127);
  const qWeights = Int8Array.from(spec.weights, (w, i) => Math.round(w / wScales[Math.floor(i / 3)]!));
  const biasScales = wScales.map((s) => s * inputScale);
  const qBias = Int32Array.from(spec.bias, (v, k) => Math.round(v / biasScales[k]!));
  const zeros = Array<number>(classes).fill(0);
  const wQuant: Quant = perChannel ? { scale: wScales, zeroPoint: zeros, axis: 0 } : { scale: [wScales[0]!], zeroPoint: [0] };
  const bQuant: Quant = perChannel ? { scale: biasScales, zeroPoint: zeros, axis: 0 } : { scale: [biasScales[0]!], zeroPoint: [0] };
  const act: Quant = { scale: [inputScale], zeroPoint: [-128] };
  const logits: Quant = { scale: [logitRange / 127], zeroPoint: [0] };
  const image = [1, spec.height, spec.width, 3];
  const tensors: TensorSpec[] = [
    { name: 'image', shape: image, type: TensorType.UINT8, quant: { scale: [inputScale], zeroPoint: [0] } },
    { name: 'image_int8', shape: image, type: TensorType.INT8, quant: act },
    { name: 'axes', shape: [2], type: TensorType.INT32, data: bytesOf(new Int32Array([1, 2])) },
    {
      name: 'weights',
      shape: perChannel ? [classes, 1, 1, 3] : [classes, 3],
      type: TensorType.INT8,
      data: bytesOf(qWeights),
      quant: wQuant,
    },
    { name: 'bias', shape: [classes], type: TensorType.INT32, data: bytesOf(qBias), quant: bQuant },
    perChannel
      ? { name: 'conv', shape: [1, spec.height, spec.width, classes], type: TensorType.INT8, quant: logits }
      : { name: 'pooled', shape: [1, 3], type: TensorType.INT8, quant: act },
    { name: 'logits', shape: [1, classes], type: TensorType.INT8, quant: logits },
    { name: 'probs_int8', shape: [1, classes], type: TensorType.INT8, quant: { scale: [1 / 256], zeroPoint: [-128] } },
    { name: 'final_result', shape: [1, classes], type: TensorType.UINT8, quant: { scale: [1 / 256], zeroPoint: [0] } },
  ];
  const body = perChannel
    ? [conv1x1Op([1, 3, 4], [5]), meanOp([5, 2], [6])]
    : [meanOp([1, 2], [5]), fcOp([5, 3, 4], [6])];
  const ops = [quantizeOp([0], [1]), ...body, softmaxOp([6], [7]), quantizeOp([7], [8])];
  return { model: writeModel(tensors, ops, 0, 8, spec.metadata), inputScale, outputScale: 1 / 256 };
}

/** What the tiny classifier computes, in float64: softmax(W · mean(image) + b). */
export function tinyClassifierReference(spec: TinyClassifier, image: ArrayLike<number>): number[] {
  const pixels = spec.height * spec.width;
  const mean = [0, 0, 0];
  for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) mean[c]! += image[p * 3 + c]! / pixels;
  const logits = Array.from(spec.bias, (bias, k) => bias + mean.reduce((s, m, c) => s + m * spec.weights[k * 3 + c]!, 0));
  const top = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - top));
  const sum = exp.reduce((s, e) => s + e, 0);
  return exp.map((e) => e / sum);
}
