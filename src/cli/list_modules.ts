/** `retrain --list_modules`: prints the module catalog; the library only returns it. */
import { listModules, type ModuleListing } from '../module/catalog.js';

export function formatModuleList(rows: ModuleListing[], cacheDir: string): string {
  const status = (r: ModuleListing) =>
    r.builtin ? (r.available ? 'built in' : 'built in, MISSING') : r.available ? 'downloaded' : 'not downloaded';
  const table = rows.map((r) => [
    r.name + (r.isDefault ? ' (default)' : ''),
    status(r),
    `${r.inputSize[0]}x${r.inputSize[1]} [${r.inputRange.join(',')}]`,
    r.source,
  ]);
  const header = ['NAME', 'STATUS', 'INPUT', 'SOURCE'];
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ');
  return [
    line(header),
    ...table.map(line),
    '',
    `Downloads are cached in ${cacheDir} (--module_cache_dir).`,
    'Use one with --tfhub_module NAME; a TF Hub/Kaggle URL or a local TF.js model folder also works.',
    '',
  ].join('\n');
}

/** Prints the catalog to stdout; returns the exit status. */
export function printModuleList(cacheDir: string, defaultModule: string): number {
  process.stdout.write(formatModuleList(listModules(cacheDir, defaultModule), cacheDir));
  return 0;
}
