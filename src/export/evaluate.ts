/** Checks an export as a user would load it: plain tfjs, files from disk, images through label-image's code. */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { plainImageBatches } from '../image/batches.js';
import { loadClassifier } from './load.js';

export function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

/** Accuracy of the exported model on labelled image files (class index = label order). */
export async function exportAccuracy(dir: string, files: string[], y: Int32Array, batchSize = 16): Promise<number> {
  const c = await loadClassifier({ graph: dir });
  let right = 0;
  const images = plainImageBatches(c.spec);
  // .onnx and .tflite classifiers run on ONNX Runtime only.
  const session = await c.onnx?.session();
  try {
    for (let i = 0; i < files.length; i += batchSize) {
      const x = await images(files.slice(i, i + batchSize), 0);
      const n = x.shape[0];
      const best = session ? argMaxRows(await session.run(x.dataSync() as Float32Array, n, c.spec.height, c.spec.width), n) : tf.tidy(() => tf.argMax(c.run(x), 1).dataSync());
      x.dispose();
      best.forEach((p, k) => {
        if (p === y[i + k]) right++;
      });
    }
  } finally {
    c.dispose();
  }
  return files.length ? right / files.length : NaN;
}

function argMaxRows(scores: Float32Array, n: number): Int32Array {
  const k = scores.length / n;
  return Int32Array.from({ length: n }, (_, r) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (scores[r * k + j]! > scores[r * k + best]!) best = j;
    return best;
  });
}
