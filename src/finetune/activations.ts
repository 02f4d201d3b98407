/**
 * The frozen bottom of a split module as a feature extractor whose "bottleneck" is
 * the activation entering the fine-tuned top ([7, 7, 160] for MobileNet V2's top 4,
 * flattened). The bottleneck stage then caches it like any bottleneck: one file per
 * image under --bottleneck_dir, keyed by this extractor's id (module id + cut), the
 * image's size, mtime and content hash, written atomically; distorted variants too.
 *
 * The bottom runs on ONNX Runtime (the module's Graph cut at the split, written by
 * the shared ONNX writer), or on tfjs when ONNX Runtime is unavailable.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { errorMessage } from '../errors.js';
import { pruneGraph } from '../graph/build.js';
import type { Graph, Node } from '../graph/ir.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor, OnnxExtractor } from '../module/index.js';
import type { OnnxSession } from '../module/onnx/session.js';
import { runNodes } from './executor.js';
import type { GraphSplit } from './split.js';

/** Bumped when the bottom's computation changes, so cached activations are redone. */
const ACTIVATION_VERSION = 1;

/** The graph from the input to the cut, flattened per image ([N, H*W*C], NHWC order). */
export function bottomGraph(g: Graph, split: GraphSplit): Graph {
  const bottom = pruneGraph({ ...g, output: split.cut });
  const size = split.cutShape.reduce((p, d) => p * d, 1);
  const flat = `${split.cut}/fine_tune_activation`;
  const reshape: Node = { op: 'reshape', name: flat, x: split.cut, target: [-1, size], shape: [-1, size] };
  return { ...bottom, nodes: [...bottom.nodes, reshape], output: flat };
}

export interface ActivationExtractorOptions {
  /** ONNX Runtime's intra-op threads (default: one per core). */
  threads?: number;
  log: Logger;
}

/**
 * The bottom as an extractor of kind 'onnx' (so the bottleneck stage runs it on ONNX
 * Runtime and never in tfjs worker threads, which would load the whole module).
 * `onOrt` tells the caller whether ONNX Runtime runs it; when it does not, cache with
 * numWorkers 0 (tfjs on the main thread).
 */
export async function activationExtractor(ex: FeatureExtractor, g: Graph, split: GraphSplit, o: ActivationExtractorOptions): Promise<{ extractor: OnnxExtractor; onOrt: boolean }> {
  const bottom = bottomGraph(g, split);
  const size = split.cutShape.reduce((p, d) => p * d, 1);
  const id = createHash('sha256').update(`${ex.info.id}:fine_tune_cut:${split.cut}:v${ACTIVATION_VERSION}`).digest('hex');
  let bytes: Uint8Array | undefined;
  let session: OnnxSession | undefined;
  try {
    const [{ toOnnx }, { encodeModel }, { createOnnxSession }] = await Promise.all([import('../graph/to_onnx.js'), import('../module/onnx/builder.js'), import('../module/onnx/session.js')]);
    bytes = encodeModel(toOnnx(bottom));
    session = await createOnnxSession(bytes, { threads: o.threads });
    o.log.info(`Fine-tuning: the frozen bottom (input → ${split.cut}) runs on onnxruntime (${session.threads} thread${session.threads === 1 ? '' : 's'})`);
  } catch (err) {
    o.log.warn(`Fine-tuning: the frozen bottom runs on tfjs, not onnxruntime: ${errorMessage(err).split('\n')[0]}`);
  }
  const consts = new Map<string, tf.Tensor>();
  const weight = (k: string) => {
    let t = consts.get(k);
    if (!t) {
      const w = bottom.weights.get(k)!;
      consts.set(k, (t = tf.keep(tf.tensor(w.data, w.shape))));
    }
    return t;
  };
  const extractor: OnnxExtractor = {
    kind: 'onnx',
    info: { ...ex.info, id, name: `${ex.info.name}_cut${id.slice(0, 8)}`, bottleneckTensor: split.cut, bottleneckSize: size },
    inputSpec: ex.inputSpec,
    extract: (x) => tf.tidy(() => runNodes(bottom.nodes, new Map([[bottom.input, x]]), weight, false).get(bottom.output) as tf.Tensor2D),
    onnx: { session: async () => session, dispose: () => void session?.dispose().catch(() => {}) },
    dispose: () => {
      void session?.dispose().catch(() => {});
      tf.dispose([...consts.values()]);
    },
    bytes: bytes ?? new Uint8Array(),
    signature: undefined as unknown as OnnxExtractor['signature'],
  };
  return { extractor, onOrt: session !== undefined };
}
