/** retrain.py's final_retrain_ops appended to a module's GraphDef (TF.js JSON form). */
import type * as tf from '@tensorflow/tfjs';
import { RetrainError } from '../errors.js';
import { concatBytes, weightSlices } from '../module/io.js';
import type { HeadValues } from '../train/index.js';
import { reachable, type GraphNode } from './nodes.js';

const floatType = { type: 'DT_FLOAT' };
function constNode(name: string, shape: number[]): GraphNode {
  return {
    name,
    op: 'Const',
    attr: { value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } }, dtype: floatType },
  };
}


/**
 * Appends retrain.py's final_retrain_ops (MatMul, Add, Softmax named final_result)
 * to the module's GraphDef, then keeps only what final_result needs, so the model
 * has exactly one output.
 */
export function appendHeadToGraph(
  artifacts: tf.io.ModelArtifacts,
  bottleneckNode: string,
  bottleneckRank: number,
  head: HeadValues,
  classes: number,
  finalTensorName: string,
): { artifacts: tf.io.ModelArtifacts; inputName: string } {
  const topology = artifacts.modelTopology as { node: GraphNode[]; [k: string]: unknown };
  const size = head.biases.length === classes ? head.weights.length / classes : NaN;
  const nodes: GraphNode[] = [...topology.node];
  let feature = bottleneckNode;
  if (bottleneckRank === 4) {
    feature = 'final_retrain_ops/bottleneck/Squeeze';
    nodes.push({ name: feature, op: 'Squeeze', input: [bottleneckNode], attr: { squeeze_dims: { list: { i: ['1', '2'] } }, T: floatType } });
  }
  const wName = 'final_retrain_ops/weights/final_weights';
  const bName = 'final_retrain_ops/biases/final_biases';
  if (nodes.some((n) => n.name === finalTensorName || n.name === wName)) {
    throw new RetrainError(`the module already has a node named ${finalTensorName}: choose another --final_tensor_name`);
  }
  const extraSpecs: tf.io.WeightsManifestEntry[] = [];
  const extraData: Float32Array[] = [];
  if (head.hidden) {
    const units = head.hidden.biases.length;
    const hiddenIn = head.hidden.weights.length / units;
    const hw = 'final_retrain_ops/hidden/weights';
    const hb = 'final_retrain_ops/hidden/biases';
    nodes.push(constNode(hw, [hiddenIn, units]), constNode(hb, [units]));
    nodes.push({ name: 'final_retrain_ops/hidden/MatMul', op: 'MatMul', input: [feature, hw], attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: floatType } });
    nodes.push({ name: 'final_retrain_ops/hidden/add', op: 'Add', input: ['final_retrain_ops/hidden/MatMul', hb], attr: { T: floatType } });
    nodes.push({ name: 'final_retrain_ops/hidden/Relu', op: 'Relu', input: ['final_retrain_ops/hidden/add'], attr: { T: floatType } });
    feature = 'final_retrain_ops/hidden/Relu';
    extraSpecs.push({ name: hw, shape: [hiddenIn, units], dtype: 'float32' }, { name: hb, shape: [units], dtype: 'float32' });
    extraData.push(head.hidden.weights, head.hidden.biases);
  }
  nodes.push(constNode(wName, [size, classes]), constNode(bName, [classes]));
  nodes.push({
    name: 'final_retrain_ops/Wx_plus_b/MatMul',
    op: 'MatMul',
    input: [feature, wName],
    attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: floatType },
  });
  nodes.push({ name: 'final_retrain_ops/Wx_plus_b/add', op: 'Add', input: ['final_retrain_ops/Wx_plus_b/MatMul', bName], attr: { T: floatType } });
  nodes.push({ name: finalTensorName, op: 'Softmax', input: ['final_retrain_ops/Wx_plus_b/add'], attr: { T: floatType } });

  const needed = reachable(nodes, finalTensorName);
  const kept = nodes.filter((n) => needed.has(n.name));
  const inputs = kept.filter((n) => n.op === 'Placeholder');
  if (inputs.length !== 1) throw new RetrainError(`the module graph has ${inputs.length} inputs; retrain needs exactly one image input`);

  const keptSpecs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  for (const { spec, bytes } of weightSlices(artifacts)) {
    if (!needed.has(spec.name)) continue;
    keptSpecs.push(spec);
    parts.push(bytes);
  }
  keptSpecs.push(...extraSpecs, { name: wName, shape: [size, classes], dtype: 'float32' }, { name: bName, shape: [classes], dtype: 'float32' });
  for (const a of [...extraData, head.weights, head.biases]) parts.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return {
    artifacts: {
      ...artifacts,
      modelTopology: { ...topology, node: kept },
      weightSpecs: keptSpecs,
      weightData: concatBytes(parts),
      signature: undefined,
    },
    inputName: inputs[0]!.name,
  };
}

