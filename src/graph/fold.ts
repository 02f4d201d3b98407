/**
 * Rewrites that keep a graph's values but give runtimes with fused kernels (TFLite)
 * fewer, larger ops: batch norm folded into the conv before it, a bias add folded into
 * the conv/dense bias, and ReLU/ReLU6 fused into the op before it. Each applies only
 * when the intermediate value has no other reader (and is not the output).
 */
import { consumers, pruneGraph } from './build.js';
import type { Activation, Graph, Node, Weight } from './ir.js';

const FUSABLE: ReadonlySet<Activation> = new Set(['relu', 'relu6']);

export function foldForInference(g: Graph): Graph {
  const weights = new Map<string, Weight>(g.weights);
  const nodes: Node[] = g.nodes.map((n) => ({ ...n }) as Node);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const readers = consumers(g);
  /** Renames reads of `from` to `to` in every node (and the output). */
  const alias = new Map<string, string>();
  const resolve = (v: string): string => {
    let x = v;
    while (alias.has(x)) x = alias.get(x)!;
    return x;
  };
  let fresh = 0;
  const newWeight = (base: string, w: Weight): string => {
    let name = `${base}/folded`;
    while (weights.has(name)) name = `${base}/folded_${++fresh}`;
    weights.set(name, w);
    return name;
  };
  const single = (v: string) => readers.get(v) === 1 && v !== g.output;
  const kept: Node[] = [];
  for (const n of nodes) {
    rewriteInputs(n, resolve);
    const prev = 'x' in n ? byName.get(n.x) : undefined;
    // Batch norm after a conv with no activation: scale the filter, shift the bias.
    if (n.op === 'batch_norm' && prev && (prev.op === 'conv2d' || prev.op === 'depthwise_conv2d') && prev.activation === 'linear' && single(prev.name)) {
      const [scale, offset, mean, variance] = [n.scale, n.offset, n.mean, n.variance].map((w) => weights.get(w)!.data) as Float32Array[];
      const c = scale!.length;
      const mul = Float32Array.from({ length: c }, (_, i) => scale![i]! / Math.sqrt(variance![i]! + n.epsilon));
      const f = weights.get(prev.filter)!;
      const filter = new Float32Array(f.data.length);
      // The output channel is the last axis of both filter layouts (depthwise: c*m + j).
      for (let i = 0; i < f.data.length; i++) filter[i] = f.data[i]! * mul[i % c]!;
      const oldBias = prev.bias ? weights.get(prev.bias)!.data : new Float32Array(c);
      const bias = Float32Array.from({ length: c }, (_, i) => (oldBias[i]! - mean![i]!) * mul[i]! + offset![i]!);
      prev.filter = newWeight(prev.filter, { data: filter, shape: f.shape });
      prev.bias = newWeight(prev.bias ?? `${prev.name}/bias`, { data: bias, shape: [c] });
      alias.set(n.name, prev.name);
      renameTo(prev, n.name, byName, alias);
      continue;
    }
    // A [C] constant added after a conv/dense with no activation: part of its bias.
    if (n.op === 'add' && n.activation === 'linear') {
      const [v, w] = 'value' in n.a && 'weight' in n.b ? [n.a.value, n.b.weight] : 'value' in n.b && 'weight' in n.a ? [n.b.value, n.a.weight] : [undefined, undefined];
      const p = v === undefined ? undefined : byName.get(v);
      const add = w === undefined ? undefined : weights.get(w);
      if (p && add && (p.op === 'conv2d' || p.op === 'depthwise_conv2d' || p.op === 'dense') && p.activation === 'linear' && single(p.name)) {
        const c = p.shape[p.shape.length - 1]!;
        if (add.data.length === c && add.shape.length === 1) {
          const old = p.bias ? weights.get(p.bias)!.data : new Float32Array(c);
          p.bias = newWeight(p.bias ?? `${p.name}/bias`, { data: Float32Array.from({ length: c }, (_, i) => old[i]! + add.data[i]!), shape: [c] });
          renameTo(p, n.name, byName, alias);
          continue;
        }
      }
    }
    // ReLU / ReLU6 right after an op that has a fused activation.
    if (n.op === 'activation' && FUSABLE.has(n.activation) && prev && 'activation' in prev && prev.op !== 'activation' && prev.activation === 'linear' && single(prev.name)) {
      prev.activation = n.activation;
      renameTo(prev, n.name, byName, alias);
      continue;
    }
    kept.push(n);
  }
  return pruneGraph({ nodes: kept, input: g.input, output: resolve(g.output), weights });
}

/** `n` now defines the value named `name` (the node it absorbed), so readers and the output keep their names. */
function renameTo(n: Node, name: string, byName: Map<string, Node>, alias: Map<string, string>): void {
  alias.delete(name);
  alias.set(n.name, name);
  byName.delete(n.name);
  n.name = name;
  byName.set(name, n);
}

function rewriteInputs(n: Node, resolve: (v: string) => string): void {
  if ('x' in n) n.x = resolve(n.x);
  if (n.op === 'concat') n.xs = n.xs.map(resolve);
  if ('a' in n) {
    if ('value' in n.a) n.a = { value: resolve(n.a.value) };
    if ('value' in n.b) n.b = { value: resolve(n.b.value) };
  }
}
