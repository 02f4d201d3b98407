/**
 * The TF.js converter fuses Conv2D/DepthwiseConv2dNative/MatMul with BiasAdd and an
 * activation into ops that are TF.js's own (FusedDepthwiseConv2dNative) or internal to
 * TensorFlow's grappler (_FusedConv2D, _FusedMatMul). A graph for TensorFlow and TF
 * Serving gets the plain ops back; the last one keeps the fused node's name, so
 * consumers and signatures still find it.
 */
import { RetrainError } from '../errors.js';
import type { GraphNode } from './nodes.js';

const BASE: Record<string, { op: string; attrs: string[] }> = {
  _FusedConv2D: { op: 'Conv2D', attrs: ['T', 'strides', 'padding', 'explicit_paddings', 'data_format', 'dilations', 'use_cudnn_on_gpu'] },
  FusedDepthwiseConv2dNative: { op: 'DepthwiseConv2dNative', attrs: ['T', 'strides', 'padding', 'explicit_paddings', 'data_format', 'dilations'] },
  _FusedMatMul: { op: 'MatMul', attrs: ['T', 'transpose_a', 'transpose_b'] },
};
const ACTIVATIONS = new Set(['Relu', 'Relu6', 'Elu', 'Selu', 'LeakyRelu', 'Sigmoid', 'Tanh']);

function pick(attr: Record<string, unknown> | undefined, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (attr?.[k] !== undefined) out[k] = attr[k];
  return out;
}

export function unfuseForTensorFlow(nodes: GraphNode[]): GraphNode[] {
  const out: GraphNode[] = [];
  for (const n of nodes) {
    const base = BASE[n.op];
    if (!base) {
      out.push(n);
      continue;
    }
    const fused = ((n.attr?.['fused_ops']?.list?.s ?? []) as string[]).map((s) => Buffer.from(s, 'base64').toString('utf8'));
    const [first, act, ...rest] = fused;
    const data = (n.input ?? []).filter((i) => !i.startsWith('^'));
    const control = (n.input ?? []).filter((i) => i.startsWith('^'));
    if (first !== 'BiasAdd' || rest.length > 0 || (act !== undefined && !ACTIVATIONS.has(act)) || data.length !== 3) {
      throw new RetrainError(`node ${n.name} is a ${n.op} with fused ops [${fused.join(', ')}], which has no plain TensorFlow form here; write a TF.js folder instead`);
    }
    const T = n.attr?.['T'];
    const convName = `${n.name}/${base.op}`;
    const biasName = act ? `${n.name}/BiasAdd` : n.name;
    out.push({ name: convName, op: base.op, input: [data[0]!, data[1]!, ...control], attr: pick(n.attr, base.attrs) });
    const biasAttr: Record<string, unknown> = { T };
    if (base.op !== 'MatMul' && n.attr?.['data_format']) biasAttr['data_format'] = n.attr['data_format'];
    out.push({ name: biasName, op: 'BiasAdd', input: [convName, data[2]!], attr: biasAttr });
    if (act) {
      const actAttr: Record<string, unknown> = { T };
      if (act === 'LeakyRelu' && n.attr?.['leakyrelu_alpha']) actAttr['alpha'] = n.attr['leakyrelu_alpha'];
      out.push({ name: n.name, op: act, input: [biasName], attr: actAttr });
    }
  }
  return out;
}
