/**
 * `--tfhub_module feature_extractor.onnx`: an ONNX backbone (e.g. a torchvision or
 * timm model exported with torch.onnx.export, classifier removed). It always runs on
 * ONNX Runtime; tfjs only trains the head. Its layout, size and bottleneck are read
 * from the graph, its normalisation from the flags (pixel/255 when none are given).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RetrainError, UsageError, errorMessage } from '../errors.js';
import { perChannel, rangeToMeanStd, type Channels } from '../image/index.js';
import type { Logger } from '../log.js';
import type { OnnxSession } from './onnx/session.js';
import type { OnnxSignature } from './onnx/signature.js';
import type { OnnxForward } from './onnx_forward.js';

export function isOnnxModulePath(spec: string): boolean {
  return /\.onnx$/i.test(spec);
}

/** How pixels become the module's input, per channel. */
export interface Normalisation {
  mean: Channels;
  std: Channels;
}

export interface OnnxModuleFlags {
  spec: string;
  inputMean?: number[];
  inputStd?: number[];
  inputRange?: [number, number];
}

const channelsOf = (v: number[]): Channels => (v.length === 3 ? [v[0]!, v[1]!, v[2]!] : perChannel(v[0]!));

/** --input_mean/--input_std, else --input_range, else [0, 1] (pixel/255), which the log states. */
export function onnxNormalisation(o: OnnxModuleFlags, log: Logger): Normalisation {
  if (o.inputMean && o.inputStd) return { mean: channelsOf(o.inputMean), std: channelsOf(o.inputStd) };
  if (o.inputRange) {
    const { mean, std } = rangeToMeanStd(o.inputRange);
    return { mean: perChannel(mean), std: perChannel(std) };
  }
  log.info(
    `Normalisation for ${o.spec}: input = pixel / 255, in [0, 1] (the default for .onnx modules); ` +
      "if it was trained otherwise give --input_mean/--input_std, e.g. torchvision's 123.675,116.28,103.53 and 58.395,57.12,57.375",
  );
  return { mean: perChannel(0), std: perChannel(255) };
}

/** Reads the file and its signature; a file that is not a usable feature extractor is one line. */
export async function readOnnxModule(spec: string): Promise<{ file: string; bytes: Uint8Array; signature: OnnxSignature }> {
  const file = path.resolve(spec);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(fs.readFileSync(file));
  } catch (err) {
    throw new UsageError(`--tfhub_module ${spec}: cannot read it (${errorMessage(err).split('\n')[0]}): give a local .onnx file`);
  }
  const { decodeModel } = await import('./onnx/builder.js');
  const { readSignature } = await import('./onnx/signature.js');
  let model: ReturnType<typeof decodeModel>;
  try {
    model = decodeModel(bytes);
  } catch (err) {
    throw new RetrainError(`--tfhub_module ${spec} is not an ONNX model (${errorMessage(err).split('\n')[0]}): export it with torch.onnx.export or tf2onnx`);
  }
  try {
    return { file, bytes, signature: readSignature(model) };
  } catch (err) {
    throw new UsageError(`--tfhub_module ${spec}: ${errorMessage(err)}`);
  }
}

/** The module's identity: its bytes and everything that changes its bottlenecks. */
export function onnxModuleId(bytes: Uint8Array, extra: unknown): string {
  return createHash('sha256').update(bytes).update(JSON.stringify(extra)).digest('hex');
}

/** The forward pass, opened on first use (a fully cached run never loads ONNX Runtime); failing to open is an error, there is no tfjs fallback. */
export function onnxModuleForward(spec: string, bytes: Uint8Array, sig: OnnxSignature, threads: number | undefined, log: Logger): OnnxForward {
  let opening: Promise<OnnxSession> | undefined;
  const open = async (): Promise<OnnxSession> => {
    let session: OnnxSession;
    try {
      const { createOnnxSession } = await import('./onnx/session.js');
      session = await createOnnxSession(bytes, { threads, layout: sig.layout, inputName: sig.inputName, batch: sig.batch });
    } catch (err) {
      throw new RetrainError(`ONNX Runtime cannot load --tfhub_module ${spec}: ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
    }
    log.info(`Module forward pass on onnxruntime (${session.threads} thread${session.threads === 1 ? '' : 's'}), ${sig.layout} input`);
    // A model that loads but cannot run these inputs (an op ORT lacks, a size it rejects) names itself.
    const run = session.run.bind(session);
    return {
      ...session,
      run: (batch, n, h, w) =>
        run(batch, n, h, w).catch((err: unknown) => {
          throw new RetrainError(`--tfhub_module ${spec} fails on onnxruntime with ${n} ${h}x${w} image${n === 1 ? '' : 's'} (${sig.layout}): ${errorMessage(err).split('\n')[0]}`, 1, { cause: err });
        }),
      dispose: () => session.dispose(),
    };
  };
  return {
    session: () => (opening ??= open()),
    dispose() {
      void opening?.then((s) => s.dispose()).catch(() => {});
    },
  };
}
