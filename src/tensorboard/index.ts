/**
 * retrain.py's TensorBoard summaries: `train/` and `validation/` event files under
 * --summaries_dir, with the tags TF1 gave retrain.py's summary ops (hence the `_1`
 * suffixes: `accuracy` and `cross_entropy` were already taken by name scopes).
 */
import fs from 'node:fs';
import { RetrainError, errorMessage } from '../errors.js';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { EvalPoint, Head } from '../train/index.js';
import { EventFileWriter, type SummaryValue } from './events.js';
import { histogram, moments } from './histogram.js';

export const TAGS = {
  accuracy: 'accuracy_1',
  crossEntropy: 'cross_entropy_1',
  layer: 'final_retrain_ops',
} as const;

/** variable_summaries(var) under final_retrain_ops/<scope>/summaries. */
export function variableSummaries(scope: string, values: ArrayLike<number>): SummaryValue[] {
  const prefix = `${TAGS.layer}/${scope}/summaries`;
  const m = moments(values);
  return [
    { tag: `${prefix}/mean`, simpleValue: m.mean },
    { tag: `${prefix}/stddev_1`, simpleValue: m.stddev },
    { tag: `${prefix}/max`, simpleValue: m.max },
    { tag: `${prefix}/min`, simpleValue: m.min },
    { tag: `${prefix}/histogram`, histo: histogram(values) },
  ];
}

/**
 * retrain.py empties --summaries_dir at the start of a run so TensorBoard shows one run;
 * we remove only earlier event files from train/ and validation/, never anything else
 * a mistyped flag could point at.
 */
function clearOldEvents(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) {
    if (!name.startsWith('events.out.tfevents.')) continue;
    const file = path.join(dir, name);
    try {
      fs.rmSync(file, { force: true });
    } catch (err) {
      throw new RetrainError(`cannot remove the earlier event file ${file}: ${errorMessage(err)}; pass another --summaries_dir`, 1, { cause: err });
    }
  }
}

export class TrainingSummaries {
  readonly train: EventFileWriter;
  readonly validation: EventFileWriter;

  constructor(summariesDir: string, log: Logger) {
    const trainDir = path.join(summariesDir, 'train');
    const validationDir = path.join(summariesDir, 'validation');
    clearOldEvents(trainDir);
    clearOldEvents(validationDir);
    this.train = new EventFileWriter(trainDir);
    this.validation = new EventFileWriter(validationDir);
    log.info(`TensorBoard summaries in ${summariesDir} (tensorboard --logdir ${summariesDir})`);
  }

  /** For trainHead's onEval: the merged summaries retrain.py writes at an evaluation step. */
  async onEval(point: EvalPoint, head: Head): Promise<void> {
    const { weights, biases } = await head.values();
    const variables = [...variableSummaries('weights', weights), ...variableSummaries('biases', biases)];
    this.train.addSummary(point.step, [
      ...variables,
      { tag: TAGS.crossEntropy, simpleValue: point.crossEntropy },
      { tag: TAGS.accuracy, simpleValue: point.trainAccuracy },
    ]);
    if (point.validationN > 0) {
      this.validation.addSummary(point.step, [
        ...variables,
        { tag: TAGS.crossEntropy, simpleValue: point.validationCrossEntropy },
        { tag: TAGS.accuracy, simpleValue: point.validationAccuracy },
      ]);
    }
  }

  close(): void {
    this.train.close();
    this.validation.close();
  }
}
