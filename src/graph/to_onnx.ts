/**
 * Graph → ONNX: replays the nodes into the ONNX GraphBuilder (src/module/onnx/builder.ts),
 * which keeps 4-D values NCHW inside and maps TF axes, padding and broadcasting.
 * Input `input` [N, H, W, C] float NHWC; output the graph's output, named `outputName`.
 */
import { GraphBuilder, INPUT_NAME, BOTTLENECK_NAME, type ModelProto, type Value } from '../module/onnx/builder.js';
import type { BinaryNode, Graph } from './ir.js';

const BINARY: Record<BinaryNode['op'], 'Add' | 'Mul' | 'Sub' | 'Div' | 'Max' | 'Min'> = {
  add: 'Add',
  mul: 'Mul',
  sub: 'Sub',
  div: 'Div',
  maximum: 'Max',
  minimum: 'Min',
};

export interface ToOnnxOptions {
  /** Name of the model's output; default `bottleneck` (a feature vector, [N, D]). */
  outputName?: string;
  metadata?: Record<string, string>;
}

export function toOnnx(graph: Graph, opts: ToOnnxOptions = {}): ModelProto {
  return toOnnxWithValues(graph, opts).model;
}

/** The ONNX model and the ONNX name of each graph value (for reading intermediate values, e.g. to calibrate). */
export function toOnnxWithValues(graph: Graph, opts: ToOnnxOptions = {}): { model: ModelProto; onnxNames: Map<string, string> } {
  const g = new GraphBuilder();
  const outputName = opts.outputName ?? BOTTLENECK_NAME;
  // The output's name is the final Identity's alone.
  g.reserve([outputName]);
  const values = new Map<string, Value>();
  const weight = (name: string) => {
    const w = graph.weights.get(name);
    if (!w) throw new Error(`weight ${name} is missing`);
    return w;
  };
  const val = (name: string) => {
    const v = values.get(name);
    if (!v) throw new Error(`value ${name} is used before it is defined`);
    return v;
  };
  let inputShape: number[] = [];
  for (const n of graph.nodes) {
    let out: Value;
    switch (n.op) {
      case 'input':
        inputShape = n.shape;
        out = g.imageInput(n.shape[1]!, n.shape[2]!, n.shape[3]!);
        break;
      case 'conv2d':
      case 'depthwise_conv2d': {
        const f = weight(n.filter);
        const y = g.conv(
          val(n.x),
          { kernel: f.data, kernelShape: f.shape, depthwise: n.op === 'depthwise_conv2d', strides: n.strides, dilations: n.dilations, padding: n.padding, bias: n.bias ? weight(n.bias).data : undefined },
          n.activation === 'linear' ? n.name : `${n.name}/conv`,
        );
        out = g.activation(y, n.activation, n.name, n.alpha);
        break;
      }
      case 'dense': {
        const k = weight(n.kernel);
        const y = g.dense(val(n.x), k.data, k.shape as [number, number], n.bias ? weight(n.bias).data : undefined, n.activation === 'linear' ? n.name : `${n.name}/dense`);
        out = g.activation(y, n.activation, n.name, n.alpha);
        break;
      }
      case 'avg_pool':
      case 'max_pool':
        out = g.pool(val(n.x), n.op === 'avg_pool' ? 'avg' : 'max', n.ksize, n.strides, n.padding, n.name);
        break;
      case 'mean':
        out = g.mean(val(n.x), n.axes, n.keepDims, n.name);
        break;
      case 'batch_norm':
        out = g.batchNorm(val(n.x), { scale: weight(n.scale).data, offset: weight(n.offset).data, mean: weight(n.mean).data, variance: weight(n.variance).data, epsilon: n.epsilon }, n.name);
        break;
      case 'activation':
        out = g.activation(val(n.x), n.activation, n.name, n.alpha);
        break;
      case 'add':
      case 'mul':
      case 'sub':
      case 'div':
      case 'maximum':
      case 'minimum': {
        const base = n.activation === 'linear' ? n.name : `${n.name}/op`;
        let y: Value;
        if ('weight' in n.a && 'weight' in n.b) throw new Error(`${n.name}: two constants`);
        if ('weight' in n.a) y = g.binaryConst(BINARY[n.op], val((n.b as { value: string }).value), weight(n.a.weight).data, weight(n.a.weight).shape, true, base);
        else if ('weight' in n.b) y = g.binaryConst(BINARY[n.op], val(n.a.value), weight(n.b.weight).data, weight(n.b.weight).shape, false, base);
        else y = g.binary(BINARY[n.op], val(n.a.value), val(n.b.value), base);
        out = g.activation(y, n.activation, n.name);
        break;
      }
      case 'pad':
        out = g.pad(val(n.x), n.pads, n.name, n.value);
        break;
      case 'concat':
        out = g.concat(n.xs.map(val), n.axis, n.name);
        break;
      case 'reshape':
        out = g.reshape(val(n.x), n.target, n.name);
        break;
      case 'squeeze':
        out = g.dropAxes(val(n.x), n.axes, n.name);
        break;
    }
    values.set(n.name, out);
  }
  const output = g.vectorOutput(val(graph.output), outputName);
  const model = g.model([-1, inputShape[1]!, inputShape[2]!, inputShape[3]!], output, { 'retrain.input': INPUT_NAME, ...opts.metadata });
  return { model, onnxNames: new Map([...values].map(([k, v]) => [k, v.name])) };
}
