/**
 * A Graph under construction: readers add nodes in topological order and get each
 * node's shape inferred (./shape.ts), with unique value and weight names.
 */
import type { Graph, Node, Weight } from './ir.js';
import { inferShape, type NodeSpec } from './shape.js';

export class IrBuilder {
  readonly nodes: Node[] = [];
  readonly weights = new Map<string, Weight>();
  private readonly names = new Set<string>();
  private readonly shapes = new Map<string, number[]>();

  /** A name not used yet by a value or a weight, derived from `base`. */
  unique(base: string): string {
    const clean = base.replace(/:0$/, '') || 'v';
    let name = clean;
    for (let k = 1; this.names.has(name); k++) name = `${clean}_${k}`;
    this.names.add(name);
    return name;
  }

  weight(base: string, data: Float32Array, shape: number[]): string {
    if (data.length !== shape.reduce((p, d) => p * d, 1)) throw new Error(`weight ${base}: ${data.length} values for shape [${shape.join(',')}]`);
    const name = this.unique(base);
    this.weights.set(name, { data, shape });
    return name;
  }

  input(base: string, shape: number[]): string {
    const name = this.unique(base);
    this.nodes.push({ op: 'input', name, shape });
    this.shapes.set(name, shape);
    return name;
  }

  /** Adds `spec` under a unique name derived from `spec.name`; returns the name. */
  add(spec: NodeSpec): string {
    const name = this.unique(spec.name);
    const shape = inferShape({ ...spec, name } as NodeSpec, (v) => this.shapeOf(v), (w) => this.weightOf(w).shape);
    this.nodes.push({ ...spec, name, shape } as Node);
    this.shapes.set(name, shape);
    return name;
  }

  shapeOf(value: string): number[] {
    const s = this.shapes.get(value);
    if (!s) throw new Error(`value ${value} is not defined yet`);
    return s;
  }

  weightOf(name: string): Weight {
    const w = this.weights.get(name);
    if (!w) throw new Error(`weight ${name} is not defined`);
    return w;
  }

  graph(input: string, output: string): Graph {
    // Only what the output depends on: readers may leave unused constants behind.
    return pruneGraph({ nodes: this.nodes, input, output, weights: this.weights });
  }
}

/** Operand value names of a node. */
export function nodeInputs(n: Node): string[] {
  switch (n.op) {
    case 'input':
      return [];
    case 'concat':
      return n.xs;
    case 'add':
    case 'mul':
    case 'sub':
    case 'div':
    case 'maximum':
    case 'minimum':
      return [n.a, n.b].flatMap((o) => ('value' in o ? [o.value] : []));
    default:
      return [n.x];
  }
}

/** Weight names a node reads. */
export function nodeWeights(n: Node): string[] {
  switch (n.op) {
    case 'conv2d':
    case 'depthwise_conv2d':
      return [n.filter, ...(n.bias ? [n.bias] : [])];
    case 'dense':
      return [n.kernel, ...(n.bias ? [n.bias] : [])];
    case 'batch_norm':
      return [n.scale, n.offset, n.mean, n.variance];
    case 'add':
    case 'mul':
    case 'sub':
    case 'div':
    case 'maximum':
    case 'minimum':
      return [n.a, n.b].flatMap((o) => ('weight' in o ? [o.weight] : []));
    default:
      return [];
  }
}

/** The nodes and weights the output depends on. */
export function pruneGraph(g: Graph): Graph {
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const live = new Set<string>();
  const stack = [g.output];
  while (stack.length) {
    const v = stack.pop()!;
    if (live.has(v)) continue;
    live.add(v);
    const n = byName.get(v);
    if (!n) throw new Error(`value ${v} is not defined`);
    stack.push(...nodeInputs(n));
  }
  const nodes = g.nodes.filter((n) => live.has(n.name));
  const weights = new Map<string, (typeof g.weights extends Map<string, infer W> ? W : never)>();
  for (const n of nodes) for (const w of nodeWeights(n)) weights.set(w, g.weights.get(w)!);
  return { nodes, input: g.input, output: g.output, weights };
}

/** How many nodes read each value (the output counts as one reader). */
export function consumers(g: Graph): Map<string, number> {
  const count = new Map<string, number>([[g.output, 1]]);
  for (const n of g.nodes) for (const i of nodeInputs(n)) count.set(i, (count.get(i) ?? 0) + 1);
  return count;
}
