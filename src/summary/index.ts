/**
 * The `summary` stage: the machine-readable record of a run (--summary_json),
 * assembled from the sections the steps return.
 */
import type { BottleneckSection } from '../bottleneck/index.js';
import type { DatasetCheckSummary } from '../check/index.js';
import type { SplitSection } from '../dataset/index.js';
import type { ExportSection, OutputsSection } from '../export/stage.js';
import type { FineTuneSummary } from '../finetune/stage.js';
import type { ModuleSection } from '../module/index.js';
import type { TestSection, TrainingSection } from '../train/stage.js';
import type { Logger } from '../log.js';
import { writeAtomic } from '../util/fsutil.js';

export interface RunSummary extends SplitSection {
  module: ModuleSection | null;
  backend: string;
  bottlenecks: BottleneckSection;
  timings_s: Record<string, number>;
  /** Duplicates, leaks, likely mislabels and outliers found before training (src/check). */
  dataset_check?: DatasetCheckSummary;
  training?: TrainingSection;
  /** --fine_tune_layers. */
  fine_tune?: FineTuneSummary;
  /** --quantize_bytes: the export's size and its accuracy on the test images, loaded back with plain tfjs. */
  export?: ExportSection;
  test?: TestSection;
  outputs?: OutputsSection;
  /** Set when the run failed: its one-line error and exit status. */
  error?: { message: string; exit_code: number };
}

/** The summary before anything is known. */
export function emptySummary(): RunSummary {
  return { module: null, backend: '', classes: {}, split: {}, bottlenecks: { computed: 0, cached: 0, failed: [] }, timings_s: {} };
}

/**
 * Runs `fn`; when it fails, writes what was done so far (`sofar()`) with the error to
 * --summary_json, so a CI script reads why, then rethrows. A summary that cannot be
 * written is logged: the run's own error is what counts.
 */
export async function withFailureSummary<T>(file: string | undefined, sofar: () => RunSummary, log: Logger, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (file) {
      const e = err as { message?: unknown; exitCode?: unknown };
      const error = { message: String(e?.message ?? err).split('\n')[0]!, exit_code: typeof e?.exitCode === 'number' ? e.exitCode : 1 };
      await writeSummary(file, { ...sofar(), error }).catch((writeErr: unknown) => log.warn(`could not write --summary_json for the failed run: ${(writeErr as Error).message}`));
    }
    throw err;
  }
}

export async function writeSummary(file: string, summary: RunSummary): Promise<void> {
  // NaN is not JSON; a missing measurement is null.
  await writeAtomic(file, JSON.stringify(summary, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
}
