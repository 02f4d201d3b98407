/** The `train` stage's steps of a run: train the head, then the final test. */
import type { LabeledSet, LabeledSets } from '../bottleneck/sets.js';
import type { Logger } from '../log.js';
import type { ClassWeighting, OptimizerName } from './options.js';
import type { HeadKind } from './limits.js';
import { Head, measure, predictSet, trainHead, type EvalPoint, type Metrics, type Prediction } from './index.js';
import { trainL2Head, type L2Choice } from './l2.js';
import * as tf from '@tensorflow/tfjs';

/** What the training step reads of the run's options (the flags of the same names). */
export interface TrainStepOptions {
  howManyTrainingSteps: number;
  learningRate: number;
  trainBatchSize: number;
  validationBatchSize: number;
  evalStepInterval: number;
  seed: number;
  /** --head and --head_c. */
  head: HeadKind;
  headC?: number;
  optimizer: OptimizerName;
  hiddenUnits: number;
  dropout: number;
  labelSmoothing: number;
  classWeighting: ClassWeighting;
  earlyStoppingPatience: number;
  intermediateStoreFrequency: number;
  signal?: AbortSignal;
}

/** Hooks the run wires to the later stages: TensorBoard, intermediate exports, fresh distortions. */
export interface TrainStepHooks {
  onEval?: (point: EvalPoint, head: Head) => void | Promise<void>;
  onIntermediate?: (step: number, head: Head) => Promise<void>;
  trainBottlenecks?: (rows: Int32Array, step: number) => Promise<Float32Array>;
}

/** The training as the run summary records it. */
export interface TrainingSection {
  steps: number;
  final_train_accuracy: number;
  final_validation_accuracy: number | null;
  cross_entropy: number;
  history: EvalPoint[];
  /** --early_stopping_patience: the evaluation whose head was kept. */
  best_step?: number;
  stopped_early?: boolean;
  /** --head l2 / l2_standardized: the C chosen, how, and each candidate's score. */
  l2?: L2Choice;
}

/**
 * Step "train the head" (retrain.py's final layer and training loop): a dense
 * softmax layer on the bottlenecks, trained on random batches, evaluated on
 * training and validation batches every --eval_step_interval steps.
 */
