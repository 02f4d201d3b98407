/**
 * TensorFlow interop: frozen GraphDef (.pb) ⇄ TF.js graph-model artifacts, and
 * SavedModel writing. A TF.js graph model's topology is TensorFlow's GraphDef in
 * protobuf JSON form with the Const values moved into the weights manifest, so
 * both directions only move Const tensors between the nodes and the weight data.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import * as tf from '@tensorflow/tfjs';
import { RetrainError, errorMessage } from '../errors.js';
import { writeAtomic } from '../util/fsutil.js';
import { concatBytes } from '../module/io.js';
import { reachable, type GraphNode } from './nodes.js';

/** Where the TensorFlow schema lives: protos/ at the package root (dist/src/export → ../../..). */
export const TF_PROTO_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../protos/tensorflow.proto');

let root: protobuf.Root | undefined;
function tfType(name: string): protobuf.Type {
  root ??= protobuf.loadSync(TF_PROTO_FILE);
  return root.lookupType(`tensorflow.${name}`);
}

/** protobuf JSON form, as TF.js model.json holds it: enum names, int64 as strings, bytes as base64. */
const JSON_FORM: protobuf.IConversionOptions = { enums: String, longs: String, bytes: String, defaults: false };

const DT = {
  FLOAT: 1, DOUBLE: 2, INT32: 3, UINT8: 4, INT16: 5, INT8: 6, STRING: 7, INT64: 9, BOOL: 10, UINT16: 17,
} as const;

function dtypeNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  const n = tfType('TensorProto').fields['dtype']!.resolve().resolvedType as protobuf.Enum;
  return n.values[String(v)] ?? 0;
}

function toNumber(v: unknown): number {
  return typeof v === 'number' ? v : Number(String(v));
}

/** A copy of the bytes in a typed array of the given kind (tensor_content is little-endian, like every host here). */
function viewAs<T>(bytes: Uint8Array, Ctor: new (b: ArrayBuffer) => T): T {
  return new Ctor(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
}

interface TensorMsg {
  dtype?: number;
  tensorShape?: { dim?: Array<{ size?: unknown }>; unknownRank?: boolean };
  tensorContent?: Uint8Array;
  floatVal?: number[];
  doubleVal?: number[];
  intVal?: number[];
  int64Val?: unknown[];
  boolVal?: boolean[];
  stringVal?: Uint8Array[];
}

/** TensorProto's repeated values fill the shape by repeating the last one (TF's rule for short lists). */
function fill<A extends { length: number; [i: number]: number }>(vals: ArrayLike<number>, count: number, out: A, what: string): A {
  if (vals.length > count) throw new Error(`${what} has ${vals.length} values for ${count} elements`);
  for (let i = 0; i < count; i++) out[i] = vals.length === 0 ? 0 : vals[Math.min(i, vals.length - 1)]!;
  return out;
}

/** One Const node's tensor as a TF.js weight (int64 and narrow ints become int32, double float32, as the converter does). */
function constWeight(name: string, t: TensorMsg): { spec: tf.io.WeightsManifestEntry; data: Uint8Array } {
  const shape = (t.tensorShape?.dim ?? []).map((d) => toNumber(d.size ?? 0));
  const count = shape.reduce((a, b) => a * b, 1);
  const content = t.tensorContent && t.tensorContent.length > 0 ? t.tensorContent : undefined;
  const bytesOf = (a: Float32Array | Int32Array | Uint8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const what = `Const ${name}`;
  switch (t.dtype) {
    case DT.FLOAT:
    case DT.DOUBLE: {
      const src = content ? (t.dtype === DT.FLOAT ? viewAs(content, Float32Array) : viewAs(content, Float64Array)) : t.dtype === DT.FLOAT ? t.floatVal ?? [] : t.doubleVal ?? [];
      return { spec: { name, shape, dtype: 'float32' }, data: bytesOf(fill(src, count, new Float32Array(count), what)) };
    }
    case DT.INT32:
    case DT.INT16:
    case DT.INT8:
    case DT.UINT8:
    case DT.UINT16:
    case DT.INT64: {
      let src: ArrayLike<number>;
      if (!content) src = t.dtype === DT.INT64 ? (t.int64Val ?? []).map(toNumber) : t.intVal ?? [];
      else if (t.dtype === DT.INT64) src = Array.from(viewAs(content, BigInt64Array), Number);
      else if (t.dtype === DT.INT32) src = viewAs(content, Int32Array);
      else if (t.dtype === DT.INT16) src = viewAs(content, Int16Array);
      else if (t.dtype === DT.UINT16) src = viewAs(content, Uint16Array);
      else if (t.dtype === DT.INT8) src = viewAs(content, Int8Array);
      else src = viewAs(content, Uint8Array);
      return { spec: { name, shape, dtype: 'int32' }, data: bytesOf(fill(src, count, new Int32Array(count), what)) };
    }
    case DT.BOOL: {
      const src = content ? viewAs(content, Uint8Array) : (t.boolVal ?? []).map(Number);
      return { spec: { name, shape, dtype: 'bool' }, data: fill(src, count, new Uint8Array(count), what) };
    }
    case DT.STRING: {
      // TF.js string weights: each string as a uint32 little-endian length, then its bytes.
      const vals = t.stringVal ?? [];
      const parts: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        const s = vals.length === 0 ? new Uint8Array(0) : vals[Math.min(i, vals.length - 1)]!;
        const len = Buffer.alloc(4);
        len.writeUInt32LE(s.length);
        parts.push(len, Buffer.from(s));
      }
      return { spec: { name, shape, dtype: 'string' }, data: Buffer.concat(parts) };
    }
    default:
      throw new Error(`${what} has TensorFlow dtype ${t.dtype}, which TF.js cannot hold`);
  }
}

/** Reads a .pb or .pb.gz file's bytes, gunzipping by name. */
export function readGraphFile(file: string): Uint8Array {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
    if (file.endsWith('.gz')) bytes = zlib.gunzipSync(bytes);
  } catch (err) {
    throw new RetrainError(`cannot read ${file}: ${errorMessage(err)}`, 1, { cause: err });
  }
  return bytes;
}

