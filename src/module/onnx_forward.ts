/**
 * The module's forward pass on ONNX Runtime, chosen on first use: a run whose
 * bottlenecks are all cached never converts, loads or probes anything. Whatever
 * keeps a module off ONNX Runtime is one log line, and tfjs runs it instead.
 */
import type * as tf from '@tensorflow/tfjs';
import { activeBackend } from '../backend.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { LoadedModelFiles } from './io.js';
import type { OnnxModuleRef, OnnxSession } from './onnx/index.js';

export interface OnnxForward {
  /** The probed session, opened on the first call; undefined: tfjs runs the module. */
  session(): Promise<OnnxSession | undefined>;
  dispose(): void;
}

export interface OnnxForwardOptions {
  /** Where converted modules are cached (<module_cache_dir>/onnx). */
  cacheDir: string;
  /** Intra-op threads; default: one per core. */
  threads?: number;
}

function tfjsName(): string {
  const b = activeBackend();
  return b ? `tfjs ${b.name}` : 'tfjs';
}

export function onnxForward(
  module: OnnxModuleRef,
  files: LoadedModelFiles,
  tfjsExtract: (x: tf.Tensor4D) => tf.Tensor,
  opts: OnnxForwardOptions,
  log: Logger,
  /** What the log lines call the forward pass. */
  what = 'Module forward pass',
): OnnxForward {
  let opening: Promise<OnnxSession | undefined> | undefined;
  const open = async (): Promise<OnnxSession | undefined> => {
    let onnx: typeof import('./onnx/index.js');
    try {
      // Loaded only when a module runs there: label-image and cached runs skip the native library.
      onnx = await import('./onnx/index.js');
    } catch (err) {
      log.warn(`${what} on ${tfjsName()}: the ONNX engine's code cannot load (${errorMessage(err).split('\n')[0]})`);
      return undefined;
    }
    const r = await onnx.openOnnxEngine({ module, files, cacheDir: opts.cacheDir, tfjsExtract, threads: opts.threads });
    if (!r.ok) {
      log.warn(`${what} on ${tfjsName()}, not onnxruntime: ${r.reason}`);
      return undefined;
    }
    if (r.model.status === 'rebuilt') log.warn(`Rebuilt the converted module: ${r.model.reason ?? 'the cached one was damaged'}`);
    const how = r.model.status === 'hit' ? 'cached at' : 'converted and cached at';
    log.info(`${what} on onnxruntime (${r.session.threads} thread${r.session.threads === 1 ? '' : 's'}), ${how} ${r.model.path}`);
    return r.session;
  };
  return {
    session: () => (opening ??= open()),
    dispose() {
      void opening?.then((s) => s?.dispose()).catch(() => {});
    },
  };
}
