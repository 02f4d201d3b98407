/** The check's CSV: one row per image of each finding, in the summary's order. */
import { stringify } from 'csv-stringify/sync';
import type { Finding } from './types.js';

export const CSV_COLUMNS = ['kind', 'id', 'file', 'label', 'split', 'score', 'match', 'suggested_label', 'cross_class', 'leak'] as const;

export function checkCsv(findings: Finding[]): string {
  const rows = findings.flatMap((f) =>
    f.images.map((img) => [f.kind, String(f.id), img.file, img.label, img.split, String(f.score), f.match ?? '', f.suggested_label ?? '', String(f.cross_class), String(f.leak)]),
  );
  return stringify([[...CSV_COLUMNS], ...rows]);
}
