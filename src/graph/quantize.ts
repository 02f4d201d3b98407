/**
 * TFLite's int8 scheme (its quantization spec): activations asymmetric int8 per tensor,
 * real = (q - zero_point) * scale with 0 exactly representable; ops that move values
 * without computing (reshape, pad, pooling) keep their input's parameters; softmax and
 * logistic outputs are fixed at scale 1/256, zero point -128; tanh at 1/128, 0.
 */
import type { Graph, Node } from './ir.js';
import type { QuantParams } from './to_tflite.js';

export type ValueRange = [number, number];

/** int8 parameters covering [lo, hi] (widened to include 0). */
export function rangeParams(lo: number, hi: number): QuantParams {
  const a = Math.min(0, lo);
  const b = Math.max(0, hi);
  const scale = b > a ? (b - a) / 255 : 1 / 255;
  const zeroPoint = Math.max(-128, Math.min(127, Math.round(-128 - a / scale)));
  return { scale, zeroPoint };
}

const SAME_AS_INPUT = new Set<Node['op']>(['reshape', 'squeeze', 'pad', 'max_pool', 'avg_pool']);

/** The int8 parameters of every graph value, from calibrated ranges; the input's from the module's input range (pixels 0..255 map exactly). */
export function activationParams(g: Graph, ranges: Map<string, ValueRange>, inputRange: [number, number]): Map<string, QuantParams> {
  const out = new Map<string, QuantParams>();
  for (const n of g.nodes) {
    if (n.op === 'input') {
      const [lo, hi] = inputRange;
      const scale = (hi - lo) / 255;
      // uint8 pixel p is (p - zp_u8) * scale: zp_u8 = -lo / scale; int8 is the same shifted by 128.
      out.set(n.name, { scale, zeroPoint: Math.round(-lo / scale) - 128 });
    } else if (SAME_AS_INPUT.has(n.op) && 'x' in n) out.set(n.name, out.get(n.x)!);
    else if ((n.op === 'activation' || n.op === 'dense' || n.op === 'conv2d') && (n.activation === 'softmax' || n.activation === 'sigmoid')) out.set(n.name, { scale: 1 / 256, zeroPoint: -128 });
    else if ('activation' in n && n.activation === 'tanh') out.set(n.name, { scale: 1 / 128, zeroPoint: 0 });
    else {
      const r = ranges.get(n.name);
      if (!r) throw new Error(`no calibrated range for ${n.name}`);
      out.set(n.name, rangeParams(r[0], r[1]));
    }
  }
  return out;
}

/** What the int8 writer cannot express (after ./fold.ts), named; empty when it can write the graph. */
export function int8Unsupported(g: Graph): string[] {
  const bad: string[] = [];
  const fused = new Set(['linear', 'relu', 'relu6']);
  for (const n of g.nodes) {
    switch (n.op) {
      case 'conv2d':
      case 'depthwise_conv2d':
      case 'dense':
      case 'add':
      case 'mul':
      case 'sub':
        if (!fused.has(n.activation)) bad.push(`${n.op}(${n.activation}, int8)`);
        break;
      case 'activation':
        if (!['relu', 'relu6', 'sigmoid', 'tanh', 'softmax', 'leaky_relu'].includes(n.activation)) bad.push(`${n.activation}(int8)`);
        break;
      case 'div':
      case 'maximum':
      case 'minimum':
      case 'concat':
      case 'batch_norm':
        bad.push(`${n.op}(int8)`);
        break;
      default:
    }
  }
  return [...new Set(bad)];
}
