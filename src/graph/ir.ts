/**
 * The one graph representation between reading a module and writing a format.
 *
 * Readers (TF.js graph models, TF.js layers models, .onnx files, .tflite files) produce a
 * `Graph`; writers (ONNX, TFLite), the fine-tuning executor and quantization read it. So an
 * op is mapped once per reader and once per writer, never once per pair.
 *
 * Conventions, chosen so that TF.js and TFLite map without layout changes:
 * - every value is logically NHWC (TensorFlow layout); a writer for a channels-first
 *   runtime (ONNX Runtime's conv kernels) transposes internally;
 * - shapes use -1 for the batch axis or an unknown size;
 * - weights live in `Graph.weights`, addressed by name, so fine-tuning can replace them
 *   and quantization can rewrite them without touching the nodes;
 * - conv / depthwise / dense carry a fused activation, as TFLite and TF.js' fused ops do.
 */

export type Activation = 'linear' | 'relu' | 'relu6' | 'sigmoid' | 'tanh' | 'swish' | 'hard_sigmoid' | 'elu' | 'leaky_relu' | 'softmax';

export type Padding = 'SAME' | 'VALID' | { top: number; bottom: number; left: number; right: number };

/** A constant tensor, row-major. */
export interface Weight {
  data: Float32Array;
  shape: number[];
}

/** Fields every node has: the value it defines and that value's NHWC shape. */
interface NodeBase {
  /** Unique name of the value this node defines (other nodes refer to it by this name). */
  name: string;
  shape: number[];
}

/** The image input, [-1, H, W, C] float32, already normalised to the module's range. */
export interface InputNode extends NodeBase {
  op: 'input';
}

export interface ConvNode extends NodeBase {
  op: 'conv2d' | 'depthwise_conv2d';
  x: string;
  /** Weight name: [kh, kw, cin, cout] (conv2d) or [kh, kw, cin, multiplier] (depthwise). */
  filter: string;
  /** Weight name: [cout] (or [cin * multiplier]). */
  bias?: string;
  strides: [number, number];
  dilations: [number, number];
  padding: Padding;
  activation: Activation;
  /** leaky_relu / elu parameter. */
  alpha?: number;
}

/** x · W + b on the last axis; W is [in, out]. */
export interface DenseNode extends NodeBase {
  op: 'dense';
  x: string;
  kernel: string;
  bias?: string;
  activation: Activation;
  alpha?: number;
}

export interface PoolNode extends NodeBase {
  op: 'avg_pool' | 'max_pool';
  x: string;
  ksize: [number, number];
  strides: [number, number];
  padding: Padding;
}

/** Mean over the given axes (a global average pool is axes [1, 2]). */
export interface MeanNode extends NodeBase {
  op: 'mean';
  x: string;
  axes: number[];
  keepDims: boolean;
}

/** Inference-mode batch norm on the last axis; weights are [C]. */
export interface BatchNormNode extends NodeBase {
  op: 'batch_norm';
  x: string;
  scale: string;
  offset: string;
  mean: string;
  variance: string;
  epsilon: number;
}

export interface ActivationNode extends NodeBase {
  op: 'activation';
  x: string;
  activation: Activation;
  alpha?: number;
}

/** Element-wise with TF broadcasting; either side may be a value or a weight. */
export interface BinaryNode extends NodeBase {
  op: 'add' | 'mul' | 'sub' | 'div' | 'maximum' | 'minimum';
  a: Operand;
  b: Operand;
  activation: Activation;
}

export type Operand = { value: string } | { weight: string };

/** Constant padding of H and W of a 4-D value. */
export interface PadNode extends NodeBase {
  op: 'pad';
  x: string;
  pads: { top: number; bottom: number; left: number; right: number };
  value: number;
}

export interface ConcatNode extends NodeBase {
  op: 'concat';
  xs: string[];
  axis: number;
}

/** TF Reshape that keeps the batch as the first axis (the target's first entry is -1). */
export interface ReshapeNode extends NodeBase {
  op: 'reshape';
  x: string;
  target: number[];
}

/** Removes size-1 axes. */
export interface SqueezeNode extends NodeBase {
  op: 'squeeze';
  x: string;
  axes: number[];
}

/**
 * An integer tensor of a quantized model seen as floats: round(x / scale) + zeroPoint,
 * clamped to [qmin, qmax], mapped back. Read from int8 .tflite files so that a float
 * runtime gives what an int8 runtime gives.
 */
export interface FakeQuantNode extends NodeBase {
  op: 'fake_quant';
  x: string;
  scale: number;
  zeroPoint: number;
  qmin: number;
  qmax: number;
}

export type Node =
  | InputNode
  | ConvNode
  | DenseNode
  | PoolNode
  | MeanNode
  | BatchNormNode
  | ActivationNode
  | BinaryNode
  | PadNode
  | ConcatNode
  | ReshapeNode
  | SqueezeNode
  | FakeQuantNode;

export type OpName = Node['op'];

export interface Graph {
  /** Topological order: every node's inputs are defined by earlier nodes. */
  nodes: Node[];
  /** Name of the input node's value. */
  input: string;
  /** Name of the output value ([N, D] bottleneck for a module; [N, classes] with a head). */
  output: string;
  weights: Map<string, Weight>;
}
