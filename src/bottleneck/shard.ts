/**
 * Sharding the bottleneck stage across processes or machines that share one
 * --bottleneck_dir: each image belongs to exactly one of `count` shards, by a hash
 * of its class folder and name, so shards are about equal and stable as images
 * are added.
 */
import { createHash } from 'node:crypto';

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
