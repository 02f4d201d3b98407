/**
 * The ONNX Runtime engine for a TF.js module, in one call: convert (or read the
 * cached conversion), open a session, and probe it against tfjs. Whatever stops it
 * comes back as one line the caller logs before running the module on tfjs.
 */
import type * as tf from '@tensorflow/tfjs';
import { errorMessage } from '../../errors.js';
import type { LoadedModelFiles } from '../io.js';
import { loadOrConvertOnnx, type CachedOnnx } from './cache.js';
import { UnsupportedOpsError, convertModule } from './convert.js';
import { PROBE_TOLERANCE, probeMaxAbsDiff } from './probe.js';
import { onnxRuntimeMissing } from './runtime.js';
import { createOnnxSession, type OnnxSession } from './session.js';

export { UnsupportedOpsError, convertModule, convertGraphArtifacts, convertLayersModel, CONVERTER_VERSION, INPUT_NAME, BOTTLENECK_NAME } from './convert.js';
export { loadOrConvertOnnx, onnxCachePath, type CachedOnnx } from './cache.js';
export { appendHead, FINAL_TENSOR_NAME, LABELS_KEY, type OnnxHead } from './head.js';
export { PROBE_TOLERANCE, probeMaxAbsDiff, engineMaxAbsDiff, maxAbsDiff } from './probe.js';
export { createOnnxSession, type OnnxSession, type OnnxSessionOptions } from './session.js';
export { OnnxRuntimeMissingError, loadOnnxRuntime, onnxRuntimeMissing, restoreCommand } from './runtime.js';
export { decodeModel } from './builder.js';
export { readSignature, readInputSignature, detectLayout, type Layout, type OnnxSignature, type InputSignature } from './signature.js';

/** What the engine needs of a module (ModuleInfo has all of it). */
export interface OnnxModuleRef {
  /** The module's identity (sha256 hex): the cache key. */
  id: string;
  bottleneckTensor: string;
  inputHeight: number;
  inputWidth: number;
  inputRange: [number, number];
}

/** The module's ONNX conversion, from the cache in `cacheDir`, converted and cached on first use. */
export function moduleConversion(cacheDir: string, m: Omit<OnnxModuleRef, 'inputRange'>, files: LoadedModelFiles): Promise<CachedOnnx> {
  return loadOrConvertOnnx(cacheDir, m.id, () => convertModule(files, { bottleneck: m.bottleneckTensor, height: m.inputHeight, width: m.inputWidth }));
}

export interface OpenOnnxOptions {
  module: OnnxModuleRef;
  files: LoadedModelFiles;
  /** Where converted modules are cached (e.g. the module cache dir). */
  cacheDir: string;
  /** tfjs' forward pass ([N, H, W, 3] → [N, D]), the probe's reference. */
  tfjsExtract: (x: tf.Tensor4D) => tf.Tensor;
  threads?: number;
}

export type OnnxEngineResult =
  | { ok: true; session: OnnxSession; model: CachedOnnx; probeDiff: number }
  | { ok: false; reason: string; unsupportedOps?: string[] };

export async function openOnnxEngine(opts: OpenOnnxOptions): Promise<OnnxEngineResult> {
  const { module: m } = opts;
  // Before converting: without the engine the conversion is wasted.
  const missing = await onnxRuntimeMissing();
  if (missing) return { ok: false, reason: missing.message };
  let model: CachedOnnx;
  try {
    model = await moduleConversion(opts.cacheDir, m, opts.files);
  } catch (err) {
    if (err instanceof UnsupportedOpsError) return { ok: false, reason: `the module uses ${err.ops.length === 1 ? 'an op' : 'ops'} the ONNX converter does not cover: ${err.ops.join(', ')}`, unsupportedOps: err.ops };
    return { ok: false, reason: `cannot convert the module to ONNX: ${errorMessage(err).split('\n')[0]}` };
  }
  let session: OnnxSession;
  try {
    session = await createOnnxSession(model.bytes, { threads: opts.threads });
  } catch (err) {
    return { ok: false, reason: `ONNX Runtime cannot load the converted module ${model.path}: ${errorMessage(err).split('\n')[0]}` };
  }
  let probeDiff: number;
  try {
    probeDiff = await probeMaxAbsDiff(session, opts.tfjsExtract, m.inputHeight, m.inputWidth, { range: m.inputRange });
  } catch (err) {
    await session.dispose();
    return { ok: false, reason: `the ONNX Runtime probe failed: ${errorMessage(err).split('\n')[0]}` };
  }
  if (!(probeDiff <= PROBE_TOLERANCE)) {
    await session.dispose();
    return { ok: false, reason: `ONNX Runtime's bottlenecks differ from tfjs' by ${probeDiff.toExponential(2)} (more than ${PROBE_TOLERANCE}) on the probe batch` };
  }
  return { ok: true, session, model, probeDiff };
}
