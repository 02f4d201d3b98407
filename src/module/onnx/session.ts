/**
 * A converted module on ONNX Runtime: image batch in (NHWC float, as the image stage
 * makes it), bottleneck batch out.
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';

export interface OnnxSessionOptions {
  /** Intra-op threads; default: one per core. */
  threads?: number;
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
  const threads = opts.threads ?? os.availableParallelism();
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  return {
    inputName,
    outputName,
    threads,
    async run(batch, n, h, w) {
      const input = new ort.Tensor('float32', batch.subarray(0, n * h * w * 3), [n, h, w, 3]);
      const result = await session.run({ [inputName]: input });
      const out = result[outputName]!;
      const data = out.data as Float32Array;
      // Copy out of ORT's buffer, so the tensor can be released now.
      const copy = data.slice();
      out.dispose();
      return copy;
    },
    async dispose() {
      await session.release();
    },
  };
}
