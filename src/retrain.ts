/**
 * One retrain run, stage by stage: dataset → module → bottleneck → train → export
 * and summary. The CLI parses flags into RetrainOptions and calls runRetrain; this
 * file never prints and never exits.
 */
import os from 'node:os';
import path from 'node:path';
import { initBackend, type BackendChoice } from './backend.js';
import { cacheBottlenecks, type Bottlenecks } from './bottleneck/index.js';
import { validateShard } from './bottleneck/shard.js';
import { CATEGORIES, createImageLists, validateSplit, type Category, type ImageLists } from './dataset/index.js';
import { RetrainError, UsageError } from './errors.js';
import { exportModel } from './export/index.js';
import { checkOutputPaths } from './export/outputs.js';
import { withOutputLocks } from './export/publish.js';
import { checkTensorFlowExport, exportSavedModel, isFrozenGraphPath } from './export/tf.js';
import { distortedVariants, freshDistortions } from './bottleneck/distorted.js';
import { NO_DISTORTIONS, distortionsOn, validateDistortions, type DistortionSettings } from './image/distort.js';
import type { Logger } from './log.js';
import { loadFeatureExtractor } from './module/index.js';
import { emptySummary, moduleSummary, predictionSummary, splitSummary, withFailureSummary, writeSummary, type RunSummary } from './summary/index.js';
import { throwIfInterrupted } from './util/abort.js';
import { predictSet, trainHead, validateTrainOptions, type LabeledSet } from './train/index.js';
import { writeReport } from './report/index.js';
import { TrainingSummaries } from './tensorboard/index.js';
import { splitModule, validateFineTuneOptions } from './finetune/index.js';
import { fineTuneStage } from './finetune/stage.js';
import { distortedImageBatches } from './image/batches.js';
import { exportAccuracy, folderBytes } from './export/evaluate.js';
import { validateQuantizeBytes, type QuantizeBytes } from './export/quantize.js';
import type { ClassWeighting, OptimizerName } from './train/options.js';

export interface RetrainOptions {
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
  finalTensorName: string;
  howManyTrainingSteps: number;
  learningRate: number;
  testingPercentage: number;
  validationPercentage: number;
  evalStepInterval: number;
  trainBatchSize: number;
  testBatchSize: number;
  validationBatchSize: number;
  printMisclassifiedTestImages: boolean;
  bottleneckLayer?: string;
  inputRange?: [number, number];
  inputHeight?: number;
  inputWidth?: number;
  backend: BackendChoice;
  seed: number;
  bottlenecksOnly: boolean;
  /** Images per inference call when computing bottlenecks. */
  bottleneckBatchSize: number;
  /** Threads that compute bottlenecks; 0 = the main thread; undefined = one per core. */
  numWorkers?: number;
  /** With --bottlenecks_only: compute only shard shardIndex of shardCount. */
  shardIndex: number;
  shardCount: number;
  strict: boolean;
  /** TensorBoard event files go to <summariesDir>/train and /validation. */
  summariesDir: string;
  /** report.html and its CSVs; beside --output_graph when unset. */
  reportDir?: string;
  /** Aborting it (the CLI does on Ctrl-C) stops the run with an InterruptedError; finished cache files are kept. */
  signal?: AbortSignal;
  /** --flip_left_right, --random_crop, --random_scale, --random_brightness. */
  distortions: DistortionSettings;
  /** 0: fresh distortions every step (retrain.py); K > 0: K cached variants per training image. */
  distortionVariants: number;
  optimizer: OptimizerName;
  hiddenUnits: number;
  dropout: number;
  labelSmoothing: number;
  classWeighting: ClassWeighting;
  earlyStoppingPatience: number;
  /** 0: no fine-tuning (retrain.py). */
  fineTuneLayers: number;
  fineTuneSteps: number;
  /** Unset: a tenth of --learning_rate. */
  fineTuneLearningRate?: number;
  fineTuneBatchSize: number;
  quantizeBytes?: QuantizeBytes;
}

export function defaultRetrainOptions(): Omit<RetrainOptions, 'imageDir' | 'tfhubModule' | 'moduleCacheDir'> {
  const tmp = os.tmpdir();
  return {
    bottleneckDir: path.join(tmp, 'bottleneck'),
    outputGraph: path.join(tmp, 'output_graph'),
    outputLabels: path.join(tmp, 'output_labels.txt'),
    intermediateOutputGraphsDir: path.join(tmp, 'intermediate_graph'),
    intermediateStoreFrequency: 0,
    finalTensorName: 'final_result',
    howManyTrainingSteps: 4000,
    learningRate: 0.01,
    testingPercentage: 10,
    validationPercentage: 10,
    evalStepInterval: 10,
    trainBatchSize: 100,
    testBatchSize: -1,
    validationBatchSize: 100,
    printMisclassifiedTestImages: false,
    backend: 'auto',
    seed: 0,
    bottlenecksOnly: false,
    bottleneckBatchSize: 4,
    shardIndex: 0,
    shardCount: 1,
    strict: false,
    summariesDir: path.join(tmp, 'retrain_logs'),
    distortions: NO_DISTORTIONS,
    distortionVariants: DEFAULT_DISTORTION_VARIANTS,
    optimizer: 'sgd',
    hiddenUnits: 0,
    dropout: 0,
    labelSmoothing: 0,
    classWeighting: 'none',
    earlyStoppingPatience: 0,
    fineTuneLayers: 0,
    fineTuneSteps: 100,
    fineTuneBatchSize: 16,
  };
}

