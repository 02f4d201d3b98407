/**
 * A converted module on ONNX Runtime: image batch in (NHWC float, as the image stage
 * makes it), bottleneck batch out.
 */
import os from 'node:os';
import type * as Ort from 'onnxruntime-node';
import { loadOnnxRuntime } from './runtime.js';

export interface OnnxSessionOptions {
  /** Intra-op threads; default: one per core. */
  threads?: number;
  /** The model's image layout; NCHW batches are transposed from the image stage's NHWC here. Default NHWC. */
  layout?: 'NHWC' | 'NCHW';
  /** The input to feed (default: the first). */
  inputName?: string;
  /** A model exported with a fixed batch size takes the images that many at a time. */
  batch?: number | null;
}

export interface OnnxSession {
  readonly inputName: string;
  readonly outputName: string;
  readonly threads: number;
  /** `batch` is [n, h, w, 3] row-major; the result is [n, D]. */
  run(batch: Float32Array, n: number, h: number, w: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Opens an ONNX model (bytes or a file path) whose first input takes NHWC images. */
export async function createOnnxSession(model: Uint8Array | string, opts: OnnxSessionOptions = {}): Promise<OnnxSession> {
  const ort = await loadOnnxRuntime();
  const threads = opts.threads ?? os.availableParallelism();
  const options: Ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  const inputName = opts.inputName ?? session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  const nchw = opts.layout === 'NCHW';
  const runOnce = async (batch: Float32Array, n: number, h: number, w: number): Promise<Float32Array> => {
    const data = batch.subarray(0, n * h * w * 3);
    const input = nchw ? new ort.Tensor('float32', toNchw(data, n, h, w), [n, 3, h, w]) : new ort.Tensor('float32', data, [n, h, w, 3]);
    const result = await session.run({ [inputName]: input });
    const out = result[outputName]!;
    // Copy out of ORT's buffer, so the tensor can be released now.
    const copy = (out.data as Float32Array).slice();
    out.dispose();
    return copy;
  };
  const fixed = opts.batch ?? 0;
  return {
    inputName,
    outputName,
    threads,
    async run(batch, n, h, w) {
      if (!(fixed > 0) || n === fixed) return runOnce(batch, n, h, w);
      if (n % fixed !== 0) throw new Error(`the model takes batches of exactly ${fixed} images, not ${n}: set --bottleneck_batch_size to ${fixed}, or export it with a dynamic batch axis`);
      const per = fixed * h * w * 3;
      const parts: Float32Array[] = [];
      for (let i = 0; i < n; i += fixed) parts.push(await runOnce(batch.subarray((i / fixed) * per, (i / fixed + 1) * per), fixed, h, w));
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) (out.set(p, at), (at += p.length));
      return out;
    },
    async dispose() {
      await session.release();
    },
  };
}

/** [n, h, w, 3] → [n, 3, h, w]: torch-exported models take channels first. */
function toNchw(x: Float32Array, n: number, h: number, w: number): Float32Array {
  const plane = h * w;
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    const src = b * plane * 3;
    const r = src;
    const g = src + plane;
    const bl = src + 2 * plane;
    for (let p = 0, s = src; p < plane; p++, s += 3) {
      out[r + p] = x[s]!;
      out[g + p] = x[s + 1]!;
      out[bl + p] = x[s + 2]!;
    }
  }
  return out;
}
