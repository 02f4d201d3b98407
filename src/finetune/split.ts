/**
 * Where --fine_tune_layers cuts a module's Graph: the top N layers with weights
 * (conv2d, depthwise_conv2d, dense and batch_norm nodes, as the flag has always
 * counted layers with weights; ReLU, Add and pooling don't count), counted down from
 * the bottleneck, and the single value that enters them.
 */
import { UsageError } from '../errors.js';
import { nodeInputs, nodeWeights, pruneGraph } from '../graph/build.js';
import type { Graph, Node } from '../graph/ir.js';

/** The layers --fine_tune_layers counts: nodes with weights that learn (conv, depthwise, dense). */
export const COUNTED_OPS = new Set(['conv2d', 'depthwise_conv2d', 'dense', 'batch_norm']);

/** Where the graph is cut: the frozen bottom computes `cut`, the top computes the output from it. */
export interface GraphSplit {
  /** The single value entering the top. */
  cut: string;
  cutShape: number[];
  /** The top's nodes, in order. */
  top: Node[];
  /** The unfrozen nodes, bottom to top (names). */
  layers: string[];
  /** Their weights: what trains. */
  trainable: string[];
}

/**
 * The top N counted nodes, counted down from the bottleneck, and the cut below them:
 * the latest value such that every node after it that the output needs reads only
 * values computed after it (or the cut itself). A skip connection crossing the
 * input of the lowest unfrozen node moves the cut down to where it starts; the extra
 * nodes run in the top but stay frozen.
 */
export function splitGraph(g: Graph, n: number, where: string): GraphSplit {
  const index = new Map(g.nodes.map((node, i) => [node.name, i]));
  // Only what the output depends on.
  const nodes = pruneGraph(g).nodes;
  const needed = new Set(nodes.map((node) => node.name));
  const counted = nodes.filter((node) => COUNTED_OPS.has(node.op));
  if (n > counted.length) throw new UsageError(`--fine_tune_layers ${n} is more than the ${counted.length} layers with weights in module ${where}`);
  const unfrozen = counted.slice(-n);
  const lowest = unfrozen[0]!;
  const first = nodeInputs(lowest)[0]!;
  for (let at = index.get(first)!; at >= 0; at--) {
    const cut = g.nodes[at]!;
    if (!needed.has(cut.name)) continue;
    const top = nodes.filter((node) => index.get(node.name)! > at);
    const inside = new Set([cut.name, ...top.map((t) => t.name)]);
    if (top.every((t) => nodeInputs(t).every((x) => inside.has(x)))) {
      return {
        cut: cut.name,
        cutShape: cut.shape.slice(1),
        top,
        layers: unfrozen.map((u) => u.name),
        trainable: trainableWeights(top, unfrozen),
      };
    }
  }
  throw new UsageError(`--fine_tune_layers ${n}: no single value of module ${where} separates the top layers from the rest; use a smaller value`);
}

/**
 * What trains: the unfrozen layers' weights (batch norm: scale and offset, its
 * statistics stay), and a bias or scale applied by the node right after one of them
 * (graph models keep a depthwise conv's bias as a separate BiasAdd).
 */
function trainableWeights(top: Node[], unfrozen: Node[]): string[] {
  const names = new Set(unfrozen.map((u) => u.name));
  const out = new Set<string>();
  for (const u of unfrozen) for (const w of u.op === 'batch_norm' ? [u.scale, u.offset] : nodeWeights(u)) out.add(w);
  for (const t of top) {
    if ((t.op === 'add' || t.op === 'mul') && nodeInputs(t).length === 1 && names.has(nodeInputs(t)[0]!)) for (const w of nodeWeights(t)) out.add(w);
  }
  return [...out];
}