export async function trainNewHead(
  sets: Pick<LabeledSets, 'training' | 'validation'>,
  classCount: number,
  bottleneckSize: number,
  o: TrainStepOptions,
  hooks: TrainStepHooks,
  log: Logger,
): Promise<{ head: Head; section: TrainingSection }> {
  if (o.head !== 'sgd') return trainL2Stage(sets, classCount, bottleneckSize, o, hooks, log);
  const trained = await trainHead(sets.training, sets.validation, classCount, bottleneckSize, {
    steps: o.howManyTrainingSteps,
    learningRate: o.learningRate,
    trainBatchSize: o.trainBatchSize,
    validationBatchSize: o.validationBatchSize,
    evalStepInterval: o.evalStepInterval,
    seed: o.seed,
    optimizer: o.optimizer,
    hiddenUnits: o.hiddenUnits,
    dropout: o.dropout,
    labelSmoothing: o.labelSmoothing,
    classWeighting: o.classWeighting,
    earlyStoppingPatience: o.earlyStoppingPatience,
    intermediateStoreFrequency: o.intermediateStoreFrequency,
    signal: o.signal,
    ...hooks,
    log,
  });
  const { final } = trained;
  return {
    head: trained.head,
    section: {
      steps: o.howManyTrainingSteps,
      final_train_accuracy: final.trainAccuracy,
      final_validation_accuracy: final.validationN > 0 ? final.validationAccuracy : null,
      cross_entropy: final.crossEntropy,
      history: trained.history,
      ...(trained.bestStep === undefined ? {} : { best_step: trained.bestStep, stopped_early: trained.stoppedEarly }),
    },
  };
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

/**
 * --head l2 / l2_standardized: the L2 head solved on the cached bottlenecks (train/l2.ts),
 * its C chosen and logged, then measured as the SGD head's last evaluation is.
 */
async function trainL2Stage(
  sets: Pick<LabeledSets, 'training' | 'validation'>,
  classCount: number,
  bottleneckSize: number,
  o: TrainStepOptions,
  hooks: TrainStepHooks,
  log: Logger,
): Promise<{ head: Head; section: TrainingSection }> {
  const standardize = o.head === 'l2_standardized';
  const { values, choice } = trainL2Head(sets.training, sets.validation, bottleneckSize, classCount, { standardize, c: o.headC, seed: o.seed, signal: o.signal });
  for (const cand of choice.candidates) {
    log.info(`L2 head: C = ${cand.c}: ${choice.chosen_by === 'validation' ? 'validation' : `${choice.folds}-fold`} accuracy = ${pct(cand.accuracy)}, cross entropy = ${cand.cross_entropy.toFixed(6)} (N=${cand.n})`);
  }
  const how = { flag: 'given by --head_c', validation: 'chosen on the validation set', k_fold: `chosen by ${choice.folds}-fold cross-validation on the training set (fewer than 100 validation images)` }[choice.chosen_by];
  log.info(`L2 head${standardize ? ' on standardised bottlenecks' : ''}: C = ${choice.c}, ${how}; solved in ${choice.iterations} L-BFGS iterations${choice.converged ? '' : ' (not converged: the iteration limit was reached)'}`);
  const head = new Head(bottleneckSize, classCount, o.seed);
  head.assign(values);
  const on = (set: LabeledSet): Metrics => {
    if (set.y.length === 0) return { accuracy: NaN, crossEntropy: NaN, n: 0 };
    const x = tf.tensor2d(set.x, [set.y.length, bottleneckSize]);
    const y = tf.tensor1d(set.y, 'int32');
    try {
      return measure(head, x, y);
    } finally {
      tf.dispose([x, y]);
    }
  };
  const train = on(sets.training);
  const val = on(sets.validation);
  const point: EvalPoint = { step: 0, trainAccuracy: train.accuracy, crossEntropy: train.crossEntropy, validationAccuracy: val.accuracy, validationCrossEntropy: val.crossEntropy, validationN: val.n };
  log.info(`L2 head: Train accuracy = ${pct(train.accuracy)}, Cross entropy = ${train.crossEntropy.toFixed(6)}`);
  if (val.n > 0) log.info(`L2 head: Validation accuracy = ${pct(val.accuracy)} (N=${val.n})`);
  await hooks.onEval?.(point, head);
  return {
    head,
    section: {
      steps: 0,
      final_train_accuracy: train.accuracy,
      final_validation_accuracy: val.n > 0 ? val.accuracy : null,
      cross_entropy: train.crossEntropy,
      history: [point],
      l2: choice,
    },
  };
}

/** The final test as the run summary records it. */
export interface TestSection {
  accuracy: number | null;
  n: number;
  predictions: Array<{ file: string; true_label: string; predicted_label: string; score: number }>;
}

export interface Misclassified {
  file: string;
  trueLabel: string;
  predictedLabel: string;
}

function predictionRows(predictions: Prediction[], labels: string[]): TestSection['predictions'] {
  return predictions.map((p) => ({ file: p.file, true_label: labels[p.trueIndex]!, predicted_label: labels[p.predictedIndex]!, score: p.score }));
}

/**
 * Step "final test" (retrain.py's run_final_eval): the head on the test set, once,
 * and with --print_misclassified_test_images the images it got wrong.
 */
export function finalTest(
  head: Head,
  testing: LabeledSet,
  labels: string[],
  o: { testBatchSize: number; seed: number; printMisclassifiedTestImages: boolean },
  log: Logger,
): { section: TestSection; misclassified: Misclassified[] } {
  if (testing.y.length === 0) {
    log.warn('No test images: skipping the final test (raise --testing_percentage to get one)');
    return { section: { accuracy: null, n: 0, predictions: [] }, misclassified: [] };
  }
  const { metrics, predictions } = predictSet(head, testing, head.bottleneckSize, o.testBatchSize, o.seed);
  log.info(`Final test accuracy = ${(metrics.accuracy * 100).toFixed(1)}% (N=${metrics.n})`);
  const misclassified = predictions
    .filter((p) => p.predictedIndex !== p.trueIndex)
    .map((p) => ({ file: p.file, trueLabel: labels[p.trueIndex]!, predictedLabel: labels[p.predictedIndex]! }));
  if (o.printMisclassifiedTestImages) {
    log.info('=== MISCLASSIFIED TEST IMAGES ===');
    for (const m of misclassified) log.info(`${m.file}  true: ${m.trueLabel}  predicted: ${m.predictedLabel}`);
  }
  return { section: { accuracy: metrics.accuracy, n: metrics.n, predictions: predictionRows(predictions, labels) }, misclassified };
}
