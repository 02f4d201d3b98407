/**
 * Exact duplicates: the same bytes (sha256 of the file) or the same decoded pixels.
 * Decoding every photo again would cost more than the rest of the check, so pixels are
 * compared only where they can match: the same pixels give the same bottleneck, so only
 * images whose bottlenecks are (almost) identical are decoded.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import { decodeImage } from '../image/index.js';
import { DisjointSets, type SimilarPair } from './near.js';

/** Bottleneck cosine above which two images may have the same pixels (batching changes the last float bits). */
export const PIXEL_CANDIDATE_COSINE = 0.9995;

export interface ExactGroup {
  members: number[];
  match: 'bytes' | 'pixels';
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function pixelDigest(file: string): Promise<string | null> {
  try {
    const img = await decodeImage(file);
    return sha256(Buffer.concat([Buffer.from(`${img.width}x${img.height}:`), img.data]));
  } catch {
    return null;
  }
}

/**
 * Groups of images (indices into `files`) with the same bytes or the same decoded
 * pixels. `bytes` are the files' sha256, which the bottleneck stage took already.
 */
export async function exactDuplicates(files: string[], bytes: string[], candidates: SimilarPair[]): Promise<ExactGroup[]> {
  const toDecode = new Set<number>();
  for (const p of candidates) {
    if (p.cosine >= PIXEL_CANDIDATE_COSINE && bytes[p.a] !== bytes[p.b]) toDecode.add(p.a).add(p.b);
  }
  const decode = pLimit(2);
  const pixels = new Map<number, string | null>();
  await Promise.all([...toDecode].map((i) => decode(async () => void pixels.set(i, await pixelDigest(files[i]!)))));

  const sets = new DisjointSets(files.length);
  const join = (keys: Iterable<[number, string | null]>) => {
    const first = new Map<string, number>();
    for (const [i, k] of keys) {
      if (k === null) continue;
      const j = first.get(k);
      if (j === undefined) first.set(k, i);
      else sets.union(i, j);
    }
  };
  join(bytes.map((b, i) => [i, b] as [number, string]));
  join([...pixels.entries()].sort((x, y) => x[0] - y[0]));
  return sets.groups().map((members) => ({ members, match: members.every((m) => bytes[m] === bytes[members[0]!]) ? 'bytes' : 'pixels' }));
}
