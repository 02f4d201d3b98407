/** The `summary` stage: the machine-readable record of a run (--summary_json). */
import type { FineTuneSummary } from '../finetune/stage.js';
import { CATEGORIES, type ImageLists } from '../dataset/index.js';
import type { FailedImage } from '../bottleneck/index.js';
import type { ModuleInfo } from '../module/index.js';
import type { EvalPoint, Prediction } from '../train/index.js';
import { writeAtomic } from '../util/fsutil.js';
import type { Logger } from '../log.js';

export interface RunSummary {
  module: {
    spec: string;
    name: string;
    id: string;
    format: string;
    path: string;
    input_size: [number, number];
    input_range: [number, number];
    bottleneck_tensor: string;
    bottleneck_size: number;
  } | null;
  backend: string;
  classes: Record<string, string>;
  split: Record<string, Record<string, string[]>>;
  bottlenecks: { computed: number; cached: number; failed: FailedImage[] };
  timings_s: Record<string, number>;
  training?: {
    steps: number;
    final_train_accuracy: number;
    final_validation_accuracy: number | null;
    cross_entropy: number;
    history: EvalPoint[];
    /** --early_stopping_patience: the evaluation whose head was kept. */
    best_step?: number;
    stopped_early?: boolean;
  };
  /** --fine_tune_layers. */
  fine_tune?: FineTuneSummary;
  /** --quantize_bytes: the export's size and its accuracy on the test images, loaded back with plain tfjs. */
  export?: { quantize_bytes: number | null; bytes: number; test_accuracy: number | null };
  test?: {
    accuracy: number | null;
    n: number;
    predictions: Array<{ file: string; true_label: string; predicted_label: string; score: number }>;
  };
  /** Set when the run failed: its one-line error and exit status. */
  error?: { message: string; exit_code: number };
  outputs?: {
    output_graph: string;
    output_labels: string;
    intermediate: string[];
  };
}

export function moduleSummary(info: ModuleInfo): RunSummary['module'] {
  return {
    spec: info.spec,
    name: info.name,
    id: info.id,
    format: info.format,
    path: info.path,
    input_size: [info.inputHeight, info.inputWidth],
    input_range: info.inputRange,
    bottleneck_tensor: info.bottleneckTensor,
    bottleneck_size: info.bottleneckSize,
  };
}

export function splitSummary(lists: ImageLists): Pick<RunSummary, 'classes' | 'split'> {
  const classes: Record<string, string> = {};
  const split: RunSummary['split'] = { training: {}, validation: {}, testing: {} };
  for (const c of lists.classes) {
    classes[c.label] = c.dir;
    for (const cat of CATEGORIES) split[cat]![c.label] = [...c[cat]];
  }
  return { classes, split };
}

export function predictionSummary(predictions: Prediction[], labels: string[]): NonNullable<RunSummary['test']>['predictions'] {
  return predictions.map((p) => ({
    file: p.file,
    true_label: labels[p.trueIndex]!,
    predicted_label: labels[p.predictedIndex]!,
    score: p.score,
  }));
}

export async function writeSummary(file: string, summary: RunSummary): Promise<void> {
  // NaN is not JSON; a missing measurement is null.
  await writeAtomic(file, JSON.stringify(summary, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
}

/** The summary before anything is known; stages fill it in as the run goes. */
export function emptySummary(): RunSummary {
  return { module: null, backend: '', classes: {}, split: {}, bottlenecks: { computed: 0, cached: 0, failed: [] }, timings_s: {} };
}

/**
 * Runs `fn`; when it fails, writes what was done so far with the error to --summary_json,
 * so a CI script reads why, then rethrows. A summary that cannot be written is logged:
 * the run's own error is what counts.
 */
export async function withFailureSummary<T>(file: string | undefined, summary: RunSummary, log: Logger, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (file) {
      const e = err as { message?: unknown; exitCode?: unknown };
      summary.error = { message: String(e?.message ?? err).split('\n')[0]!, exit_code: typeof e?.exitCode === 'number' ? e.exitCode : 1 };
      await writeSummary(file, summary).catch((writeErr: unknown) => log.warn(`could not write --summary_json for the failed run: ${(writeErr as Error).message}`));
    }
    throw err;
  }
}
