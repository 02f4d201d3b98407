/**
 * `--output_graph model.tflite`: the module read into the shared Graph (src/graph/), the
 * head appended, folded for TFLite's fused kernels and written as one TFLite flatbuffer
 * with image-classifier metadata (TFLITE_METADATA) and labels.txt in the appended zip.
 * `--quantize_bytes 2` stores float16 weights; `--quantize int8` quantizes fully,
 * activation ranges calibrated on training images (./calibrate.ts).
 */
import { RetrainError, UsageError } from '../errors.js';
import { foldForInference } from '../graph/fold.js';
import { fromLayersModel } from '../graph/from_layers.js';
import { fromTfjsGraph } from '../graph/from_tfjs_graph.js';
import { UnsupportedOpsError } from '../graph/errors.js';
import { withHead, FINAL_RESULT, type HeadWeights } from '../graph/head.js';
import type { Graph } from '../graph/ir.js';
import { toTflite, type TfliteQuantization } from '../graph/to_tflite.js';
import { rangeToMeanStd } from '../image/index.js';
import type { FeatureExtractor } from '../module/index.js';
import { writeAtomic } from '../util/fsutil.js';
import { LABELS_FILE, METADATA_NAME, appendAssociatedFiles, buildModelMetadata } from './tflite/metadata.js';

export function isTflitePath(p: string): boolean {
  return p.endsWith('.tflite');
}

export type TfliteWeights = 'float32' | 'float16' | 'int8';

/** The weights a run asks for: --quantize int8, --quantize_bytes 2, or float32. */
export function tfliteWeights(o: { quantize?: 'int8'; quantizeBytes?: number }): TfliteWeights {
  return o.quantize === 'int8' ? 'int8' : o.quantizeBytes === 2 ? 'float16' : 'float32';
}

/** The module as a Graph, with the weights it has now (fine-tuned layers included). */
export async function moduleGraphOf(ex: FeatureExtractor): Promise<Graph> {
  const { info } = ex;
  switch (ex.kind) {
    case 'layers':
      // The live model: fine-tuning updates its variables in place.
      return fromLayersModel(ex.model, { height: info.inputHeight, width: info.inputWidth });
    case 'graph':
      return fromTfjsGraph(ex.files.artifacts, { outputNode: info.bottleneckTensor, height: info.inputHeight, width: info.inputWidth });
    case 'onnx': {
      const { onnxModuleGraph } = await import('../module/onnx/convert.js');
      return onnxModuleGraph(ex.bytes, { height: info.inputHeight, width: info.inputWidth });
    }
    case 'saved-model':
      throw new UsageError(`--output_graph: a ${info.format} module cannot be converted to TFLite; use its TF.js version as --tfhub_module`);
  }
}

/** What the exported graph is made of: the module, the head, folded. */
function classifierGraph(module: Graph, head: HeadWeights): Graph {
  return foldForInference(withHead(module, head));
}

/**
 * Refuses, before any bottleneck is computed, a `.tflite` --output_graph the writer
 * cannot make: the module is read and written once with a zero head, so an op TFLite
 * has no builtin for is named now.
 */
export async function checkTfliteExport(ex: FeatureExtractor, o: { outputGraph: string; quantize?: 'int8'; quantizeBytes?: number }): Promise<void> {
  if (!isTflitePath(o.outputGraph)) return;
  const flag = `--output_graph ${o.outputGraph}`;
  if (ex.kind === 'saved-model') throw new UsageError(`${flag}: a ${ex.info.format} module cannot be converted to TFLite; use its TF.js version as --tfhub_module`);
  try {
    const g = await moduleGraphOf(ex);
    const d = ex.info.bottleneckSize;
    const graph = classifierGraph(g, { weights: new Float32Array(d * 2), biases: new Float32Array(2) });
    toTflite(graph, { weights: 'float32' });
    if (tfliteWeights(o) === 'int8') {
      const { int8Unsupported } = await import('../graph/quantize.js');
      const bad = int8Unsupported(graph);
      if (bad.length) throw new UnsupportedOpsError(bad);
    }
  } catch (err) {
    if (err instanceof UnsupportedOpsError) {
      throw new RetrainError(`${flag}: the module uses ${err.ops.length === 1 ? 'an op' : 'ops'} the TFLite writer does not cover: ${err.ops.join(', ')}; write a TF.js folder or a .onnx file instead`);
    }
    throw err;
  }
}

export interface TfliteExportOptions {
  dir: string;
  labels: string[];
  weights: TfliteWeights;
  /** int8: the activation parameters (./calibrate.ts), computed on the float graph. */
  calibrate?: (graph: Graph) => Promise<TfliteQuantization>;
}

/** The mean and std that map pixels 0..255 to the module's input. */
function normalisation(ex: FeatureExtractor): { mean: number | number[]; std: number | number[] } {
  const { info } = ex;
  if (info.inputMean && info.inputStd) return { mean: [...info.inputMean], std: [...info.inputStd] };
  const { mean, std } = rangeToMeanStd(info.inputRange);
  // -0 (a range starting at 0) reads oddly in the metadata.
  return { mean: mean + 0, std };
}

export async function exportTflite(ex: FeatureExtractor, head: HeadWeights, opts: TfliteExportOptions): Promise<void> {
  const flag = `--output_graph ${opts.dir}`;
  let graph: Graph;
  try {
    graph = classifierGraph(await moduleGraphOf(ex), head);
  } catch (err) {
    if (err instanceof UnsupportedOpsError) throw new RetrainError(`${flag}: the module uses ops the TFLite writer does not cover (${err.ops.join(', ')}); write a TF.js folder or a .onnx file instead`);
    throw err;
  }
  const { mean, std } = normalisation(ex);
  let int8: TfliteQuantization | undefined;
  if (opts.weights === 'int8') {
    if (!opts.calibrate) throw new RetrainError(`${flag}: --quantize int8 needs training images to calibrate on`);
    int8 = await opts.calibrate(graph);
  }
  const io = int8 ? int8.io : 'float32';
  const { info } = ex;
  const metadata = buildModelMetadata({
    name: `${info.name} retrained`,
    description: `Identify the most prominent object in the image from a set of ${opts.labels.length} categories. Retrained by retrain-ts from the module ${info.name}.`,
    version: 'v1',
    author: 'retrain-ts',
    license: `The license of the module ${info.name} applies to its weights.`,
    mean,
    std,
    inputType: io,
    outputType: io,
    classes: opts.labels.length,
  });
  const model = toTflite(graph, { weights: opts.weights, int8, metadata: [{ name: METADATA_NAME, data: metadata }] });
  const labels = opts.labels.join('\n') + '\n';
  await writeAtomic(opts.dir, await appendAssociatedFiles(model, [{ name: LABELS_FILE, data: labels }]));
}

export { FINAL_RESULT };
