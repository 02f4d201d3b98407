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
}

export async function writeSummary(file: string, summary: RunSummary): Promise<void> {
  // NaN is not JSON; a missing measurement is null.
  await writeAtomic(file, JSON.stringify(summary, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
}
