/**
 * retrain's flags: the one place where each is defined. retrain.py's names and
 * defaults, then ours. `RetrainOptions` (what runRetrain takes), the commander
 * options, --help's groups and the report's flags table all come from here.
 */
import os from 'node:os';
import path from 'node:path';
import { BACKENDS } from '../backend.js';
import { defaultCheckFlags } from '../check/types.js';
import { BUILTIN_MODULE as DEFAULT_MODULE, moduleNameProblem } from '../module/catalog.js';
import { defaultModuleCacheDir } from '../module/download.js';
import { CLASS_WEIGHTINGS, HEADS, MAX_BOTTLENECK_BATCH, MAX_HIDDEN_UNITS, MAX_IMAGE_BATCH, OPTIMIZERS } from '../train/limits.js';
import {
  above0,
  batchOf,
  bool,
  channels,
  choice,
  custom,
  defaultsOf,
  filePath,
  float,
  fraction,
  inputSide,
  int,
  parseRange,
  percentage,
  positiveRate,
  string,
  validateOptions,
  zeroOrMore,
  type CrossCheck,
  type OptionsOf,
} from './table.js';

/** --help headings, in the order a user thinks of a run. */
export const RETRAIN_GROUPS = {
  images: 'Images and split:',
  module: 'Module:',
  bottlenecks: 'Bottlenecks:',
  training: 'Training:',
  distortions: 'Distortions:',
  fineTuning: 'Fine-tuning:',
  outputs: 'Outputs:',
  runtime: 'Runtime:',
} as const;
const G = RETRAIN_GROUPS;

const tmp = (name: string) => () => path.join(os.tmpdir(), name);
const CHECK = defaultCheckFlags();

/** Enough distinct views per image for a 4000-step run, at 10x the plain bottleneck cost, paid once (docs/benchmarks.md). */
export const DEFAULT_DISTORTION_VARIANTS = 10;


