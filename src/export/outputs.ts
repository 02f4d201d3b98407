/**
 * Every path a run will write, checked before any time is spent: no empty path, no
 * output among the inputs (the images, the module), a folder where a folder is
 * needed and a file where a file is, and a folder that can be written.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RetrainError, UsageError } from '../errors.js';
import { isModuleUrl } from '../module/download.js';
import { foreignEntries, recoverExport, type Replaceable } from './publish.js';

/** What a TF.js model folder holds (and a crashed writer's temp files); an export replaces these and nothing else. */
export const MODEL_FILE = /^(model\.json|group\d+-shard\d+of\d+(\.bin)?)(\.\d+)?$/;
/** The same for a SavedModel folder. */
export const SAVED_MODEL_FILE = /^(saved_model\.(pb|pbtxt)|fingerprint\.pb|variables|assets|assets\.extra)(\.\d+)?$/;

export interface OutputPathOptions {
  imageDir: string;
  tfhubModule: string;
  moduleCacheDir: string;
  bottleneckDir: string;
  outputGraph: string;
  outputLabels: string;
  intermediateOutputGraphsDir: string;
  intermediateStoreFrequency: number;
  savedModelDir?: string;
  summaryJson?: string;
  summariesDir: string;
  reportDir?: string;
  bottlenecksOnly: boolean;
}

interface Output {
  flag: string;
  path: string;
  kind: 'file' | 'folder';
  /** A folder the export swaps in whole, and what it may already hold. */
  replaced?: Replaceable;
}

/** `p` with symlinks resolved as far as it exists, so aliases of one folder compare equal. */
function realish(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(realish(parent), path.basename(abs));
  }
}

const isWithin = (dir: string, p: string): boolean => p === dir || p.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);

/**
 * What outputs must not touch in a local module: a model folder and the files right in
 * it, or a model.json and the weight files it names. A URL module lives in the download cache.
 */
function moduleFiles(spec: string): { dir: string; hits: (p: string) => boolean } | undefined {
  if (isModuleUrl(spec)) return undefined;
  const st = fs.statSync(spec, { throwIfNoEntry: false });
  if (!st) return undefined;
  if (st.isDirectory()) {
    // A folder that holds no model is refused later, when the module loads.
    if (!fs.existsSync(path.join(spec, 'model.json')) && !fs.existsSync(path.join(spec, 'saved_model.pb'))) return undefined;
    const dir = realish(spec);
    return { dir, hits: (p) => p === dir || path.dirname(p) === dir };
  }
  const dir = realish(path.dirname(spec));
  const files = new Set([realish(spec)]);
  try {
    const json = JSON.parse(fs.readFileSync(spec, 'utf8')) as { weightsManifest?: Array<{ paths?: unknown }> };
    for (const g of json.weightsManifest ?? []) for (const w of Array.isArray(g?.paths) ? g.paths : []) if (typeof w === 'string') files.add(path.join(dir, w));
  } catch {
    // Not a model.json: the module stage says so.
  }
  return { dir, hits: (p) => files.has(p) };
}

function outputsOf(o: OutputPathOptions): Output[] {
  const out: Output[] = [{ flag: '--bottleneck_dir', path: o.bottleneckDir, kind: 'folder' }];
  if (o.summaryJson !== undefined) out.push({ flag: '--summary_json', path: o.summaryJson, kind: 'file' });
  if (o.bottlenecksOnly) return out;
  const labelsIn = path.relative(path.resolve(o.outputGraph), path.resolve(o.outputLabels)).split(path.sep)[0];
  out.push(
    o.outputGraph.endsWith('.pb') || o.outputGraph.endsWith('.tflite')
      ? { flag: '--output_graph', path: o.outputGraph, kind: 'file' }
      : { flag: '--output_graph', path: o.outputGraph, kind: 'folder', replaced: (n) => MODEL_FILE.test(n) || n === labelsIn },
    { flag: '--output_labels', path: o.outputLabels, kind: 'file' },
    { flag: '--summaries_dir', path: o.summariesDir, kind: 'folder' },
    { flag: '--summaries_dir', path: path.join(o.summariesDir, 'train'), kind: 'folder' },
    { flag: '--summaries_dir', path: path.join(o.summariesDir, 'validation'), kind: 'folder' },
    { flag: o.reportDir === undefined ? '--report_dir (the folder holding --output_graph)' : '--report_dir', path: o.reportDir ?? path.dirname(path.resolve(o.outputGraph)), kind: 'folder' },
  );
  if (o.intermediateStoreFrequency > 0) out.push({ flag: '--intermediate_output_graphs_dir', path: o.intermediateOutputGraphsDir, kind: 'folder' });
  if (o.savedModelDir !== undefined) out.push({ flag: '--saved_model_dir', path: o.savedModelDir, kind: 'folder', replaced: (n) => SAVED_MODEL_FILE.test(n) });
  return out;
}

