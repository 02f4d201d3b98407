/**
 * Shape inference for the graph representation: every reader computes a node's
 * NHWC shape here, and writers read the padding a node resolves to, so 'SAME'
 * means the same pixels in every format.
 */
import { UnsupportedOpsError } from './errors.js';
import type { Node, Padding } from './ir.js';

/** A node before its shape is known. */
export type NodeSpec = Node extends infer N ? (N extends Node ? Omit<N, 'shape'> : never) : never;

export interface Pads {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** TF 'SAME' padding of one axis: the odd pixel goes after (bottom/right). */
export function samePads(size: number, k: number, s: number, d: number): [number, number] {
  const out = Math.ceil(size / s);
  const total = Math.max((out - 1) * s + (k - 1) * d + 1 - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export function outSize(size: number, k: number, s: number, d: number, before: number, after: number): number {
  return Math.floor((size + before + after - ((k - 1) * d + 1)) / s) + 1;
}

/** The explicit pads a padding resolves to on an [N, H, W, C] input. */
export function resolvePads(padding: Padding, h: number, w: number, k: [number, number], s: [number, number], d: [number, number]): Pads {
  if (padding === 'VALID') return { top: 0, bottom: 0, left: 0, right: 0 };
  if (padding === 'SAME') {
    const [top, bottom] = samePads(h, k[0], s[0], d[0]);
    const [left, right] = samePads(w, k[1], s[1], d[1]);
    return { top, bottom, left, right };
  }
  return padding;
}

const norm = (a: number, r: number) => (a < 0 ? a + r : a);

/** Broadcast of two shapes, TF style (aligned at the end). */
export function broadcast(a: number[], b: number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const pad = (s: number[]) => [...Array<number>(rank - s.length).fill(1), ...s];
  const [x, y] = [pad(a), pad(b)];
  return x.map((d, i) => (d === 1 ? y[i]! : d));
}

/** The shape of the value `n` defines, from its inputs' shapes and its weights' shapes. */
export function inferShape(n: NodeSpec, valueShape: (name: string) => number[], weightShape: (name: string) => number[]): number[] {
  switch (n.op) {
    case 'input':
      throw new Error('an input node carries its own shape');
    case 'conv2d':
    case 'depthwise_conv2d': {
      const [b, h, w] = valueShape(n.x) as [number, number, number, number];
      const [kh, kw, cin, m] = weightShape(n.filter) as [number, number, number, number];
      const p = resolvePads(n.padding, h, w, [kh, kw], n.strides, n.dilations);
      const cout = n.op === 'conv2d' ? m : cin * m;
      return [b, outSize(h, kh, n.strides[0], n.dilations[0], p.top, p.bottom), outSize(w, kw, n.strides[1], n.dilations[1], p.left, p.right), cout];
    }
    case 'dense': {
      const x = valueShape(n.x);
      return [...x.slice(0, -1), weightShape(n.kernel)[1]!];
    }
    case 'avg_pool':
    case 'max_pool': {
      const [b, h, w, c] = valueShape(n.x) as [number, number, number, number];
      const p = resolvePads(n.padding, h, w, n.ksize, n.strides, [1, 1]);
      return [b, outSize(h, n.ksize[0], n.strides[0], 1, p.top, p.bottom), outSize(w, n.ksize[1], n.strides[1], 1, p.left, p.right), c];
    }
    case 'mean': {
      const x = valueShape(n.x);
      const axes = n.axes.map((a) => norm(a, x.length));
      return n.keepDims ? x.map((d, i) => (axes.includes(i) ? 1 : d)) : x.filter((_, i) => !axes.includes(i));
    }
    case 'batch_norm':
    case 'activation':
      return valueShape(n.x);
    case 'add':
    case 'mul':
    case 'sub':
    case 'div':
    case 'maximum':
    case 'minimum': {
      const s = (o: typeof n.a) => ('value' in o ? valueShape(o.value) : weightShape(o.weight));
      return broadcast(s(n.a), s(n.b));
    }
    case 'pad': {
      const [b, h, w, c] = valueShape(n.x) as [number, number, number, number];
      return [b, h + n.pads.top + n.pads.bottom, w + n.pads.left + n.pads.right, c];
    }
    case 'concat': {
      const shapes = n.xs.map(valueShape);
      const a = norm(n.axis, shapes[0]!.length);
      return shapes[0]!.map((d, i) => (i === a ? shapes.reduce((s, x) => (s < 0 || x[i]! < 0 ? -1 : s + x[i]!), 0) : d));
    }
    case 'reshape': {
      const x = valueShape(n.x);
      const per = x.slice(1);
      const rest = n.target.slice(1);
      const open = rest.filter((d) => d < 0).length;
      if (per.some((d) => d < 0) || open > 1) throw new UnsupportedOpsError([`Reshape(${n.name}: sizes unknown)`]);
      const size = per.reduce((p, d) => p * d, 1);
      const fixed = rest.filter((d) => d >= 0).reduce((p, d) => p * d, 1);
      const shape = [x[0]!, ...rest.map((d) => (d < 0 ? size / fixed : d))];
      // A reshape that moves values between images (e.g. [N*H*W, C]) has no per-image form.
      if (shape.slice(1).reduce((p, d) => p * d, 1) !== size) throw new UnsupportedOpsError([`Reshape(${n.name}: mixes the batch)`]);
      return shape;
    }
    case 'squeeze': {
      const x = valueShape(n.x);
      const axes = n.axes.map((a) => norm(a, x.length));
      return x.filter((_, i) => !axes.includes(i));
    }
  }
}
