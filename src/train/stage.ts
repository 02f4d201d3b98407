/** The `train` stage's steps of a run: train the head, then the final test. */
import type { LabeledSet, LabeledSets } from '../bottleneck/sets.js';
import type { Logger } from '../log.js';
import type { ClassWeighting, OptimizerName } from './options.js';
import { predictSet, trainHead, type EvalPoint, type Head, type Prediction } from './index.js';

/** What the training step reads of the run's options (the flags of the same names). */
export interface TrainStepOptions {
  howManyTrainingSteps: number;
  learningRate: number;
  trainBatchSize: number;
  validationBatchSize: number;
  evalStepInterval: number;
  seed: number;
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