/** The nearest part of `p` that exists: itself, or a parent (a file on the way stops the walk there). */
function nearestExisting(flag: string, p: string): { at: string; st: fs.Stats } {
  for (let at = path.resolve(p); ; at = path.dirname(at)) {
    try {
      const st = fs.statSync(at, { throwIfNoEntry: false });
      if (st) return { at, st };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTDIR') throw new RetrainError(`${flag} ${p}: cannot look at ${at} (${code}): give a path you can write to`);
    }
  }
}

function checkShape(out: Output): void {
  const { flag, path: p, kind } = out;
  const found = nearestExisting(flag, p);
  const { at, st } = found;
  const self = at === path.resolve(p);
  if (self && kind === 'folder' && !st.isDirectory()) throw new UsageError(`${flag} ${p} is a file: give a folder`);
  if (self && kind === 'file' && st.isDirectory()) throw new UsageError(`${flag} ${p} is a folder: give a file name`);
  if (!self && !st.isDirectory()) throw new UsageError(`${flag} ${p}: ${at} is a file, not a folder: give a path in a folder`);
  // Files and swapped folders are renamed into their parent; other folders are written into.
  const dir = self && kind === 'folder' && !out.replaced ? at : self ? path.dirname(at) : at;
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw new RetrainError(`${flag} ${p}: cannot write in ${dir} (${(err as NodeJS.ErrnoException).code}): give a path you can write to`);
  }
  if (self && out.replaced) {
    const foreign = foreignEntries(p, out.replaced);
    if (foreign.length > 0) {
      throw new UsageError(`${flag} ${p} holds ${foreign.slice(0, 3).join(', ')}, which an export would replace: give an empty or new folder, or one a previous export wrote`);
    }
  }
}

/**
 * Refuses, at the start of a run, every output path that cannot or must not be
 * written; recovers what a run that died while exporting left behind.
 */
export function checkOutputPaths(o: OutputPathOptions): void {
  const flags: Array<[string, string | undefined]> = [
    ['--tfhub_module', o.tfhubModule],
    ['--module_cache_dir', o.moduleCacheDir],
    ['--bottleneck_dir', o.bottleneckDir],
    ['--output_graph', o.outputGraph],
    ['--output_labels', o.outputLabels],
    ['--intermediate_output_graphs_dir', o.intermediateOutputGraphsDir],
    ['--summaries_dir', o.summariesDir],
    ['--summary_json', o.summaryJson],
    ['--report_dir', o.reportDir],
    ['--saved_model_dir', o.savedModelDir],
  ];
  for (const [flag, p] of flags) {
    if (p !== undefined && p.trim() === '') throw new UsageError(`${flag} is empty (an unset shell variable?): give a path`);
  }
  const outputs = outputsOf(o);
  const mod = moduleFiles(o.tfhubModule);
  for (const out of outputs) {
    const real = realish(out.path);
    if (o.imageDir) {
      const input = realish(o.imageDir);
      if (isWithin(input, real)) throw new UsageError(`${out.flag} ${out.path} is inside --image_dir ${o.imageDir}: write outputs elsewhere, never among the images`);
      if (out.replaced && isWithin(real, input)) throw new UsageError(`${out.flag} ${out.path} holds --image_dir ${o.imageDir}, and an export replaces it whole: give another folder`);
    }
    if (mod) {
      if (mod.hits(real)) throw new UsageError(`${out.flag} ${out.path} would write over the module of --tfhub_module ${o.tfhubModule}: write outputs elsewhere`);
      if (out.replaced && isWithin(real, mod.dir)) throw new UsageError(`${out.flag} ${out.path} holds the module of --tfhub_module ${o.tfhubModule}, and an export replaces it whole: give another folder`);
    }
  }
  for (const a of outputs) {
    for (const b of outputs) {
      if (a === b || !a.replaced || b.flag === '--output_labels' || b.flag.startsWith('--report_dir (')) continue;
      if (isWithin(realish(a.path), realish(b.path))) throw new UsageError(`${b.flag} ${b.path} is inside ${a.flag} ${a.path}, which an export replaces whole: give another path`);
    }
  }
  const files = outputs.filter((x) => x.kind === 'file' || x.replaced);
  for (const [i, a] of files.entries()) {
    const b = files.slice(i + 1).find((x) => realish(x.path) === realish(a.path));
    if (b) throw new UsageError(`${a.flag} and ${b.flag} are the same path ${a.path}: give each its own`);
  }
  for (const out of outputs) checkShape(out);
  for (const out of outputs) if (out.replaced) recoverExport(out.path);
}
