/** Cached bottlenecks as the dense matrices training reads, one per category. */
import path from 'node:path';
import { CATEGORIES, type Category, type ImageLists } from '../dataset/index.js';
import type { Bottlenecks } from './index.js';

/** Bottlenecks of one category as a dense matrix, with their class indices. */
export interface LabeledSet {
  /** N x size, row-major. */
  x: Float32Array;
  y: Int32Array;
  /** Image paths, row by row. */
  files: string[];
}

export type LabeledSets = Record<Category, LabeledSet>;

/** One category's images that have a bottleneck (failed images are left out). */
export function labeledSet(lists: ImageLists, bottlenecks: Bottlenecks, category: Category): LabeledSet {
  const files: string[] = [];
  const labels: number[] = [];
  lists.classes.forEach((cls, classIndex) => {
    for (const name of cls[category]) {
      const file = path.resolve(lists.imageDir, cls.dir, name);
      if (bottlenecks.values.has(file)) {
        files.push(file);
        labels.push(classIndex);
      }
    }
  });
  const size = bottlenecks.size;
  const x = new Float32Array(files.length * size);
  files.forEach((f, i) => x.set(bottlenecks.values.get(f)!, i * size));
  return { x, y: Int32Array.from(labels), files };
}

export function labeledSets(lists: ImageLists, bottlenecks: Bottlenecks): LabeledSets {
  return Object.fromEntries(CATEGORIES.map((c) => [c, labeledSet(lists, bottlenecks, c)])) as LabeledSets;
}
