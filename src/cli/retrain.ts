/** `retrain`: parses retrain.py's flags and calls the library. */
import { Command, Option } from 'commander';
import { BACKENDS, type BackendChoice } from '../backend.js';
import { DEFAULT_MODULE, parseRange } from '../module/index.js';
import { defaultModuleCacheDir } from '../module/download.js';
import { defaultRetrainOptions, runRetrain, type RetrainOptions } from '../retrain.js';
import { expandHome } from '../util/fsutil.js';
import { CLASS_WEIGHTINGS, OPTIMIZERS, type ClassWeighting, type OptimizerName } from '../train/options.js';
import type { QuantizeBytes } from '../export/quantize.js';
import { checkMode } from '../check/index.js';
import { configureCommand, floatArg, intArg, onInterrupt, runMain, stderrLogger } from './common.js';

const d = defaultRetrainOptions();
const c = d.datasetCheck;

export function retrainCommand(): Command {
  return configureCommand(new Command(), 'retrain')
    .description("Retrain an image feature-vector module's top layer on a folder of images (TensorFlow's retrain.py).")
    .option('--image_dir <dir>', 'folder with one subfolder of images per class')
    .option('--output_graph <dir>', 'where to save the trained model: a folder for TF.js, or a .pb file for a frozen TensorFlow graph (graph-model modules)', d.outputGraph)
    .option('--intermediate_output_graphs_dir <dir>', 'where to save the intermediate models', d.intermediateOutputGraphsDir)
    .option('--intermediate_store_frequency <n>', 'save an intermediate model every n steps (0: never)', intArg('--intermediate_store_frequency'), 0)
    .option('--output_labels <file>', "where to save the trained model's labels", d.outputLabels)
    .option('--how_many_training_steps <n>', 'training steps', intArg('--how_many_training_steps'), d.howManyTrainingSteps)
    .option('--learning_rate <x>', 'learning rate', floatArg('--learning_rate'), d.learningRate)
    .option('--testing_percentage <p>', 'percentage of images used as a test set', floatArg('--testing_percentage'), d.testingPercentage)
    .option('--validation_percentage <p>', 'percentage of images used as a validation set', floatArg('--validation_percentage'), d.validationPercentage)
    .option('--eval_step_interval <n>', 'evaluate every n steps', intArg('--eval_step_interval'), d.evalStepInterval)
    .option('--train_batch_size <n>', 'images per training step', intArg('--train_batch_size'), d.trainBatchSize)
    .option('--test_batch_size <n>', 'test images for the final test (-1: all)', intArg('--test_batch_size'), d.testBatchSize)
    .option('--validation_batch_size <n>', 'validation images per evaluation (-1: all)', intArg('--validation_batch_size'), d.validationBatchSize)
    .option('--print_misclassified_test_images', 'list the misclassified test images', false)
    .option('--bottleneck_dir <dir>', 'where to cache bottleneck files', d.bottleneckDir)
    .option('--final_tensor_name <name>', 'name of the output classification layer', d.finalTensorName)
    .option('--tfhub_module <url-or-path>', 'TF Hub/Kaggle URL of a TF.js image feature-vector model, or a local model folder or model.json', DEFAULT_MODULE)
    .option('--module_cache_dir <dir>', 'where downloaded modules are cached ($TFHUB_CACHE_DIR)', defaultModuleCacheDir())
    .option('--bottleneck_layer <name>', 'layer (layers model) or node (graph model) that gives the feature vector')
    .option('--input_range <min,max>', "the module's input value range, when its metadata does not say (e.g. 0,1 or -1,1)")
    .option('--input_height <n>', 'input height, for modules with a dynamic input size', intArg('--input_height'))
    .option('--input_width <n>', 'input width, for modules with a dynamic input size', intArg('--input_width'))
    .option('--saved_model_dir <dir>', 'also write a TensorFlow SavedModel for TF Serving here (graph-model modules)')
    .option('--summary_json <file>', 'write a JSON summary of the run for scripts')
    .option('--summaries_dir <dir>', 'where to save TensorBoard summaries (train/ and validation/)', d.summariesDir)
    .option('--report_dir <dir>', 'where to write report.html and its CSVs (default: the folder holding --output_graph)')
    .option('--bottlenecks_only', 'stop after computing and caching the bottlenecks', false)
    .option('--bottleneck_batch_size <n>', 'images per inference call when computing bottlenecks', intArg('--bottleneck_batch_size'), d.bottleneckBatchSize)
    .option('--num_workers <n>', 'threads that compute bottlenecks (0: the main thread; default: one per core)', intArg('--num_workers'))
    .option('--shard_index <i>', 'with --bottlenecks_only: compute only the images of shard i (0 to --shard_count - 1)', intArg('--shard_index'), d.shardIndex)
    .option('--shard_count <n>', 'with --bottlenecks_only: split the images into n shards for several processes or machines', intArg('--shard_count'), d.shardCount)
    .addOption(new Option('--backend <name>', 'compute backend').choices([...BACKENDS]).default('auto'))
    .option('--flip_left_right', 'randomly mirror half of the training images horizontally', false)
    .option('--random_crop <p>', 'percentage margin to crop training images by at random', floatArg('--random_crop'), 0)
    .option('--random_scale <p>', 'percentage to randomly enlarge training images by', floatArg('--random_scale'), 0)
    .option('--random_brightness <p>', 'percentage to randomly multiply training pixel values up or down by', floatArg('--random_brightness'), 0)
    .option(
      '--distortion_variants <k>',
      'with distortions: distorted copies per training image, cached once (0: fresh ones every step, as retrain.py)',
      intArg('--distortion_variants'),
      d.distortionVariants,
    )
    .option('--seed <n>', 'random seed: the same seed gives the same results', intArg('--seed'), d.seed)
    .option('--strict', 'stop at the first unusable image instead of skipping it', false)
    .option('--verbose', 'show stack traces on errors', false)
    .addOption(new Option('--optimizer <name>', 'optimizer of the head (and of fine-tuning)').choices([...OPTIMIZERS]).default(d.optimizer))
    .option('--hidden_units <n>', 'add a ReLU hidden layer of n units before final_result (0: none)', intArg('--hidden_units'), d.hiddenUnits)
    .option('--dropout <rate>', "dropout rate on the head's inputs while training", floatArg('--dropout'), d.dropout)
    .option('--label_smoothing <x>', 'label smoothing of the cross entropy (0: none)', floatArg('--label_smoothing'), d.labelSmoothing)
    .addOption(new Option('--class_weighting <mode>', 'weight the loss so every class counts equally (balanced)').choices([...CLASS_WEIGHTINGS]).default(d.classWeighting))
    .option('--early_stopping_patience <k>', 'stop when validation accuracy has not improved for k evaluations and keep the best head (0: off)', intArg('--early_stopping_patience'), d.earlyStoppingPatience)
    .option('--fine_tune_layers <n>', 'after training the head, unfreeze the top n layers (with weights) of a layers-model module and train end to end on images (0: off)', intArg('--fine_tune_layers'), d.fineTuneLayers)
    .option('--fine_tune_steps <n>', 'fine-tuning steps', intArg('--fine_tune_steps'), d.fineTuneSteps)
    .option('--fine_tune_learning_rate <x>', 'fine-tuning learning rate (default: a tenth of --learning_rate)', floatArg('--fine_tune_learning_rate'))
    .option('--fine_tune_batch_size <n>', 'images per fine-tuning step', intArg('--fine_tune_batch_size'), d.fineTuneBatchSize)
    .option('--quantize_bytes <n>', 'store the exported weights as uint8 (1) or float16 (2)', intArg('--quantize_bytes'))
    .option('--check_dataset', 'check the images for duplicates, leaks between splits, likely mislabels and outliers, then stop', false)
    .option('--skip_dataset_check', 'do not run the dataset check before training', false)
    .option('--near_duplicate_threshold <x>', 'bottleneck cosine similarity at or above which two images are near duplicates', floatArg('--near_duplicate_threshold'), c.nearDuplicateThreshold)
    .option('--check_folds <k>', 'heads the dataset check trains, each without one fold, to find likely mislabels', intArg('--check_folds'), c.folds)
    .option('--check_training_steps <n>', "training steps of each of the dataset check's heads", intArg('--check_training_steps'), c.steps)
    .option('--outlier_z <z>', 'robust standard deviations below the usual class similarity that make an image an outlier', floatArg('--outlier_z'), c.outlierZ)
    .option('--exclude_list <file>', 'skip the images listed in this file, one path a line, relative to --image_dir (as dataset_check.csv gives them)');
}

