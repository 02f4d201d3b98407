/**
 * The one place that loads onnxruntime-node. It is an optional dependency: an install
 * whose onnxruntime-node postinstall failed (its CUDA download, offline) leaves it out,
 * and a broken native library can fail to load. Either way the caller gets one line
 * naming what is missing and the command that restores it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Ort from 'onnxruntime-node';
import { RetrainError, errorMessage } from '../../errors.js';

/** onnxruntime-node's own switch: keep the CPU engine its npm package ships, fetch nothing else. */
export const ORT_SKIP_DOWNLOAD = 'ONNXRUNTIME_NODE_INSTALL=skip';

export class OnnxRuntimeMissingError extends RetrainError {
  readonly command: string;
  constructor(reason: string, command: string, options?: { cause?: unknown }) {
    super(`onnxruntime-node, the native ONNX Runtime engine, ${reason}; restore it with: ${command}`, 1, options);
    this.name = 'OnnxRuntimeMissingError';
    this.command = command;
  }
}

/** The package's root folder (dist/src/module/onnx/ → ../../../..). */
function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
}

function packageName(root: string): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name?: string }).name ?? 'retrain-ts';
  } catch {
    return 'retrain-ts';
  }
}

/**
 * The command that reinstalls the engine where this copy was installed: a clone gets
 * `npm ci`; an installed copy (global, npx's cache, or a project's dependency) gets the
 * global install, which is how the README installs the tool.
 */
export function restoreCommand(root = packageRoot()): string {
  const installed = path.basename(path.dirname(root)) === 'node_modules' || path.basename(path.dirname(path.dirname(root))) === 'node_modules';
  return installed ? `${ORT_SKIP_DOWNLOAD} npm install -g ${packageName(root)}` : `${ORT_SKIP_DOWNLOAD} npm ci`;
}

let loading: Promise<typeof Ort> | undefined;

/** onnxruntime-node, loaded once; rejects with OnnxRuntimeMissingError. */
export function loadOnnxRuntime(): Promise<typeof Ort> {
  loading ??= import('onnxruntime-node').catch((err: unknown) => {
    const code = (err as { code?: string }).code;
    const reason =
      code === 'ERR_MODULE_NOT_FOUND' && /'onnxruntime-node'/.test(errorMessage(err))
        ? 'is not installed'
        : `cannot load (${errorMessage(err).split('\n')[0]})`;
    throw new OnnxRuntimeMissingError(reason, restoreCommand(), { cause: err });
  });
  return loading;
}

/** Whether the engine loads; the error says why not, in one line. */
export async function onnxRuntimeMissing(): Promise<OnnxRuntimeMissingError | undefined> {
  try {
    await loadOnnxRuntime();
    return undefined;
  } catch (err) {
    if (err instanceof OnnxRuntimeMissingError) return err;
    throw err;
  }
}

/** `--backend onnxruntime` asks for the engine by name: no quiet fallback to wasm. */
export async function requireOnnxRuntime(backend: string): Promise<void> {
  if (backend !== 'onnxruntime') return;
  const missing = await onnxRuntimeMissing();
  if (missing) throw new RetrainError(`--backend onnxruntime: ${missing.message}`, 1, { cause: missing });
}