/** Enough distinct views per image for a 4000-step run, at 10x the plain bottleneck cost, paid once (docs/issue4.md). */
export const DEFAULT_DISTORTION_VARIANTS = 10;

function validate(o: RetrainOptions): void {
  if (!o.imageDir) throw new UsageError('--image_dir is required: point it at a folder with one subfolder of images per class');
  validateSplit(o);
  validateTrainOptions(headTrainingOptions(o));
  validateFineTuneOptions({ layers: o.fineTuneLayers, steps: o.fineTuneSteps, learningRate: fineTuneRate(o), batchSize: o.fineTuneBatchSize });
  validateQuantizeBytes(o.quantizeBytes);
  if (!Number.isInteger(o.testBatchSize) || (o.testBatchSize <= 0 && o.testBatchSize !== -1)) {
    throw new UsageError(`--test_batch_size ${o.testBatchSize} must be above 0, or -1 for the whole set`);
  }
  if (!Number.isInteger(o.intermediateStoreFrequency) || o.intermediateStoreFrequency < 0) {
    throw new UsageError(`--intermediate_store_frequency ${o.intermediateStoreFrequency} must be 0 (off) or a whole number above 0`);
  }
  if (!Number.isInteger(o.bottleneckBatchSize) || o.bottleneckBatchSize <= 0) {
    throw new UsageError(`--bottleneck_batch_size ${o.bottleneckBatchSize} must be a whole number above 0`);
  }
  if (o.numWorkers !== undefined && (!Number.isInteger(o.numWorkers) || o.numWorkers < 0)) {
    throw new UsageError(`--num_workers ${o.numWorkers} must be a whole number: 0 runs the module on the main thread`);
  }
  validateDistortions(o.distortions);
  if (!Number.isInteger(o.distortionVariants) || o.distortionVariants < 0) {
    throw new UsageError(`--distortion_variants ${o.distortionVariants} must be 0 (fresh distortions each step) or a whole number above 0`);
  }
  validateShard(o.shardIndex, o.shardCount, o.bottlenecksOnly);
  if (!Number.isInteger(o.seed)) throw new UsageError(`--seed ${o.seed} must be a whole number`);
  if (!o.finalTensorName || /[\s/:^]/.test(o.finalTensorName)) {
    throw new UsageError(`--final_tensor_name "${o.finalTensorName}" must be a plain name without spaces, '/' or ':'`);
  }
}

/** The flags that shape the head's training, as trainHead takes them. */
function headTrainingOptions(o: RetrainOptions) {
  const { optimizer, hiddenUnits, dropout, labelSmoothing, classWeighting, earlyStoppingPatience } = o;
  return {
    steps: o.howManyTrainingSteps,
    learningRate: o.learningRate,
    trainBatchSize: o.trainBatchSize,
    validationBatchSize: o.validationBatchSize,
    evalStepInterval: o.evalStepInterval,
    seed: o.seed,
    optimizer,
    hiddenUnits,
    dropout,
    labelSmoothing,
    classWeighting,
    earlyStoppingPatience,
  };
}

const fineTuneRate = (o: RetrainOptions): number => o.fineTuneLearningRate ?? o.learningRate / 10;

function labeledSet(lists: ImageLists, bottlenecks: Bottlenecks, category: Category): LabeledSet {
  const files: string[] = [];
  const labels: number[] = [];
  lists.classes.forEach((cls, classIndex) => {
    for (const name of cls[category]) {
      const file = path.resolve(lists.imageDir, cls.dir, name);
      if (bottlenecks.values.has(file)) {
        files.push(file);
        labels.push(classIndex);
      }
    }
  });
  const size = bottlenecks.size;
  const x = new Float32Array(files.length * size);
  files.forEach((f, i) => x.set(bottlenecks.values.get(f)!, i * size));
  return { x, y: Int32Array.from(labels), files };
}

export interface RetrainResult {
  summary: RunSummary;
  /** Test images the head got wrong (logged with --print_misclassified_test_images). */
  misclassified: Array<{ file: string; trueLabel: string; predictedLabel: string }>;
}

