import { UsageError, RetrainError } from './errors.js';

/** `onnxruntime` runs the module's forward pass on ONNX Runtime; tfjs (as with `auto`) trains the head. */
export const BACKENDS = ['auto', 'onnxruntime', 'tensorflow', 'tensorflow-gpu', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export interface BackendInfo {
  /** What was asked for. */
  requested: BackendChoice;
  /** The tfjs backend name that runs (`tensorflow`, `wasm` or `cpu`). */
  name: string;
  /** The package that provides it. */
  package: string;
}

let active: BackendInfo | undefined;

async function tryImport(pkg: string): Promise<boolean> {
  try {
    await import(pkg);
    return true;
  } catch {
    return false;
  }
}

async function activate(name: string): Promise<boolean> {
  // Loaded here, not at the top: the flag tables import BACKENDS, and a usage error or --help should not wait for tfjs.
  const tf = await import('@tensorflow/tfjs');
  try {
    return (await tf.setBackend(name)) && tf.getBackend() === name;
  } catch {
    return false;
  }
}

/**
 * Picks and initialises the tfjs backend. The native packages are optional
 * dependencies: when their install failed they are simply absent, so every
 * engine falls back to wasm, then to plain JS.
 */
export async function initBackend(requested: BackendChoice = 'auto'): Promise<BackendInfo> {
  if (!BACKENDS.includes(requested)) {
    throw new UsageError(`--backend ${requested} is not one of ${BACKENDS.join(', ')}`);
  }
  if (active && active.requested === requested) return active;
  // tfjs prints advice and warnings with console.warn; the tool owns its output.
  (await import('@tensorflow/tfjs')).env().set('PROD', true);

  const candidates: Array<{ name: string; pkg: string }> = [];
  if (requested === 'tensorflow-gpu') candidates.push({ name: 'tensorflow', pkg: '@tensorflow/tfjs-node-gpu' });
  const auto = requested === 'auto' || requested === 'onnxruntime';
  if (requested === 'tensorflow' || auto) {
    candidates.push({ name: 'tensorflow', pkg: '@tensorflow/tfjs-node' });
  }
  if (requested === 'wasm' || auto) candidates.push({ name: 'wasm', pkg: '@tensorflow/tfjs-backend-wasm' });
  if (requested === 'cpu' || auto) candidates.push({ name: 'cpu', pkg: '@tensorflow/tfjs-backend-cpu' });

  for (const c of candidates) {
    if (c.name !== 'cpu' && !(await tryImport(c.pkg))) continue;
    if (await activate(c.name)) {
      active = { requested, name: c.name, package: c.pkg };
      return active;
    }
  }
  const pkg = candidates[0]?.pkg ?? requested;
  throw new RetrainError(
    `--backend ${requested}: ${pkg} is not installed or failed to load; ` +
      `install it, or use --backend auto to fall back to wasm or cpu`,
  );
}

/** Whether the module's forward pass may run on ONNX Runtime with this --backend. */
export function wantsOnnxRuntime(requested: BackendChoice): boolean {
  return requested === 'auto' || requested === 'onnxruntime';
}

export function activeBackend(): BackendInfo | undefined {
  return active;
}
