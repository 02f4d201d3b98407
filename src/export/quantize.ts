/**
 * --quantize_bytes: stores float32 weights as uint8 (affine: min + q * scale) or
 * float16, in the `quantization` field of weight specs that tensorflowjs_converter's
 * --quantize_uint8 / --quantize_float16 write, so plain tf.loadGraphModel and
 * tf.loadLayersModel dequantize them on load.
 */
import * as tf from '@tensorflow/tfjs';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { concatBytes, weightSlices } from '../module/io.js';

export type QuantizeBytes = 1 | 2;

/**
 * uint8 as the converter's quantization.py does: the range is widened to include 0
 * and nudged so that 0 is exactly representable (zero padding and ReLU outputs stay exact).
 */
function quantizeUint8(values: Float32Array): { data: Uint8Array; min: number; scale: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const data = new Uint8Array(values.length);
  if (values.length === 0 || lo === hi) return { data, min: values.length ? lo : 0, scale: 1 };
  lo = Math.min(0, lo);
  hi = Math.max(0, hi);
  const scale = (hi - lo) / 255;
  const zero = Math.round(-lo / scale);
  const min = -zero * scale;
  const max = 255 * scale + min;
  for (let i = 0; i < values.length; i++) {
    const v = Math.min(max, Math.max(min, values[i]!));
    data[i] = Math.round((v - min) / scale);
  }
  return { data, min, scale };
}

function toFloat16(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) setFloat16(view, i * 2, values[i]!, true);
  return out;
}

/** Dequantizes one float16 buffer; for tests and checks. */
export function fromFloat16(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float32Array.from({ length: bytes.byteLength / 2 }, (_, i) => getFloat16(view, i * 2, true));
}

/** A copy of the artifacts with every float32 weight quantized; other dtypes are kept as they are. */
export function quantizeArtifacts(artifacts: tf.io.ModelArtifacts, bytes: QuantizeBytes): tf.io.ModelArtifacts {
  const outSpecs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  for (const { spec, bytes: raw } of weightSlices(artifacts)) {
    if (spec.dtype !== 'float32' || spec.quantization) {
      outSpecs.push(spec);
      parts.push(raw);
      continue;
    }
    const values = new Float32Array(raw.slice().buffer);
    if (bytes === 1) {
      const q = quantizeUint8(values);
      outSpecs.push({ ...spec, quantization: { dtype: 'uint8', min: q.min, scale: q.scale } });
      parts.push(q.data);
    } else {
      outSpecs.push({ ...spec, quantization: { dtype: 'float16' } });
      parts.push(toFloat16(values));
    }
  }
  return { ...artifacts, weightSpecs: outSpecs, weightData: concatBytes(parts) };
}