export async function runRetrain(o: RetrainOptions, log: Logger): Promise<RetrainResult> {
  // Paths first: a failed run's summary is written only where the checks allow.
  checkOutputPaths(o);
  const summary = emptySummary();
  return withFailureSummary(o.summaryJson, summary, log, async () => {
    validate(o);
    return retrainSteps(o, log, summary);
  });
}

async function retrainSteps(o: RetrainOptions, log: Logger, summary: RunSummary): Promise<RetrainResult> {
  const timings = summary.timings_s;
  const timed = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings[stage] = Math.round(performance.now() - t0) / 1000;
    }
  };

  const backend = await timed('backend', () => initBackend(o.backend));
  log.info(`Using backend ${backend.name} (${backend.package})`);
  const lists = await timed('dataset', () => createImageLists(o.imageDir, o, log));
  const labels = lists.classes.map((c) => c.label);
  for (const c of lists.classes) {
    log.info(`Class "${c.label}": ${c.training.length} training, ${c.validation.length} validation, ${c.testing.length} testing images`);
  }
  const extractor = await timed('module', () =>
    loadFeatureExtractor({
      spec: o.tfhubModule,
      cacheDir: o.moduleCacheDir,
      bottleneckLayer: o.bottleneckLayer,
      inputRange: o.inputRange,
      inputHeight: o.inputHeight,
      inputWidth: o.inputWidth,
      signal: o.signal,
      log,
    }),
  );
  const { info } = extractor;
  log.info(
    `Module ${info.spec}: ${info.format}, input ${info.inputHeight}x${info.inputWidth} in [${info.inputRange.join(', ')}], ` +
      `bottleneck ${info.bottleneckTensor} (${info.bottleneckSize} values)`,
  );

  Object.assign(summary, { module: moduleSummary(info), backend: backend.name, ...splitSummary(lists) });
  const finish = async (): Promise<void> => {
    if (o.summaryJson) await writeSummary(o.summaryJson, summary);
  };

  try {
    // Refuse what cannot be done (fine-tuning, a TensorFlow export) before spending time on bottlenecks.
    if (o.fineTuneLayers > 0) splitModule(extractor, o.fineTuneLayers);
    checkTensorFlowExport(info, o);
    const bottlenecks = await timed('bottlenecks', () =>
      cacheBottlenecks(lists, extractor, {
        bottleneckDir: o.bottleneckDir,
        batchSize: o.bottleneckBatchSize,
        strict: o.strict,
        numWorkers: o.numWorkers,
        signal: o.signal,
        shard: validateShard(o.shardIndex, o.shardCount, o.bottlenecksOnly),
        log,
      }),
    );
    summary.bottlenecks = { computed: bottlenecks.computed, cached: bottlenecks.cached, failed: bottlenecks.failed };
    log.info(`Bottlenecks: ${bottlenecks.computed} computed, ${bottlenecks.cached} cached, ${bottlenecks.failed.length} failed`);
    if (o.bottlenecksOnly) {
      await finish();
      return { summary, misclassified: [] };
    }

    const sets = Object.fromEntries(CATEGORIES.map((c) => [c, labeledSet(lists, bottlenecks, c)])) as Record<Category, LabeledSet>;
    const missing = lists.classes.filter((_, k) => !sets.training.y.includes(k)).map((c) => c.label);
    if (missing.length > 0) {
      throw new RetrainError(`no usable training images for class ${missing.map((m) => `"${m}"`).join(', ')}: add images or lower --testing_percentage/--validation_percentage`);
    }
    const distort = distortionsOn(o.distortions);
    let trainBottlenecks: ((rows: Int32Array, step: number) => Promise<Float32Array>) | undefined;
    if (distort) {
      const d = {
        settings: o.distortions,
        seed: o.seed,
        bottleneckDir: o.bottleneckDir,
        batchSize: o.bottleneckBatchSize,
        strict: o.strict,
        numWorkers: o.numWorkers,
        signal: o.signal,
        log,
      };
      if (o.distortionVariants > 0) {
        const v = await timed('distorted_bottlenecks', () => distortedVariants(lists, extractor, sets.training, o.distortionVariants, d));
        log.info(`Distorted bottlenecks: ${v.computed} computed, ${v.cached} cached (${o.distortionVariants} variants per training image)`);
        sets.training = v.training;
      } else {
        log.info('Distortions on with --distortion_variants 0: computing fresh bottlenecks at every training step (slow)');
        trainBottlenecks = freshDistortions(extractor, sets.training, d);
      }
    }
    const intermediate: string[] = [];
    const tb = new TrainingSummaries(o.summariesDir, log);
    const trained = await timed('training', () =>
      trainHead(sets.training, sets.validation, labels.length, info.bottleneckSize, {
        ...headTrainingOptions(o),
        trainBottlenecks,
        intermediateStoreFrequency: o.intermediateStoreFrequency,
        signal: o.signal,
        onIntermediate: async (step, head) => {
          const dir = path.join(o.intermediateOutputGraphsDir, `intermediate_${step}${isFrozenGraphPath(o.outputGraph) ? '.pb' : ''}`);
          await exportModel(extractor, await head.values(), { dir, labels, finalTensorName: o.finalTensorName, flag: '--intermediate_output_graphs_dir' });
          intermediate.push(dir);
        },
        onEval: (point, h) => tb.onEval(point, h),
        log,
      }).finally(() => tb.close()),
    );
    const { head, final } = trained;
    summary.training = {
      steps: o.howManyTrainingSteps,
      final_train_accuracy: final.trainAccuracy,
      final_validation_accuracy: final.validationN > 0 ? final.validationAccuracy : null,
      cross_entropy: final.crossEntropy,
      history: trained.history,
      ...(trained.bestStep === undefined ? {} : { best_step: trained.bestStep, stopped_early: trained.stoppedEarly }),
    };
    if (o.fineTuneLayers > 0) {
      // With distortions on, fine-tuning sees freshly distorted images, as retrain.py's distorted training does.
      const images = distort ? distortedImageBatches(extractor.inputSpec, o.distortions, o.seed) : undefined;
      const ft = await timed('fine_tuning', () => fineTuneStage(extractor, head, sets, { ...o, fineTuneLearningRate: fineTuneRate(o) }, log, images));
      sets.testing = ft.testing;
      summary.fine_tune = ft.summary;
    }

    const misclassified: RetrainResult['misclassified'] = [];
    await timed('testing', async () => {
      if (sets.testing.y.length === 0) {
        log.warn('No test images: skipping the final test (raise --testing_percentage to get one)');
        summary.test = { accuracy: null, n: 0, predictions: [] };
        return;
      }
      const { metrics, predictions } = predictSet(head, sets.testing, info.bottleneckSize, o.testBatchSize, o.seed);
      log.info(`Final test accuracy = ${(metrics.accuracy * 100).toFixed(1)}% (N=${metrics.n})`);
      summary.test = { accuracy: metrics.accuracy, n: metrics.n, predictions: predictionSummary(predictions, labels) };
      for (const p of predictions) {
        if (p.predictedIndex !== p.trueIndex) {
          misclassified.push({ file: p.file, trueLabel: labels[p.trueIndex]!, predictedLabel: labels[p.predictedIndex]! });
        }
      }
      if (o.printMisclassifiedTestImages) {
        log.info('=== MISCLASSIFIED TEST IMAGES ===');
        for (const m of misclassified) log.info(`${m.file}  true: ${m.trueLabel}  predicted: ${m.predictedLabel}`);
      }
    });

    throwIfInterrupted(o.signal, 'interrupted before export: the model was not exported; the bottleneck cache is kept');
    await timed('export', () => withOutputLocks([o.outputGraph, o.outputLabels], (p) => log.info(`Waiting for another run writing ${p}`), async () => {
      await exportModel(extractor, await head.values(), { dir: o.outputGraph, labels, labelsFile: o.outputLabels, finalTensorName: o.finalTensorName, quantizeBytes: o.quantizeBytes });
      if (o.savedModelDir) {
        await exportSavedModel(extractor, await head.values(), { dir: o.savedModelDir, labels, finalTensorName: o.finalTensorName });
        log.info(`Wrote a SavedModel (tag serve, signature serving_default: image -> prediction) to ${o.savedModelDir}`);
      }
    }));
    if (o.quantizeBytes) {
      const bytes = folderBytes(o.outputGraph);
      const acc = sets.testing.y.length ? await timed('export_check', () => exportAccuracy(o.outputGraph, sets.testing.files, sets.testing.y)) : null;
      summary.export = { quantize_bytes: o.quantizeBytes, bytes, test_accuracy: acc };
      log.info(`Export with ${o.quantizeBytes === 1 ? 'uint8' : 'float16'} weights: ${bytes} bytes; test accuracy loaded back = ${acc === null ? 'n/a' : `${(acc * 100).toFixed(1)}%`}`);
    }
    log.info(`Wrote the retrained model to ${o.outputGraph} and its labels to ${o.outputLabels}`);
    summary.outputs = { output_graph: o.outputGraph, output_labels: o.outputLabels, intermediate };
    head.dispose();
    const reportDir = o.reportDir ?? path.dirname(path.resolve(o.outputGraph));
    const report = await timed('report', () => writeReport(reportDir, { summary, labels, flags: { ...o } }));
    log.info(`Wrote the report to ${report.html}`);
    await finish();
    return { summary, misclassified };
  } finally {
    extractor.dispose();
  }
}
