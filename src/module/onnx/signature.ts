/**
 * What an ONNX feature extractor takes and gives, read from its graph (no session):
 * the image input's layout and size, and the bottleneck output's size. Used for
 * `--tfhub_module x.onnx` and for label-image on an exported `.onnx`.
 */
import { decodeModel, type ModelProto } from './builder.js';

export type Layout = 'NHWC' | 'NCHW';

export interface OnnxSignature {
  inputName: string;
  layout: Layout;
  /** null: symbolic or missing (the model takes any size). */
  height: number | null;
  width: number | null;
  /** The batch size the model is fixed to, or null for any. */
  batch: number | null;
  outputName: string;
  bottleneckSize: number;
}

/** A dimension: its fixed size, or null when symbolic or missing. */
type Dim = number | null;

function dimsOf(v: { type?: { tensorType?: { shape?: { dim?: Array<{ dimValue?: unknown }> | null } | null } | null } | null }): Dim[] | undefined {
  const dims = v.type?.tensorType?.shape?.dim;
  if (!dims) return undefined;
  return dims.map((d) => {
    const n = d.dimValue === undefined || d.dimValue === null ? 0 : Number(d.dimValue);
    return n > 0 ? n : null;
  });
}

const show = (dims: Dim[] | undefined) => (dims ? `[${dims.map((d) => d ?? '?').join(',')}]` : 'of unknown shape');

/** Which axis holds the 3 colour channels, or why it cannot be told. */
export function detectLayout(dims: Dim[]): Layout | string {
  if (dims.length !== 4) return `is ${dims.length}-D, not an image batch [N,3,H,W] or [N,H,W,3]`;
  const first = dims[1] === 3;
  const last = dims[3] === 3;
  if (first && !last) return 'NCHW';
  if (last && !first) return 'NHWC';
  if (first && last) return 'could be NCHW or NHWC (both axes 1 and 3 are 3)';
  return 'has no axis of 3 colour channels at 1 (NCHW) or 3 (NHWC)';
}

export type InputSignature = Pick<OnnxSignature, 'inputName' | 'layout' | 'height' | 'width' | 'batch'>;

/** Throws an Error whose message is one line naming what is wrong; callers add the file and flag. */
export function readSignature(model: Uint8Array | ModelProto): OnnxSignature {
  const m = model instanceof Uint8Array ? decodeModel(model) : model;
  const input = readInputSignature(m);
  const outputs = m.graph!.output ?? [];
  if (outputs.length !== 1) throw new Error(`it has ${outputs.length} outputs (${outputs.map((o) => o.name).join(', ')}); a feature extractor gives one [N,D] bottleneck`);
  const output = outputs[0]!;
  const outDims = dimsOf(output);
  const d = bottleneckDim(outDims);
  if (d === undefined) throw new Error(`its output ${output.name} has shape ${show(outDims)}, not a feature vector [N,D] (or [N,D,1,1], [N,1,1,D]): export the backbone up to its pooled features`);
  return { ...input, outputName: output.name ?? '', bottleneckSize: d };
}

/** The image input alone (label-image reads a classifier's, whatever it outputs). */
export function readInputSignature(m: ModelProto): InputSignature {
  const graph = m.graph;
  if (!graph) throw new Error('it has no graph');
  // Older exporters list the weights among the inputs too.
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((i) => !weights.has(i.name));
  if (inputs.length !== 1) throw new Error(`it has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); a feature extractor takes one image batch`);
  const input = inputs[0]!;
  const elem = input.type?.tensorType?.elemType;
  if (elem !== 1) throw new Error(`its input ${input.name} is not float32 (ONNX type ${elem ?? 'unknown'}): export it with a float input`);
  const inDims = dimsOf(input);
  const layout = inDims ? detectLayout(inDims) : 'has no declared shape';
  if (layout !== 'NHWC' && layout !== 'NCHW') throw new Error(`its input ${input.name} ${show(inDims)} ${layout}: cannot tell NCHW from NHWC`);
  const at = (i: number): Dim => inDims![i] ?? null;
  const [batch, h, w] = layout === 'NCHW' ? [at(0), at(2), at(3)] : [at(0), at(1), at(2)];
  return { inputName: input.name ?? '', layout, height: h, width: w, batch };
}

/** D of [N,D], [N,D,1,1] or [N,1,1,D] with D fixed. */
function bottleneckDim(dims: Dim[] | undefined): number | undefined {
  if (!dims) return undefined;
  if (dims.length === 2) return dims[1] ?? undefined;
  if (dims.length !== 4) return undefined;
  if (dims[2] === 1 && dims[3] === 1 && dims[1] !== null) return dims[1];
  if (dims[1] === 1 && dims[2] === 1 && dims[3] !== null) return dims[3];
  return undefined;
}
