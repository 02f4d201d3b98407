/**
 * The export of `--output_graph out.onnx`: a module's ONNX model with retrain's
 * head appended (optional ReLU hidden layer, then logits and softmax), its output
 * named `final_result`, and the labels in the model's metadata_props, so plain
 * onnxruntime reads the model and its classes from one file.
 */
import { GraphBuilder, decodeModel, encodeModel, valueInfo, type Value } from './builder.js';

export const FINAL_TENSOR_NAME = 'final_result';
/** metadata_props key holding the labels as a JSON array, in class order. */
export const LABELS_KEY = 'labels';

/** The head's values (same layout as the train stage's HeadValues). */
export interface OnnxHead {
  /** [D, C] row-major. */
  weights: Float32Array;
  biases: Float32Array;
  /** [D, H] and [H]: the --hidden_units ReLU layer. */
  hidden?: { weights: Float32Array; biases: Float32Array };
}

/** `module` (ONNX bytes, one output [N, D], [N, D, 1, 1] or [N, 1, 1, D]) with the head appended. */
export function appendHead(module: Uint8Array, head: OnnxHead, labels: string[], metadata: Record<string, string> = {}): Uint8Array {
  const m = decodeModel(module);
  const graph = m.graph;
  if (!graph || graph.output?.length !== 1) throw new Error('the module must have exactly one output');
  const out = graph.output[0]!;
  const nodes = (graph.node ??= []);
  const initializers = (graph.initializer ??= []);
  const dims = (out.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue ? Number(d.dimValue) : -1));
  // [N, 1, 1, D]: channels-last pooled features (a TF-style export).
  const last = dims.length === 4 && dims[1] === 1 && dims[2] === 1 && !(dims[3] === 1);
  const d = (last ? dims[3] : dims[1]) ?? -1;
  if (!(dims.length === 2 || (dims.length === 4 && ((dims[2] === 1 && dims[3] === 1) || last))) || d <= 0) {
    throw new Error(`the module's output ${out.name} has shape [${dims.join(',')}], not [N, D]`);
  }
  const classes = head.biases.length;
  if (classes !== labels.length) throw new Error(`the head has ${classes} classes but ${labels.length} labels`);
  const g = new GraphBuilder();
  g.reserve(nodes.flatMap((n) => n.output ?? []));
  g.reserve(initializers.map((t) => t.name ?? ''));
  g.reserve((graph.input ?? []).map((i) => i.name ?? ''));
  let x: Value = { name: out.name!, shape: [-1, d], nchw: false };
  if (dims.length === 4) x = { ...x, name: g.node('Flatten', [x.name], 'bottleneck_flat', { axis: { i: 1 } }) };
  let inSize = d;
  if (head.hidden) {
    const units = head.hidden.biases.length;
    if (head.hidden.weights.length !== inSize * units) throw new Error(`the hidden layer's weights are not [${inSize}, ${units}]`);
    x = g.dense(x, head.hidden.weights, [inSize, units], head.hidden.biases, 'hidden');
    x = g.activation(x, 'relu', 'hidden_relu');
    inSize = units;
  }
  if (head.weights.length !== inSize * classes) throw new Error(`the final layer's weights are not [${inSize}, ${classes}]`);
  const logits = g.dense(x, head.weights, [inSize, classes], head.biases, 'final_training_ops/Wx_plus_b');
  g.reserve([FINAL_TENSOR_NAME]);
  // axis 1 of a 2-D tensor means the same in every opset.
  g.nodes.push({ opType: 'Softmax', input: [logits.name], output: [FINAL_TENSOR_NAME], name: FINAL_TENSOR_NAME, attribute: [{ name: 'axis', type: 2, i: 1 }] });
  nodes.push(...g.nodes);
  initializers.push(...g.initializers);
  graph.output = [valueInfo(FINAL_TENSOR_NAME, [-1, classes]) as typeof out];
  const props = new Map((m.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
  props.set(LABELS_KEY, JSON.stringify(labels));
  for (const [k, v] of Object.entries(metadata)) props.set(k, v);
  m.metadataProps = [...props].map(([key, value]) => ({ key, value })) as typeof m.metadataProps;
  return encodeModel(m);
}
