/**
 * Reading and writing TF.js model folders (model.json + weight shards) without
 * tfjs-node's file:// handler, which the wasm and cpu backends lack. A model.json is
 * untrusted input: weight paths must stay inside the folder and sizes must match.
 */
import fs from 'node:fs';
import path from 'node:path';
// Types only: the flag tables reach this file, and must not load tfjs.
import type * as tf from '@tensorflow/tfjs';
import { RetrainError, UsageError, errorMessage } from '../errors.js';
import { writeAtomic } from '../util/fsutil.js';

export type ModelJson = tf.io.ModelJSON & { userDefinedMetadata?: Record<string, unknown> };

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2, complex64: 8 };
const SHARD_BYTES = 4 * 1024 * 1024;

/** Bytes one weight takes in the shards, quantization included. */
export function weightByteLength(w: tf.io.WeightsManifestEntry): number {
  const dtype = w.quantization?.dtype ?? w.dtype;
  const per = DTYPE_BYTES[dtype];
  if (per === undefined) throw new Error(`weight ${w.name} has dtype ${dtype}, which has no fixed size`);
  const count = w.shape.reduce((a, b) => a * b, 1);
  return count * per;
}

/** Total bytes each manifest group should have across its shard files. */
export function expectedGroupBytes(manifest: tf.io.WeightsManifestConfig): number[] {
  return manifest.map((g) => g.weights.reduce((sum, w) => sum + weightByteLength(w), 0));
}

/** All of the artifacts' weight bytes as one array. */
export function weightBytes(artifacts: tf.io.ModelArtifacts): Uint8Array {
  const data = artifacts.weightData as ArrayBuffer | ArrayBuffer[] | undefined;
  if (!data) return new Uint8Array(0);
  return Array.isArray(data) ? new Uint8Array(Buffer.concat(data.map((b) => new Uint8Array(b)))) : new Uint8Array(data);
}

/** Each weight spec with its bytes: weight data is the specs' bytes back to back. */
export function weightSlices(artifacts: tf.io.ModelArtifacts): Array<{ spec: tf.io.WeightsManifestEntry; bytes: Uint8Array }> {
  const data = weightBytes(artifacts);
  let offset = 0;
  return (artifacts.weightSpecs ?? []).map((spec) => {
    const len = weightByteLength(spec);
    const bytes = data.subarray(offset, offset + len);
    offset += len;
    return { spec, bytes };
  });
}

export function concatBytes(parts: Uint8Array[]): ArrayBuffer {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out.buffer;
}

/** A weight path must be a plain relative path inside the model folder. */
export function checkWeightPath(p: string, where: string): void {
  if (typeof p !== 'string' || p === '' || path.isAbsolute(p) || /^[a-z]+:/i.test(p) || p.split(/[\\/]/).includes('..')) {
    throw new RetrainError(`${where}: weight path "${p}" leaves the model folder; refusing to load it`);
  }
}

export function parseModelJson(text: string, file: string): ModelJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RetrainError(`${file} is not valid JSON (${errorMessage(err)}): is it a TF.js model.json?`);
  }
  const j = json as ModelJson;
  if (!j || typeof j !== 'object' || !j.modelTopology || typeof j.modelTopology !== 'object' || !Array.isArray(j.weightsManifest)) {
    throw new RetrainError(`${file} is not a TF.js model.json (no modelTopology or weightsManifest)`);
  }
  const broken = (what: string) => new RetrainError(`${file}: ${what}; the model.json is corrupt: re-download or re-export the model`);
  j.weightsManifest.forEach((g, i) => {
    if (!isObject(g) || !Array.isArray(g.paths) || !Array.isArray(g.weights)) throw broken(`weightsManifest entry ${i + 1} is not a {paths, weights} group`);
    for (const p of g.paths) checkWeightPath(p, file);
    g.weights.forEach((w, k) => {
      if (!isObject(w) || typeof w.name !== 'string') throw broken(`weight ${k + 1} of weightsManifest entry ${i + 1} has no name`);
      if (!Array.isArray(w.shape) || !w.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new RetrainError(`${file}: weight ${w.name} has an invalid shape ${JSON.stringify(w.shape)}`);
      }
      const dtype = w.quantization?.dtype ?? w.dtype;
      if (DTYPE_BYTES[dtype] === undefined) throw broken(`weight ${w.name} has ${dtype === undefined ? 'no dtype' : `dtype ${JSON.stringify(dtype)}`}, which TF.js cannot load`);
    });
  });
  if (modelFormat(j) === 'layers-model') checkLayersTopology(j, file);
  return j;
}

