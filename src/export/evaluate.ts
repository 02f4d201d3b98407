/** Checks an export as a user would load it: plain tfjs, files from disk, images through label-image's code. */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { decodeImage, toModuleInput } from '../image/index.js';
import { loadClassifier } from '../label_image.js';

export function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

/** Accuracy of the exported model on labelled image files (class index = label order). */
export async function exportAccuracy(dir: string, files: string[], y: Int32Array, batchSize = 16): Promise<number> {
  const c = await loadClassifier({ graph: dir });
  let right = 0;
  try {
    const size = c.spec.height * c.spec.width * 3;
    for (let i = 0; i < files.length; i += batchSize) {
      const chunk = files.slice(i, i + batchSize);
      const buf = new Float32Array(chunk.length * size);
      for (const [k, f] of chunk.entries()) toModuleInput(await decodeImage(f), c.spec, buf.subarray(k * size, (k + 1) * size));
      const best = tf.tidy(() => tf.argMax(c.run(tf.tensor4d(buf, [chunk.length, c.spec.height, c.spec.width, 3])), 1).dataSync());
      best.forEach((p, k) => {
        if (p === y[i + k]) right++;
      });
    }
  } finally {
    c.dispose();
  }
  return files.length ? right / files.length : NaN;
}