export const RETRAIN_FLAGS = {
  // Images and split
  imageDir: filePath({ group: G.images, arg: '<dir>', required: 'point it at a folder with one subfolder of images per class', help: 'folder with one subfolder of images per class' }),
  testingPercentage: float({ group: G.images, arg: '<p>', default: 10, check: percentage, help: 'percentage of images used as a test set' }),
  validationPercentage: float({ group: G.images, arg: '<p>', default: 10, check: percentage, help: 'percentage of images used as a validation set' }),
  strict: bool({ group: G.images, help: 'stop at the first unusable image instead of skipping it' }),
  excludeList: filePath({ group: G.images, arg: '<file>', help: 'skip the images listed in this file, one path a line, relative to --image_dir (as dataset_check.csv gives them)' }),
  checkDataset: bool({ group: G.images, help: 'check the images for duplicates, leaks between splits, likely mislabels and outliers, then stop' }),
  skipDatasetCheck: bool({ group: G.images, help: 'do not run the dataset check before training' }),
  nearDuplicateThreshold: float({ group: G.images, default: CHECK.nearDuplicateThreshold, check: (v) => (v > 0 && v <= 1 ? undefined : 'must be a cosine similarity above 0 and at most 1'), help: 'bottleneck cosine similarity at or above which two images are near duplicates' }),
  checkFolds: int({ group: G.images, arg: '<k>', default: CHECK.folds, check: (v) => (v >= 2 ? undefined : 'must be a whole number of at least 2'), help: 'heads the dataset check trains, each without one fold, to find likely mislabels' }),
  checkTrainingSteps: int({ group: G.images, default: CHECK.steps, check: above0, help: "L-BFGS iterations of each of the dataset check's L2 heads, at each regularisation strength tried" }),
  outlierZ: float({ group: G.images, arg: '<z>', default: CHECK.outlierZ, check: (v) => (v > 0 ? undefined : 'must be a number above 0'), help: 'robust standard deviations below the usual class similarity that make an image an outlier' }),

  // Module
  tfhubModule: string({ group: G.module, arg: '<name-url-or-path>', default: DEFAULT_MODULE, check: moduleNameProblem, help: 'module name (see --list_modules), TF Hub/Kaggle URL of a TF.js image feature-vector model, a local model folder or model.json, or a local .onnx feature extractor' }),
  listModules: bool({ group: G.module, help: 'print the module names --tfhub_module takes, which is built in and which are downloaded, and exit' }),
  moduleCacheDir: filePath({ group: G.module, arg: '<dir>', default: defaultModuleCacheDir, help: 'where downloaded modules are cached ($TFHUB_CACHE_DIR)' }),
  bottleneckLayer: string({ group: G.module, arg: '<name>', help: 'layer (layers model) or node (graph model) that gives the feature vector' }),
  inputRange: custom({ group: G.module, arg: '<min,max>', parse: (t: string) => parseRange(t), format: (r: [number, number]) => r.join(','), help: "the module's input value range, when its metadata does not say (e.g. 0,1 or -1,1)" }),
  inputMean: channels({ group: G.module, help: "input = (pixel - mean) / std, instead of --input_range: one value, or three per channel (R,G,B) for .onnx modules (e.g. torchvision's 123.675,116.28,103.53)" }),
  inputStd: channels({ group: G.module, nonZero: true, help: "input = (pixel - mean) / std, with --input_mean (e.g. torchvision's 58.395,57.12,57.375)" }),
  inputHeight: int({ group: G.module, check: inputSide, help: 'input height, for modules with a dynamic input size' }),
  inputWidth: int({ group: G.module, check: inputSide, help: 'input width, for modules with a dynamic input size' }),

  // Bottlenecks
  bottleneckDir: filePath({ group: G.bottlenecks, arg: '<dir>', default: tmp('bottleneck'), help: 'where to cache bottleneck files' }),
  bottlenecksOnly: bool({ group: G.bottlenecks, help: 'stop after computing and caching the bottlenecks' }),
  bottleneckBatchSize: int({ group: G.bottlenecks, default: 4, check: batchOf(MAX_IMAGE_BATCH), help: 'images per inference call when computing bottlenecks' }),
  numWorkers: int({ group: G.bottlenecks, check: zeroOrMore('the module runs on the main thread'), help: 'threads that compute bottlenecks (0: the main thread; default: one per core)' }),
  shardIndex: int({ group: G.bottlenecks, arg: '<i>', default: 0, help: 'with --bottlenecks_only: compute only the images of shard i (0 to --shard_count - 1)' }),
  shardCount: int({ group: G.bottlenecks, default: 1, check: (v) => (Number.isInteger(v) && v >= 1 ? undefined : 'must be a whole number of at least 1'), help: 'with --bottlenecks_only: split the images into n shards for several processes or machines' }),

  // Training
  howManyTrainingSteps: int({ group: G.training, default: 4000, check: above0, help: 'training steps' }),
  learningRate: float({ group: G.training, default: 0.01, check: positiveRate, help: 'learning rate' }),
  trainBatchSize: int({ group: G.training, default: 100, check: batchOf(MAX_BOTTLENECK_BATCH), help: 'images per training step' }),
  evalStepInterval: int({ group: G.training, default: 10, check: above0, help: 'evaluate every n steps' }),
  validationBatchSize: int({ group: G.training, default: 100, check: batchOf(MAX_BOTTLENECK_BATCH, true), help: 'validation images per evaluation (-1: all)' }),
  testBatchSize: int({ group: G.training, default: -1, check: batchOf(MAX_BOTTLENECK_BATCH, true), help: 'test images for the final test (-1: all)' }),
  printMisclassifiedTestImages: bool({ group: G.training, help: 'list the misclassified test images' }),
  seed: int({ group: G.training, default: 0, help: 'random seed: the same seed gives the same results' }),
  head: choice(HEADS, { group: G.training, default: 'sgd', help: "the head: sgd (retrain.py's training loop), l2 (softmax with L2 regularisation solved to convergence, its strength chosen on validation), or l2_standardized (the same on standardised bottlenecks)" }),
  headC: float({ group: G.training, arg: '<C>', check: (v) => (v > 0 ? undefined : 'must be a number above 0'), help: 'with --head l2 or l2_standardized: the inverse regularisation strength C (default: chosen on the validation set, or by k-fold on the training set when it is small)' }),
  optimizer: choice(OPTIMIZERS, { group: G.training, default: 'sgd', help: 'optimizer of the head' }),
  hiddenUnits: int({ group: G.training, default: 0, check: (v) => zeroOrMore('no hidden layer')(v) ?? (v > MAX_HIDDEN_UNITS ? `is too large: give at most ${MAX_HIDDEN_UNITS}` : undefined), help: 'add a ReLU hidden layer of n units before final_result (0: none)' }),
  dropout: float({ group: G.training, arg: '<rate>', default: 0, check: fraction, help: "dropout rate on the head's inputs while training" }),
  labelSmoothing: float({ group: G.training, default: 0, check: fraction, help: 'label smoothing of the cross entropy (0: none)' }),
  classWeighting: choice(CLASS_WEIGHTINGS, { group: G.training, arg: '<mode>', default: 'none', help: 'weight the loss so every class counts equally (balanced)' }),
  earlyStoppingPatience: int({ group: G.training, arg: '<k>', default: 0, check: zeroOrMore('off'), help: 'stop when validation accuracy has not improved for k evaluations and keep the best head (0: off)' }),

  // Distortions
  flipLeftRight: bool({ group: G.distortions, help: 'randomly mirror half of the training images horizontally' }),
  randomCrop: float({ group: G.distortions, arg: '<p>', default: 0, check: (v) => (v >= 0 ? undefined : 'must be a percentage of 0 or more'), help: 'percentage margin to crop training images by at random' }),
  randomScale: float({ group: G.distortions, arg: '<p>', default: 0, check: (v) => (v >= 0 ? undefined : 'must be a percentage of 0 or more'), help: 'percentage to randomly enlarge training images by' }),
  // Above 100 the lower brightness bound would turn pixels negative.
  randomBrightness: float({ group: G.distortions, arg: '<p>', default: 0, check: (v) => (v >= 0 && v <= 100 ? undefined : 'must be a percentage from 0 to 100'), help: 'percentage to randomly multiply training pixel values up or down by' }),
  distortionVariants: int({ group: G.distortions, arg: '<k>', default: DEFAULT_DISTORTION_VARIANTS, check: zeroOrMore('fresh distortions each step'), help: 'with distortions: distorted copies per training image, cached once (0: fresh ones every step, as retrain.py)' }),

  // Fine-tuning
  fineTuneLayers: int({ group: G.fineTuning, default: 0, check: zeroOrMore('off'), help: 'after training the head, unfreeze the top n layers (with weights) of the module and train them with the head on cached activations (0: off)' }),
  fineTuneEpochs: int({ group: G.fineTuning, default: 3, check: above0, help: 'fine-tuning epochs at most (stops early when validation accuracy stops improving; the best epoch is kept)' }),
  fineTuneSteps: int({ group: G.fineTuning, check: above0, help: 'fine-tuning steps instead of --fine_tune_epochs (no early stopping)' }),
  fineTuneOptimizer: choice(OPTIMIZERS, { group: G.fineTuning, default: 'adam', help: 'optimizer of fine-tuning (the top layers and the head)' }),
  fineTuneLearningRate: float({ group: G.fineTuning, default: 0.0001, check: positiveRate, help: 'fine-tuning learning rate' }),
  fineTuneBatchSize: int({ group: G.fineTuning, default: 32, check: batchOf(MAX_IMAGE_BATCH), help: 'cached activations per fine-tuning step' }),

  // Outputs
  outputGraph: filePath({ group: G.outputs, arg: '<dir>', default: tmp('output_graph'), help: 'where to save the trained model: a folder for TF.js, a .pb file for a frozen TensorFlow graph (graph-model modules), a .onnx file, or a .tflite file' }),
  outputLabels: filePath({ group: G.outputs, arg: '<file>', default: tmp('output_labels.txt'), help: "where to save the trained model's labels" }),
  finalTensorName: string({ group: G.outputs, arg: '<name>', default: 'final_result', check: (v) => (v && !/[\s/:^]/.test(v) ? undefined : "must be a plain name without spaces, '/' or ':'"), help: 'name of the output classification layer' }),
  intermediateOutputGraphsDir: filePath({ group: G.outputs, arg: '<dir>', default: tmp('intermediate_graph'), help: 'where to save the intermediate models' }),
  intermediateStoreFrequency: int({ group: G.outputs, default: 0, check: zeroOrMore('off'), help: 'save an intermediate model every n steps (0: never)' }),
  savedModelDir: filePath({ group: G.outputs, arg: '<dir>', help: 'also write a TensorFlow SavedModel for TF Serving here (graph-model modules)' }),
  quantizeBytes: int({ group: G.outputs, check: (v) => (v === 1 || v === 2 ? undefined : 'must be 1 (uint8) or 2 (float16)'), help: 'store the exported weights as uint8 (1) or float16 (2)' }),
  quantize: custom({ group: G.outputs, arg: '<scheme>', parse: (t: string) => t as 'int8', format: String, check: (v) => (v === 'int8' ? undefined : 'must be int8'), help: 'full-integer post-training quantization of a .tflite --output_graph (int8, uint8 input and output)' }),
  summaryJson: filePath({ group: G.outputs, arg: '<file>', help: 'write a JSON summary of the run for scripts' }),
  summariesDir: filePath({ group: G.outputs, arg: '<dir>', default: tmp('retrain_logs'), help: 'where to save TensorBoard summaries (train/ and validation/)' }),
  reportDir: filePath({ group: G.outputs, arg: '<dir>', help: 'where to write report.html and its CSVs (default: the folder holding --output_graph)' }),

  // Runtime
  backend: choice(BACKENDS, { group: G.runtime, default: 'auto', help: 'compute backend' }),
  verbose: bool({ group: G.runtime, help: 'show stack traces on errors' }),
  version: bool({ group: G.runtime, help: "print retrain-ts's version and exit" }),
};