type Flags = Record<string, unknown>;

export function optionsFromFlags(f: Flags): RetrainOptions {
  const str = (k: string) => (f[k] === undefined ? undefined : expandHome(String(f[k])));
  return {
    ...d,
    imageDir: str('image_dir') ?? '',
    tfhubModule: str('tfhub_module')!,
    moduleCacheDir: str('module_cache_dir')!,
    bottleneckDir: str('bottleneck_dir')!,
    outputGraph: str('output_graph')!,
    outputLabels: str('output_labels')!,
    intermediateOutputGraphsDir: str('intermediate_output_graphs_dir')!,
    intermediateStoreFrequency: f['intermediate_store_frequency'] as number,
    savedModelDir: str('saved_model_dir'),
    summaryJson: str('summary_json'),
    finalTensorName: f['final_tensor_name'] as string,
    howManyTrainingSteps: f['how_many_training_steps'] as number,
    learningRate: f['learning_rate'] as number,
    testingPercentage: f['testing_percentage'] as number,
    validationPercentage: f['validation_percentage'] as number,
    evalStepInterval: f['eval_step_interval'] as number,
    trainBatchSize: f['train_batch_size'] as number,
    testBatchSize: f['test_batch_size'] as number,
    validationBatchSize: f['validation_batch_size'] as number,
    printMisclassifiedTestImages: f['print_misclassified_test_images'] === true,
    bottleneckLayer: f['bottleneck_layer'] as string | undefined,
    inputRange: f['input_range'] === undefined ? undefined : parseRange(String(f['input_range'])),
    inputHeight: f['input_height'] as number | undefined,
    inputWidth: f['input_width'] as number | undefined,
    backend: f['backend'] as BackendChoice,
    seed: f['seed'] as number,
    bottlenecksOnly: f['bottlenecks_only'] === true,
    bottleneckBatchSize: f['bottleneck_batch_size'] as number,
    numWorkers: f['num_workers'] as number | undefined,
    shardIndex: f['shard_index'] as number,
    shardCount: f['shard_count'] as number,
    strict: f['strict'] === true,
    summariesDir: str('summaries_dir')!,
    reportDir: str('report_dir'),
    distortions: {
      flipLeftRight: f['flip_left_right'] === true,
      randomCrop: f['random_crop'] as number,
      randomScale: f['random_scale'] as number,
      randomBrightness: f['random_brightness'] as number,
    },
    distortionVariants: f['distortion_variants'] as number,
    optimizer: f['optimizer'] as OptimizerName,
    hiddenUnits: f['hidden_units'] as number,
    dropout: f['dropout'] as number,
    labelSmoothing: f['label_smoothing'] as number,
    classWeighting: f['class_weighting'] as ClassWeighting,
    earlyStoppingPatience: f['early_stopping_patience'] as number,
    fineTuneLayers: f['fine_tune_layers'] as number,
    fineTuneSteps: f['fine_tune_steps'] as number,
    fineTuneLearningRate: f['fine_tune_learning_rate'] as number | undefined,
    fineTuneBatchSize: f['fine_tune_batch_size'] as number,
    quantizeBytes: f['quantize_bytes'] as QuantizeBytes | undefined,
    datasetCheck: {
      mode: checkMode(f['check_dataset'] === true, f['skip_dataset_check'] === true),
      nearDuplicateThreshold: f['near_duplicate_threshold'] as number,
      folds: f['check_folds'] as number,
      steps: f['check_training_steps'] as number,
      outlierZ: f['outlier_z'] as number,
    },
    excludeList: str('exclude_list'),
  };
}

export async function main(argv: string[] = process.argv): Promise<void> {
  const cmd = retrainCommand();
  const log = stderrLogger('retrain');
  const interrupt = onInterrupt();
  await runMain('retrain', () => argv.includes('--verbose'), async () => {
    cmd.parse(argv);
    await runRetrain({ ...optionsFromFlags(cmd.opts()), signal: interrupt.signal }, log);
    return 0;
  });
  interrupt.dispose();
  log.stop();
}
