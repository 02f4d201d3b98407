/**
 * Reading and writing TF.js model folders (model.json + weight shards) without
 * tfjs-node's file:// handler, which the wasm and cpu backends lack. A model.json is
 * untrusted input: weight paths must stay inside the folder and sizes must match.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { RetrainError, errorMessage } from '../errors.js';
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
  return artifacts.weightData ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData as ArrayBuffer | ArrayBuffer[])) : new Uint8Array(0);
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
  if (!j || typeof j !== 'object' || !j.modelTopology || !Array.isArray(j.weightsManifest)) {
    throw new RetrainError(`${file} is not a TF.js model.json (no modelTopology or weightsManifest)`);
  }
  for (const g of j.weightsManifest) {
    if (!Array.isArray(g.paths) || !Array.isArray(g.weights)) throw new RetrainError(`${file}: malformed weightsManifest`);
    for (const p of g.paths) checkWeightPath(p, file);
    for (const w of g.weights) {
      if (!Array.isArray(w.shape) || !w.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new RetrainError(`${file}: weight ${w.name} has an invalid shape ${JSON.stringify(w.shape)}`);
      }
    }
  }
  return j;
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
