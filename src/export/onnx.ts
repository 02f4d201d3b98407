/**
 * `--output_graph out.onnx`: the module converted to ONNX (the same cached conversion
 * ONNX Runtime runs) with the head appended, output final_result, and retrain's
 * metadata (labels, input size and normalisation) in the model's metadata_props.
 */
import { RetrainError, UsageError } from '../errors.js';
import type { FeatureExtractor } from '../module/index.js';
import type { HeadValues } from '../train/index.js';
import { writeAtomic } from '../util/fsutil.js';
import { metadataFor } from './metadata.js';

/** metadata_props key holding retrain's metadata (RetrainMetadata) as JSON. */
export const RETRAIN_KEY = 'retrain';

export function isOnnxPath(p: string): boolean {
  return p.endsWith('.onnx');
}

/** Refuses, before any bottleneck is computed, what a `.onnx` --output_graph cannot do. */
export function checkOnnxExport(ex: FeatureExtractor, o: { outputGraph: string; quantizeBytes?: number }): void {
  if (!isOnnxPath(o.outputGraph)) return;
  if (o.quantizeBytes) throw new UsageError(`--quantize_bytes applies to TF.js folders, not --output_graph ${o.outputGraph}: drop one of them`);
  if (ex.kind === 'saved-model') throw new UsageError(`--output_graph ${o.outputGraph}: a ${ex.info.format} module cannot be converted to ONNX; use its TF.js version as --tfhub_module`);
}

export async function exportOnnx(ex: FeatureExtractor, head: HeadValues, opts: { dir: string; labels: string[]; onnxCacheDir: string }): Promise<void> {
  if (ex.kind === 'saved-model') throw new RetrainError(`--output_graph ${opts.dir}: a ${ex.info.format} module cannot be converted to ONNX; use its TF.js version as --tfhub_module`);
  const onnx = await import('../module/onnx/index.js');
  const { info } = ex;
  let moduleBytes: Uint8Array;
  let inputName = onnx.INPUT_NAME;
  if (ex.kind === 'onnx') {
    // An ONNX module is its own conversion; its input keeps the name (and layout) it was exported with.
    moduleBytes = ex.bytes;
    inputName = ex.signature.inputName;
  } else try {
    moduleBytes = (await onnx.moduleConversion(opts.onnxCacheDir, info, ex.files)).bytes;
  } catch (err) {
    if (err instanceof onnx.UnsupportedOpsError) {
      throw new RetrainError(`--output_graph ${opts.dir}: the module uses ops the ONNX converter does not cover (${err.ops.join(', ')}); write a TF.js folder instead`);
    }
    throw err;
  }
  const meta = metadataFor(ex, opts.labels, inputName, onnx.FINAL_TENSOR_NAME);
  await writeAtomic(opts.dir, onnx.appendHead(moduleBytes, head, opts.labels, { [RETRAIN_KEY]: JSON.stringify(meta) }));
}

/** An exported .onnx model's retrain metadata, if it carries any. */
export async function readOnnxMetadata(file: string, bytes: Uint8Array): Promise<unknown> {
  const { decodeModel } = await import('../module/onnx/builder.js');
  const text = decodeModel(bytes).metadataProps?.find((p) => p.key === RETRAIN_KEY)?.value;
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RetrainError(`${file}: its "${RETRAIN_KEY}" metadata is not JSON`);
  }
}