/** Rules over several flags; each value on its own is checked by its entry above. */
const RETRAIN_RULES: ReadonlyArray<CrossCheck<RetrainFlags>> = [
  (o) =>
    o.inputRange && (o.inputMean || o.inputStd)
      ? '--input_range and --input_mean/--input_std both set the normalisation: give one of them'
      : undefined,
  (o) => (!o.inputMean !== !o.inputStd ? '--input_mean and --input_std go together: give both (e.g. --input_mean 127.5 --input_std 127.5)' : undefined),
  (o) => (o.checkDataset && o.skipDatasetCheck ? '--check_dataset and --skip_dataset_check contradict each other: give one of them' : undefined),
  (o) => (o.checkDataset && o.bottlenecksOnly ? '--check_dataset and --bottlenecks_only both stop the run early: give one of them' : undefined),
  (o) =>
    o.testingPercentage + o.validationPercentage > 100
      ? `--testing_percentage ${o.testingPercentage} plus --validation_percentage ${o.validationPercentage} is over 100: lower one of them`
      : undefined,
  (o) =>
    Number.isInteger(o.shardIndex) && o.shardIndex >= 0 && o.shardIndex < o.shardCount
      ? undefined
      : `--shard_index ${o.shardIndex} must be a whole number from 0 to --shard_count - 1 (${o.shardCount - 1})`,
  (o) => (o.quantize && o.quantizeBytes ? `--quantize ${o.quantize} and --quantize_bytes ${o.quantizeBytes} both choose the weights' type: give one of them` : undefined),
  (o) =>
    o.quantize && !o.outputGraph.endsWith('.tflite')
      ? `--quantize ${o.quantize} applies to a TFLite model: give --output_graph a .tflite file, or drop --quantize`
      : undefined,
  (o) =>
    o.outputGraph.endsWith('.tflite') && o.quantizeBytes === 1
      ? `--quantize_bytes 1 (uint8 weights) has no TFLite form: use --quantize int8 or --quantize_bytes 2 with --output_graph ${o.outputGraph}`
      : undefined,
  (o) =>
    o.shardCount > 1 && !o.bottlenecksOnly
      ? `--shard_count ${o.shardCount} computes only part of the bottlenecks: add --bottlenecks_only, then train in a run without the shard flags`
      : undefined,
  (o) => (o.headC !== undefined && o.head === 'sgd' ? `--head_c ${o.headC} sets the L2 head's strength: add --head l2 or --head l2_standardized, or drop --head_c` : undefined),
  (o) => {
    if (o.head === 'sgd') return undefined;
    const sgdOnly: Array<[boolean, string]> = [
      [o.optimizer !== 'sgd', `--optimizer ${o.optimizer}`],
      [o.hiddenUnits > 0, `--hidden_units ${o.hiddenUnits}`],
      [o.dropout > 0, `--dropout ${o.dropout}`],
      [o.labelSmoothing > 0, `--label_smoothing ${o.labelSmoothing}`],
      [o.classWeighting !== 'none', `--class_weighting ${o.classWeighting}`],
      [o.earlyStoppingPatience > 0, `--early_stopping_patience ${o.earlyStoppingPatience}`],
      [o.intermediateStoreFrequency > 0, `--intermediate_store_frequency ${o.intermediateStoreFrequency}`],
      [o.distortionVariants === 0 && (o.flipLeftRight || o.randomCrop > 0 || o.randomScale > 0 || o.randomBrightness > 0), '--distortion_variants 0'],
    ];
    const bad = sgdOnly.find(([on]) => on);
    return bad ? `${bad[1]} applies to the SGD head's step loop; --head ${o.head} is solved in one go on the cached bottlenecks: drop ${bad[1].split(' ')[0]} or use --head sgd` : undefined;
  },
];

export type RetrainFlags = OptionsOf<typeof RETRAIN_FLAGS>;

/** What runRetrain takes: every flag's value, plus what only a caller can give. */
export interface RetrainOptions extends RetrainFlags {
  /** Aborting it (the CLI does on Ctrl-C and SIGTERM) stops the run with an InterruptedError; finished cache files are kept. */
  signal?: AbortSignal;
}

/** Every flag at its default; --image_dir has none and must be set. */
export function defaultRetrainOptions(): RetrainOptions {
  return defaultsOf(RETRAIN_FLAGS);
}

/** Checks every value once; a problem is a UsageError naming the flag. */
export function validateRetrainOptions(o: RetrainOptions): RetrainOptions {
  return validateOptions(RETRAIN_FLAGS, o, RETRAIN_RULES);
}