function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Config keys that size a layer's weights or activations. */
const SIZE_KEYS = ['units', 'filters', 'depth_multiplier', 'output_dim', 'input_dim', 'kernel_size', 'pool_size', 'strides', 'size', 'n', 'target_shape', 'dims', 'batch_input_shape', 'dilation_rate', 'cropping', 'padding'];
/** Keys whose value must be a dimension of one of the layer's weights. */
const WEIGHT_DIM_KEYS = ['units', 'filters', 'depth_multiplier', 'output_dim'];
/** No layer of an image model has a dimension this large; building one would allocate gigabytes. */
export const MAX_LAYER_DIM = 65_536;

/** Every layer config in a layers-model topology, nested models included. */
function layerConfigs(node: unknown, out: Array<{ className: string; config: Record<string, any> }> = []) {
  if (Array.isArray(node)) node.forEach((n) => layerConfigs(n, out));
  else if (isObject(node)) {
    if (typeof node['class_name'] === 'string' && isObject(node['config'])) out.push({ className: node['class_name'], config: node['config'] });
    for (const v of Object.values(node)) if (typeof v === 'object') layerConfigs(v, out);
  }
  return out;
}

/**
 * tfjs builds every layer, allocating its weights from the topology, before it
 * compares them with the manifest: a 2 KB model.json saying Dense(units=1e8) would
 * allocate gigabytes first. So the topology is checked against the manifest here.
 */
export function checkLayersTopology(j: ModelJson, file: string): void {
  const weights = j.weightsManifest.flatMap((g) => g.weights);
  for (const { className, config } of layerConfigs(j.modelTopology)) {
    const name = typeof config['name'] === 'string' ? config['name'] : className;
    for (const key of SIZE_KEYS) {
      const dims = [config[key]].flat(3).filter((d) => typeof d === 'number');
      const bad = dims.find((d) => !Number.isFinite(d) || d > MAX_LAYER_DIM);
      if (bad !== undefined) {
        throw new RetrainError(`${file}: layer ${name} (${className}) has ${key} ${JSON.stringify(config[key])}, beyond any image model (at most ${MAX_LAYER_DIM}); the model.json is corrupt or hostile`);
      }
    }
    const own = weights.filter((w) => w.name.startsWith(`${name}/`) || w.name.includes(`/${name}/`));
    for (const key of WEIGHT_DIM_KEYS) {
      const v = config[key];
      if (typeof v !== 'number') continue;
      if (own.length === 0) {
        throw new RetrainError(`${file}: layer ${name} (${className}) has ${key} ${v} but the weights manifest has no weights for it; the model.json does not match its weights`);
      }
      if (!own.some((w) => w.shape.includes(v))) {
        const shapes = own.map((w) => `${w.name} [${w.shape.join(',')}]`).join(', ');
        throw new RetrainError(`${file}: layer ${name} (${className}) has ${key} ${v} but its weights are ${shapes}; the model.json does not match its weights`);
      }
    }
  }
}

export function modelFormat(j: ModelJson): 'graph-model' | 'layers-model' {
  if (j.format === 'graph-model' || j.format === 'layers-model') return j.format;
  const topo = j.modelTopology as Record<string, unknown>;
  return Array.isArray(topo['node']) ? 'graph-model' : 'layers-model';
}

export interface LoadedModelFiles {
  dir: string;
  json: ModelJson;
  /** The raw model.json text, for identity hashing. */
  jsonText: string;
  artifacts: tf.io.ModelArtifacts;
}

/**
 * Checks a model folder without reading its weights: model.json parses, its paths stay
 * inside the folder, and every weight group's shards hold exactly the declared bytes.
 * Returns the parsed model.json and the shard files in manifest order.
 */
export function checkModelFiles(modelJsonPath: string): { dir: string; json: ModelJson; jsonText: string; shards: string[] } {
  const dir = path.dirname(modelJsonPath);
  if (fs.statSync(modelJsonPath, { throwIfNoEntry: false })?.isDirectory()) {
    throw new RetrainError(`${modelJsonPath} is a folder, not a model.json file: point at a TF.js model folder or its model.json`);
  }
  let jsonText: string;
  try {
    jsonText = fs.readFileSync(modelJsonPath, 'utf8');
  } catch (err) {
    throw new RetrainError(`cannot read ${modelJsonPath}: ${errorMessage(err)}`);
  }
  const json = parseModelJson(jsonText, modelJsonPath);
  const expected = expectedGroupBytes(json.weightsManifest);
  const shards: string[] = [];
  json.weightsManifest.forEach((g, i) => {
    let got = 0;
    for (const p of g.paths) {
      const file = path.join(dir, p);
      try {
        got += fs.statSync(file).size;
      } catch (err) {
        throw new RetrainError(`model ${modelJsonPath}: weight file ${p} is missing or unreadable (${errorMessage(err)})`);
      }
      shards.push(file);
    }
    if (got !== expected[i]) {
      throw new RetrainError(
        `model ${modelJsonPath}: weight group ${i + 1} has ${got} bytes but its manifest declares ${expected[i]}; the model is incomplete or corrupt`,
      );
    }
  });
  return { dir, json, jsonText, shards };
}

