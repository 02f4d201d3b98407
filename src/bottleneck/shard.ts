/**
 * Sharding the bottleneck stage across processes or machines that share one
 * --bottleneck_dir: each image belongs to exactly one of `count` shards, by a hash
 * of its class folder and name, so shards are about equal and stable as images
 * are added.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';

export interface Shard {
  index: number;
  count: number;
}

export function shardOf(classDir: string, imageName: string, count: number): number {
  const digest = createHash('sha1').update(`${classDir}/${imageName}`, 'utf8').digest();
  return digest.readUInt32BE(0) % count;
}

export function inShard(classDir: string, imageName: string, shard: Shard | undefined): boolean {
  return !shard || shard.count <= 1 || shardOf(classDir, imageName, shard.count) === shard.index;
}

export function validateShard(index: number, count: number, bottlenecksOnly: boolean): Shard | undefined {
  if (!Number.isInteger(count) || count < 1) throw new UsageError(`--shard_count ${count} must be a whole number of at least 1`);
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new UsageError(`--shard_index ${index} must be a whole number from 0 to --shard_count - 1 (${count - 1})`);
  }
  if (count === 1) return undefined;
  if (!bottlenecksOnly) {
    throw new UsageError(`--shard_count ${count} computes only part of the bottlenecks: add --bottlenecks_only, then train in a run without the shard flags`);
  }
  return { index, count };
}
