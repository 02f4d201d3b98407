/**
 * A tiny float32 TFLite classifier written with the flatc-generated code alone (no model
 * writer): input [1, H, W, 3] → MEAN over H and W → FULLY_CONNECTED → SOFTMAX. Tests use it
 * to check metadata and the Arm NN harness without depending on the exporter.
 */
import * as flatbuffers from 'flatbuffers';
import {
  Buffer as FbBuffer,
  BuiltinOperator,
  BuiltinOptions,
  FullyConnectedOptions,
  Metadata,
  Model,
  Operator,
  OperatorCode,
  ReducerOptions,
  SoftmaxOptions,
  SubGraph,
  Tensor,
  TensorType,
  ActivationFunctionType,
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

const bytesOf = (a: Float32Array | Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export function tinyClassifier(spec: TinyClassifier): Uint8Array {
  const classes = spec.bias.length;
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
  const buffers = [
    buffer(),
    buffer(bytesOf(spec.weights)),
    buffer(bytesOf(spec.bias)),
    buffer(bytesOf(new Int32Array([1, 2]))),
    ...(spec.metadata ? [buffer(spec.metadata)] : []),
  ];
  const tensor = (name: string, shape: number[], type: TensorType, buf: number): number => {
    const n = b.createString(name);
    const s = Tensor.createShapeVector(b, shape);
    Tensor.startTensor(b);
    Tensor.addShape(b, s);
    Tensor.addType(b, type);
    Tensor.addBuffer(b, buf);
    Tensor.addName(b, n);
    return Tensor.endTensor(b);
  };
  const tensors = [
    tensor('image', [1, spec.height, spec.width, 3], TensorType.FLOAT32, 0),
    tensor('axes', [2], TensorType.INT32, 3),
    tensor('pooled', [1, 3], TensorType.FLOAT32, 0),
    tensor('weights', [classes, 3], TensorType.FLOAT32, 1),
    tensor('bias', [classes], TensorType.FLOAT32, 2),
    tensor('logits', [1, classes], TensorType.FLOAT32, 0),
    tensor('final_result', [1, classes], TensorType.FLOAT32, 0),
  ];
  const op = (opcode: number, inputs: number[], outputs: number[], type: BuiltinOptions, options: number): number => {
    const i = Operator.createInputsVector(b, inputs);
    const o = Operator.createOutputsVector(b, outputs);
    Operator.startOperator(b);
    Operator.addOpcodeIndex(b, opcode);
    Operator.addInputs(b, i);
    Operator.addOutputs(b, o);
    Operator.addBuiltinOptionsType(b, type);
    Operator.addBuiltinOptions(b, options);
    return Operator.endOperator(b);
  };
  const ops = [
    op(0, [0, 1], [2], BuiltinOptions.ReducerOptions, ReducerOptions.createReducerOptions(b, false)),
    op(
      1,
      [2, 3, 4],
      [5],
      BuiltinOptions.FullyConnectedOptions,
      (FullyConnectedOptions.startFullyConnectedOptions(b),
      FullyConnectedOptions.addFusedActivationFunction(b, ActivationFunctionType.NONE),
      FullyConnectedOptions.endFullyConnectedOptions(b)),
    ),
    op(2, [5], [6], BuiltinOptions.SoftmaxOptions, SoftmaxOptions.createSoftmaxOptions(b, 1)),
  ];
  const subgraph = SubGraph.createSubGraph(
    b,
    SubGraph.createTensorsVector(b, tensors),
    SubGraph.createInputsVector(b, [0]),
    SubGraph.createOutputsVector(b, [6]),
    SubGraph.createOperatorsVector(b, ops),
    b.createString('main'),
  );
  const codes = [BuiltinOperator.MEAN, BuiltinOperator.FULLY_CONNECTED, BuiltinOperator.SOFTMAX].map((code) =>
    OperatorCode.createOperatorCode(b, code, 0, 1, code),
  );
  const metadata = spec.metadata ? [Metadata.createMetadata(b, b.createString('TFLITE_METADATA'), buffers.length - 1)] : [];
  const operatorCodes = Model.createOperatorCodesVector(b, codes);
  const subgraphs = Model.createSubgraphsVector(b, [subgraph]);
  const description = b.createString('retrain-ts test model');
  const bufferVec = Model.createBuffersVector(b, buffers);
  const metadataVec = Model.createMetadataVector(b, metadata);
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

/** What the tiny classifier computes, in float64: softmax(W · mean(image) + b). */
export function tinyClassifierReference(spec: TinyClassifier, image: Float32Array): number[] {
  const pixels = spec.height * spec.width;
  const mean = [0, 0, 0];
  for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) mean[c]! += image[p * 3 + c]! / pixels;
  const logits = Array.from(spec.bias, (bias, k) => bias + mean.reduce((s, m, c) => s + m * spec.weights[k * 3 + c]!, 0));
  const top = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - top));
  const sum = exp.reduce((s, e) => s + e, 0);
  return exp.map((e) => e / sum);
}