/** Reads a model folder (or its model.json) into tfjs ModelArtifacts, checking every shard. */
export function readModelFiles(modelJsonPath: string): LoadedModelFiles {
  const { dir, json, jsonText, shards } = checkModelFiles(modelJsonPath);
  const buffers = shards.map((file) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new RetrainError(`model ${modelJsonPath}: weight file ${path.relative(dir, file)} is unreadable (${errorMessage(err)})`);
    }
  });
  const read = buffers.reduce((sum, b) => sum + b.length, 0);
  const declared = expectedGroupBytes(json.weightsManifest).reduce((a, b) => a + b, 0);
  // The files could change between the check and the read.
  if (read !== declared) throw new RetrainError(`model ${modelJsonPath}: its weight files changed while being read; try again`);
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    weightSpecs,
    weightData,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    modelInitializer: json.modelInitializer,
    trainingConfig: json.trainingConfig,
  };
  return { dir, json, jsonText, artifacts };
}

/**
 * The model.json a flag names: a model folder's, or the file itself. A path that is
 * missing, a folder without model.json, or a model.json that is a folder gets one
 * line naming the flag; `what` says what to give instead.
 */
export function locateModelJson(p: string, flag: string, what: string): string {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) throw new UsageError(`${flag} ${p} does not exist: ${what}`);
  if (!st.isDirectory()) return p;
  if (path.basename(p) === 'model.json') throw new UsageError(`${flag} ${p} is a folder, not a model.json file: ${what}`);
  const json = path.join(p, 'model.json');
  const inner = fs.statSync(json, { throwIfNoEntry: false });
  if (!inner) throw new UsageError(`${flag} ${p} is a folder without a model.json: ${what}`);
  if (inner.isDirectory()) throw new UsageError(`${flag} ${p}: its model.json is a folder, not a file: ${what}`);
  return json;
}

export function modelJsonPathOf(p: string): string {
  return fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ? path.join(p, 'model.json') : p;
}

/**
 * A tfjs save handler that writes a model folder: shards first, model.json last,
 * each under a temporary name renamed into place, so a reader never sees a
 * model.json whose shards are not all there.
 */
export function folderSaveHandler(dir: string): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      const data = weightBytes(artifacts);
      const shards = Math.max(1, Math.ceil(data.byteLength / SHARD_BYTES));
      const paths = Array.from({ length: shards }, (_, i) => `group1-shard${i + 1}of${shards}.bin`);
      const json: Record<string, unknown> = {
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths, weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.signature) json['signature'] = artifacts.signature;
      if (artifacts.userDefinedMetadata) json['userDefinedMetadata'] = artifacts.userDefinedMetadata;
      if (artifacts.modelInitializer) json['modelInitializer'] = artifacts.modelInitializer;
      if (artifacts.trainingConfig) json['trainingConfig'] = artifacts.trainingConfig;
      // An old model.json beside new shards would pass for a model: until the new one lands there is none.
      try {
        await fs.promises.rm(path.join(dir, 'model.json'), { force: true });
      } catch (err) {
        throw new RetrainError(`cannot write ${path.join(dir, 'model.json')}: ${errorMessage(err)}`, 1, { cause: err });
      }
      try {
        for (const [i, name] of paths.entries()) {
          await writeAtomic(path.join(dir, name), data.subarray(i * SHARD_BYTES, (i + 1) * SHARD_BYTES));
        }
        await writeAtomic(path.join(dir, 'model.json'), JSON.stringify(json));
      } catch (err) {
        // A failed save (full or read-only disk) leaves no shards without their model.json.
        await Promise.all(paths.map((p) => fs.promises.rm(path.join(dir, p), { force: true }).catch(() => {})));
        throw err;
      }
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          weightDataBytes: data.byteLength,
        },
      };
    },
  };
}
