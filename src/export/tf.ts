/**
 * Writing the retrained model for Python TensorFlow and TF Serving, as retrain.py
 * does: a frozen GraphDef (--output_graph *.pb) and a SavedModel (--saved_model_dir).
 */
import fs from 'node:fs';
import path from 'node:path';
import { RetrainError } from '../errors.js';
import { publishDir } from './publish.js';
import { SAVED_MODEL_FILE } from './outputs.js';
import type { FeatureExtractor, ModuleInfo } from '../module/index.js';
import type { HeadValues } from '../train/index.js';
import { writeAtomic } from '../util/fsutil.js';
import { appendHeadToGraph } from './graph.js';
import type { ExportOptions } from './tfjs.js';
import { artifactsToGraphDef, encodeGraphDef, writeSavedModel, type ServingSignature } from './tfgraph.js';
import { unfuseForTensorFlow } from './unfuse.js';

export function isFrozenGraphPath(p: string): boolean {
  return p.endsWith('.pb');
}

/** Fails before any work is done when a TensorFlow graph is asked for but the module cannot give one. */
export function checkTensorFlowExport(info: ModuleInfo, o: { outputGraph: string; savedModelDir?: string }): void {
  const flag = o.savedModelDir ? `--saved_model_dir ${o.savedModelDir}` : isFrozenGraphPath(o.outputGraph) ? `--output_graph ${o.outputGraph}` : undefined;
  if (flag && info.format !== 'graph-model') {
    throw new RetrainError(
      `${flag}: a TensorFlow graph can only be written when the module is a TF.js graph model, and ${info.spec} is a ${info.format}; ` +
        'use a graph-model module (such as a TF Hub feature vector) or write a TF.js folder instead',
      2,
    );
  }
}

/** The module with retrain.py's head on top as a TensorFlow GraphDef, and its serving signature. */
async function retrainedGraphDef(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<{ graphDef: Record<string, unknown>; sig: ServingSignature }> {
  if (ex.kind !== 'graph') {
    throw new RetrainError(`a ${ex.info.format} module cannot be written as a TensorFlow graph: use a graph-model module`);
  }
  const { artifacts, inputName } = appendHeadToGraph(
    ex.files.artifacts,
    ex.info.bottleneckTensor,
    ex.bottleneckRank,
    head,
    opts.labels.length,
    opts.finalTensorName,
  );
  // retrain.py's graph takes a float image batch of the module's size; fix the
  // size the module left open (--input_height/--input_width) so TF can check feeds.
  const inputShape = [-1, ex.info.inputHeight, ex.info.inputWidth, 3];
  const topology = artifacts.modelTopology as { node: Array<{ name: string; op: string; attr?: Record<string, unknown> }> };
  const node = topology.node.map((n) =>
    n.name === inputName ? { ...n, attr: { ...n.attr, dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: inputShape.map((size) => ({ size: String(size) })) } } } } : n,
  );
  const graphDef = await artifactsToGraphDef({ ...artifacts, modelTopology: { ...topology, node: unfuseForTensorFlow(node) } });
  return { graphDef, sig: { inputName, inputShape, outputName: opts.finalTensorName, outputShape: [-1, opts.labels.length] } };
}

/** --output_graph PATH.pb: the frozen graph retrain.py writes (weights as Const nodes, output final_result). */
export async function exportFrozenGraph(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const { graphDef } = await retrainedGraphDef(ex, head, opts);
  await writeAtomic(opts.dir, encodeGraphDef(graphDef));
}

/** --saved_model_dir: retrain.py's export_model (tag serve, signature serving_default: image → prediction). */
export async function exportSavedModel(ex: FeatureExtractor, head: HeadValues, opts: ExportOptions): Promise<void> {
  const { graphDef, sig } = await retrainedGraphDef(ex, head, opts);
  await publishDir(
    opts.dir,
    '--saved_model_dir',
    (name) => SAVED_MODEL_FILE.test(name),
    (dir) => writeSavedModel(dir, graphDef, sig),
    (dir) => {
      if (!(fs.statSync(path.join(dir, 'saved_model.pb'), { throwIfNoEntry: false })?.size ?? 0)) throw new RetrainError(`the SavedModel written to ${dir} has no saved_model.pb`);
    },
  );
}
