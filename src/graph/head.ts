/**
 * retrain's head as graph nodes: the bottleneck flattened to [N, D], the optional
 * --hidden_units ReLU layer, the logits, and softmax named `final_result`.
 */
import { pruneGraph } from './build.js';
import type { Graph, Node, Weight } from './ir.js';

export const FINAL_RESULT = 'final_result';

export interface HeadWeights {
  /** [D, C] row-major. */
  weights: Float32Array;
  biases: Float32Array;
  hidden?: { weights: Float32Array; biases: Float32Array };
}

/** A copy of `module` (output [N, D] or [N, 1, 1, D]) with the head on top; output `final_result`. */
export function withHead(module: Graph, head: HeadWeights): Graph {
  const nodes: Node[] = [...module.nodes];
  const weights = new Map<string, Weight>(module.weights);
  const taken = new Set([...nodes.map((n) => n.name), ...weights.keys()]);
  const unique = (base: string) => {
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  };
  const out = nodes.find((n) => n.name === module.output)!;
  const d = out.shape[out.shape.length - 1]!;
  if (!(out.shape.length === 2 || (out.shape.length === 4 && out.shape[1] === 1 && out.shape[2] === 1))) {
    throw new Error(`the bottleneck has shape [${out.shape.join(',')}], not a feature vector`);
  }
  let x = out.name;
  if (out.shape.length === 4) {
    const name = unique('bottleneck_flat');
    nodes.push({ op: 'reshape', name, shape: [out.shape[0]!, d], x, target: [-1, d] });
    x = name;
  }
  let inSize = d;
  const dense = (base: string, w: Float32Array, b: Float32Array, units: number, activation: 'relu' | 'linear') => {
    if (w.length !== inSize * units) throw new Error(`${base}'s weights are not [${inSize}, ${units}]`);
    const kernel = unique(`${base}/weights`);
    const bias = unique(`${base}/biases`);
    weights.set(kernel, { data: w, shape: [inSize, units] });
    weights.set(bias, { data: b, shape: [units] });
    const name = unique(base);
    nodes.push({ op: 'dense', name, shape: [-1, units], x, kernel, bias, activation });
    x = name;
    inSize = units;
  };
  if (head.hidden) dense('hidden', head.hidden.weights, head.hidden.biases, head.hidden.biases.length, 'relu');
  dense('final_training_ops/Wx_plus_b', head.weights, head.biases, head.biases.length, 'linear');
  if (taken.has(FINAL_RESULT)) throw new Error(`the module already has a value named ${FINAL_RESULT}`);
  nodes.push({ op: 'activation', name: FINAL_RESULT, shape: [-1, head.biases.length], x, activation: 'softmax' });
  return pruneGraph({ nodes, input: module.input, output: FINAL_RESULT, weights });
}
