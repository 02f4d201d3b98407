/** The fine-tuning step of a retrain run. */
import * as tf from '@tensorflow/tfjs';
import type { LabeledSet, LabeledSets } from '../bottleneck/sets.js';
import { distortedImageBatches, plainImageBatches, type ImageBatchSource } from '../image/batches.js';
import { distortionsOn, type DistortionSettings } from '../image/distort.js';
import type { Logger } from '../log.js';
import type { FeatureExtractor } from '../module/index.js';
import { measure, type Head } from '../train/index.js';
import type { ClassWeighting, OptimizerName } from '../train/options.js';
import { fineTune, recomputeBottlenecks } from './index.js';

/** What the fine-tuning step reads of the run's options (the flags of the same names). */
export interface FineTuneStageOptions extends DistortionSettings {
  fineTuneLayers: number;
  fineTuneSteps: number;
  /** Resolved: --fine_tune_learning_rate, or a tenth of --learning_rate. */
  fineTuneLearningRate: number;
  fineTuneBatchSize: number;
  evalStepInterval: number;
  seed: number;
  optimizer: OptimizerName;
  labelSmoothing: number;
  classWeighting: ClassWeighting;
  bottleneckBatchSize: number;
  signal?: AbortSignal;
}

export interface FineTuneSummary {
  layers: string[];
  parameters: number;
  steps: number;
  learning_rate: number;
  batch_size: number;
  validation_accuracy_before: number | null;
  validation_accuracy_after: number | null;
  history: Array<{ step: number; crossEntropy: number }>;
}

/**
 * Step "fine-tune the module" (--fine_tune_layers): unfreezes the module's top
 * layers and trains them with the head on images — freshly distorted ones when a
 * distortion flag is on, as retrain.py's distorted training — then recomputes the
 * validation and test bottlenecks through the updated module (the cached ones
 * describe the module before fine-tuning). Evaluation always uses plain images.
 */
export async function fineTuneStage(
  ex: FeatureExtractor,
  head: Head,
  sets: LabeledSets,
  o: FineTuneStageOptions,
  log: Logger,
): Promise<{ testing: LabeledSet; summary: FineTuneSummary }> {
  const plain = plainImageBatches(ex.inputSpec);
  const trainingBatches: ImageBatchSource = distortionsOn(o) ? distortedImageBatches(ex.inputSpec, o, o.seed) : plain;
  const accuracy = (set: LabeledSet): number | null => {
    if (set.y.length === 0) return null;
    const size = ex.info.bottleneckSize;
    const x = tf.tensor2d(set.x, [set.y.length, size]);
    const y = tf.tensor1d(set.y, 'int32');
    const m = measure(head, x, y);
    tf.dispose([x, y]);
    return m.accuracy;
  };
  const before = accuracy(sets.validation);
  const r = await fineTune(ex, head, sets.training, {
    layers: o.fineTuneLayers,
    steps: o.fineTuneSteps,
    learningRate: o.fineTuneLearningRate,
    batchSize: o.fineTuneBatchSize,
    evalStepInterval: o.evalStepInterval,
    seed: o.seed,
    optimizer: o.optimizer,
    labelSmoothing: o.labelSmoothing,
    classWeighting: o.classWeighting,
    batches: trainingBatches,
    signal: o.signal,
    log,
  });
  const validation = await recomputeBottlenecks(ex, sets.validation, plain, o.bottleneckBatchSize, o.signal);
  const after = accuracy(validation);
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
  log.info(`Fine-tuning: validation accuracy ${pct(before)} before, ${pct(after)} after (N=${validation.y.length})`);
  const testing = await recomputeBottlenecks(ex, sets.testing, plain, o.bottleneckBatchSize, o.signal);
  return {
    testing,
    summary: {
      layers: r.layers,
      parameters: r.parameters,
      steps: o.fineTuneSteps,
      learning_rate: o.fineTuneLearningRate,
      batch_size: o.fineTuneBatchSize,
      validation_accuracy_before: before,
      validation_accuracy_after: after,
      history: r.history,
    },
  };
}
