/** What the dataset check finds, in the shape the summary, the CSV and the report share. */
import type { Category } from '../dataset/index.js';

/** How the check looks: the --near_duplicate_threshold, --check_folds, --check_training_steps and --outlier_z flags. */
export interface DatasetCheckFlags {
  /** Bottleneck cosine at or above which two images are near duplicates. */
  nearDuplicateThreshold: number;
  /** Heads trained for the out-of-fold predictions (at least 2). */
  folds: number;
  /** L-BFGS iterations of each fold's L2 head, at each C of the grid. */
  steps: number;
  /** Robust standard deviations below the median class similarity that make an image an outlier. */
  outlierZ: number;
}

/** The defaults the flag table gives; 5 folds and 20 iterations keep the check's L2 heads cheap (docs/benchmarks.md); 0.9 measured on flowers-dev (burst shots at 0.91 and 0.96, different photos at most 0.89). */
export function defaultCheckFlags(): DatasetCheckFlags {
  return { nearDuplicateThreshold: 0.9, folds: 5, steps: 20, outlierZ: 3.5 };
}

export const FINDING_KINDS = ['exact_duplicate', 'near_duplicate', 'mislabel', 'outlier'] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

/** One image of a finding; `file` is relative to --image_dir, as --exclude_list takes it. */
export interface FindingImage {
  file: string;
  label: string;
  split: Category;
}

export interface Finding {
  kind: FindingKind;
  /** 1-based, in ranking order within its kind; the CSV repeats it on every image of the finding. */
  id: number;
  images: FindingImage[];
  /**
   * exact_duplicate: 1; near_duplicate: the lowest cosine between linked images;
   * mislabel: the probability of the photo's own label, from the out-of-fold L2 head and its neighbours' vote (lower is surer);
   * outlier: the best cosine to any class centroid.
   */
  score: number;
  /** exact_duplicate: same bytes, or same decoded pixels under different bytes. */
  match?: 'bytes' | 'pixels';
  /** mislabel: the likeliest other class by the same evidence. */
  suggested_label?: string;
  /** The images carry more than one label (conflicting labels). */
  cross_class: boolean;
  /** The images sit in more than one of training/validation/testing: a leak between splits. */
  leak: boolean;
}

/** The `dataset_check` section of --summary_json. */
export interface DatasetCheckSummary {
  /** --image_dir, which the findings' paths are relative to. */
  image_dir: string;
  images: number;
  near_duplicate_threshold: number;
  folds: number;
  /** Findings per kind, and how many of them leak or cross classes. */
  counts: Record<FindingKind, number> & { leaks: number; cross_class: number };
  findings: Finding[];
  /** The CSV written beside the report, one row per image of each finding. */
  csv: string | null;
}
