/** GraphDef helpers shared by the TF.js graph export and the TensorFlow .pb reader. */

/** A GraphDef node in TF.js's JSON form (model.json's modelTopology.node). */
export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  attr?: Record<string, any>;
  device?: string;
  [k: string]: unknown;
}

/** Node names a tensor reference points at: "x:1" and "^x" both mean node x. */
export function nodeOf(ref: string): string {
  return ref.replace(/^\^/, '').replace(/:\d+$/, '');
}

/** Names of the nodes `output` depends on, itself included. */
export function reachable(nodes: ReadonlyArray<{ name: string; input?: string[] }>, output: string): Set<string> {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const seen = new Set<string>();
  const stack = [output];
  while (stack.length) {
    const name = stack.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    for (const ref of byName.get(name)?.input ?? []) stack.push(nodeOf(ref));
  }
  return seen;
}