/** A frozen GraphDef as TF.js graph-model artifacts, ready for tf.loadGraphModel(tf.io.fromMemory(...)). */
export function graphDefToArtifacts(bytes: Uint8Array, where: string): tf.io.ModelArtifacts {
  const G = tfType('GraphDef');
  let msg: protobuf.Message & { node?: Array<{ name: string; op: string; attr?: Record<string, { tensor?: TensorMsg }> }> };
  try {
    msg = G.decode(bytes) as typeof msg;
  } catch (err) {
    throw new RetrainError(`${where} is not a TensorFlow GraphDef (${errorMessage(err)}): give a frozen graph .pb such as retrain.py's output_graph.pb`);
  }
  const nodes = msg.node ?? [];
  if (nodes.length === 0 || nodes.some((n) => !n.name || !n.op)) {
    throw new RetrainError(`${where} is not a TensorFlow GraphDef (no named nodes): give a frozen graph .pb such as retrain.py's output_graph.pb`);
  }
  const library = (msg as { library?: { function?: unknown[] } }).library;
  if ((library?.function?.length ?? 0) > 0) {
    throw new RetrainError(`${where} holds TensorFlow functions (TF2 control flow), which this reader does not support: freeze it as a TF1-style graph, or convert it with tensorflowjs_converter`);
  }
  const weightSpecs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  const TensorProto = tfType('TensorProto');
  for (const node of nodes) {
    // TF.js's executor passes a PlaceholderWithDefault's input tensor through without
    // a reference of its own, then frees it under the next op (retrain.py's
    // BottleneckInputPlaceholder). Unfed, it is an Identity, which the executor copies.
    if (node.op === 'PlaceholderWithDefault') node.op = 'Identity';
    if (node.op !== 'Const') continue;
    const t = node.attr?.['value']?.tensor;
    if (!t) throw new RetrainError(`${where}: Const node ${node.name} has no value`);
    try {
      const { spec, data } = constWeight(node.name, t);
      weightSpecs.push(spec);
      parts.push(data);
    } catch (err) {
      throw new RetrainError(`${where}: ${errorMessage(err)}`, 1, { cause: err });
    }
    // The executor takes Const values from the weights; the node keeps only dtype and shape.
    node.attr!['value']!.tensor = TensorProto.create({ dtype: t.dtype, tensorShape: t.tensorShape }) as TensorMsg;
  }
  const topology = G.toObject(msg, JSON_FORM);
  topology['versions'] ??= {}; // TF.js reads versions.producer
  return { modelTopology: topology, format: 'graph-model', generatedBy: 'TensorFlow GraphDef', weightSpecs, weightData: concatBytes(parts) };
}


/** The Const tensor TensorFlow needs for a TF.js weight, with the dtype the node declares. */
async function tensorProtoFor(node: GraphNode, w: tf.Tensor): Promise<Record<string, unknown>> {
  const declared = node.attr?.['value']?.tensor ?? {};
  const dtype = dtypeNumber(declared.dtype ?? node.attr?.['dtype']?.type ?? 'DT_FLOAT');
  const tensorShape = { dim: w.shape.map((d) => ({ size: d })) };
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (w.dtype === 'string') {
    return { dtype, tensorShape, stringVal: (await w.bytes()) as Uint8Array[] };
  }
  const v = (await w.data()) as Float32Array | Int32Array | Uint8Array;
  let content: Uint8Array;
  switch (dtype) {
    case DT.FLOAT: content = bytes(Float32Array.from(v)); break;
    case DT.DOUBLE: content = bytes(Float64Array.from(v)); break;
    case DT.INT32: content = bytes(Int32Array.from(v)); break;
    case DT.INT64: content = bytes(BigInt64Array.from(Array.from(v), (x) => BigInt(x))); break;
    case DT.INT16: content = bytes(Int16Array.from(v)); break;
    case DT.UINT16: content = bytes(Uint16Array.from(v)); break;
    case DT.INT8: content = bytes(Int8Array.from(v)); break;
    case DT.UINT8:
    case DT.BOOL: content = Uint8Array.from(v); break;
    default:
      throw new RetrainError(`Const ${node.name} has TensorFlow dtype ${String(declared.dtype)}, which the .pb writer does not support`);
  }
  return { dtype, tensorShape, tensorContent: content };
}

/** GraphDef (protobuf JSON form, Consts filled in) for TF.js graph-model artifacts. */
export async function artifactsToGraphDef(artifacts: tf.io.ModelArtifacts): Promise<Record<string, unknown>> {
  const topology = artifacts.modelTopology as { node: GraphNode[]; versions?: unknown; library?: { function?: unknown[] } };
  if ((topology.library?.function?.length ?? 0) > 0) {
    throw new RetrainError('the module graph has TensorFlow functions (control flow), which the .pb writer does not support: write a TF.js folder instead');
  }
  const weights = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs ?? []);
  try {
    const node: GraphNode[] = [];
    for (const n of topology.node) {
      if (n.op !== 'Const') {
        node.push(n);
        continue;
      }
      const w = weights[n.name];
      if (!w) throw new RetrainError(`Const ${n.name} has no weight in the model's weights manifest`);
      node.push({ ...n, attr: { ...n.attr, value: { tensor: await tensorProtoFor(n, w) } } });
    }
    return { node, versions: topology.versions };
  } finally {
    tf.dispose(weights);
  }
}

export function encodeGraphDef(graphDef: Record<string, unknown>): Uint8Array {
  const G = tfType('GraphDef');
  return G.encode(G.fromObject(graphDef)).finish();
}

export interface ServingSignature {
  /** Graph node fed with images, e.g. the module's Placeholder. */
  inputName: string;
  inputShape: number[];
  outputName: string;
  outputShape: number[];
}

/** retrain.py's export_model: tag "serve", signature "serving_default", input `image`, output `prediction`. */
export function encodeSavedModel(graphDef: Record<string, unknown>, sig: ServingSignature): Uint8Array {
  const S = tfType('SavedModel');
  const info = (name: string, shape: number[]) => ({ name: `${name}:0`, dtype: 'DT_FLOAT', tensorShape: { dim: shape.map((size) => ({ size })) } });
  const saved = {
    savedModelSchemaVersion: 1,
    metaGraphs: [
      {
        metaInfoDef: { tags: ['serve'] },
        graphDef,
        signatureDef: {
          serving_default: {
            inputs: { image: info(sig.inputName, sig.inputShape) },
            outputs: { prediction: info(sig.outputName, sig.outputShape) },
            methodName: 'tensorflow/serving/predict',
          },
        },
      },
    ],
  };
  return S.encode(S.fromObject(saved)).finish();
}

/** Writes a SavedModel folder: saved_model.pb and an empty variables/, as TensorFlow writes for a graph without variables. */
export async function writeSavedModel(dir: string, graphDef: Record<string, unknown>, sig: ServingSignature): Promise<void> {
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) throw new RetrainError(`--saved_model_dir ${dir} is a file: give a folder`);
  try {
    fs.mkdirSync(path.join(dir, 'variables'), { recursive: true });
  } catch (err) {
    throw new RetrainError(`cannot create --saved_model_dir ${dir}: ${errorMessage(err)}`, 1, { cause: err });
  }
  await writeAtomic(path.join(dir, 'saved_model.pb'), encodeSavedModel(graphDef, sig));
}


/**
 * The ops `output` needs that TF.js's graph executor has no kernel mapping for. The
 * executor would only fail at the first one at run time; this names them all up front.
 */
export function unsupportedOps(model: tf.GraphModel, topology: { node: GraphNode[] }, output: string): string[] {
  // GraphModel keeps its parsed graph private; a mapped node without a category has no op mapper.
  const mapped = (model as unknown as { executor?: { graph?: { nodes?: Record<string, { op: string; category?: string }> } } }).executor?.graph?.nodes;
  if (!mapped) return [];
  const need = reachable(topology.node, output);
  const ops = new Set<string>();
  for (const name of need) {
    const n = mapped[name];
    if (n && n.category === undefined) ops.add(n.op);
  }
  return [...ops].sort();
}
