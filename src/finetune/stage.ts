/** The fine-tuning step of a retrain run. */
import { cacheBottlenecks, type Bottlenecks, type DerivedBottlenecks } from '../bottleneck/index.js';
import { distortedTraining, type DistortionStepOptions } from '../bottleneck/distorted.js';
import { labeledSets, type LabeledSet, type LabeledSets } from '../bottleneck/sets.js';
import type { ImageLists } from '../dataset/index.js';
import { distortionsOn } from '../image/distort.js';
import type { Logger } from '../log.js';
import type { Graph } from '../graph/ir.js';
import type { FeatureExtractor, OnnxExtractor } from '../module/index.js';
import type { Head } from '../train/index.js';
import type { ClassWeighting, OptimizerName } from '../train/options.js';
import { activationExtractor } from './activations.js';
import { GraphTop } from './executor.js';
import { fineTune, splitModule, topBottlenecks, type FineTuneEpoch } from './index.js';
import type { GraphSplit } from './split.js';
import { withFineTunedOnnx, withFineTunedWeights } from './weights.js';

/** Cached distorted variants per image when --distortion_variants is 0 (fresh ones would run the bottom at every step). */
const FRESH_DISTORTION_VARIANTS = 10;

/** Epochs in a row more than half a standard error below the best validation accuracy (keepsEpoch) before fine-tuning stops. */
export const FINE_TUNE_PATIENCE = 2;

/** What the fine-tuning step reads of the run's options (the flags of the same names). */
export interface FineTuneStageOptions extends DistortionStepOptions {
  fineTuneLayers: number;
  fineTuneEpochs: number;
  fineTuneSteps?: number;
  fineTuneLearningRate: number;
  fineTuneOptimizer: OptimizerName;
  fineTuneBatchSize: number;
  labelSmoothing: number;
  classWeighting: ClassWeighting;
}

export interface FineTuneSummary {
  layers: string[];
  /** The value entering the top, and its shape per image. */
  cut: string;
  activation_shape: number[];
  parameters: number;
  epochs: number;
  steps: number;
  best_epoch: number;
  optimizer: OptimizerName;
  learning_rate: number;
  batch_size: number;
  activations: { computed: number; cached: number };
  validation_accuracy_before: number | null;
  validation_accuracy_after: number | null;
  history: FineTuneEpoch[];
}

/** The module split for fine-tuning, with every image's activation entering the top. */
export interface FineTunePrep {
  graph: Graph;
  split: GraphSplit;
  /** The frozen bottom, as an extractor of activations. */
  bottom: OnnxExtractor;
  /** Workers that run the bottom: 0 without ONNX Runtime, where tfjs workers would load the whole module. */
  numWorkers?: number;
  /** The top with the module's own weights (fine-tuning trains it in place). */
  top: GraphTop;
  acts: Bottlenecks;
  /** Bottlenecks from the activations through the top: the bottom runs once per image. */
  derive: DerivedBottlenecks;
  dispose(): void;
}

/**
 * Step "cache the fine-tuning activations" (--fine_tune_layers), before the
 * bottlenecks: splits the module below its top N layers and caches the frozen
 * bottom's activation for every image, so that the bottleneck step can compute the
 * missing bottlenecks through the top instead of running the whole module again.
 */
export async function fineTuneActivations(ex: FeatureExtractor, lists: ImageLists, o: FineTuneStageOptions, log: Logger): Promise<FineTunePrep> {
  const { graph, split } = await splitModule(ex, o.fineTuneLayers);
  const { extractor: bottom, onOrt } = await activationExtractor(ex, graph, split, { threads: o.numWorkers || undefined, log });
  const top = new GraphTop(graph, split);
  const dispose = () => {
    top.dispose();
    bottom.dispose();
  };
  const numWorkers = onOrt ? o.numWorkers : 0;
  try {
    const acts = await cacheBottlenecks(lists, bottom, { bottleneckDir: o.bottleneckDir, batchSize: o.bottleneckBatchSize, strict: o.strict, numWorkers, signal: o.signal, log });
    log.info(`Fine-tuning activations (${split.cut}, [${split.cutShape.join(', ')}] per image): ${acts.computed} computed, ${acts.cached} cached`);
    const size = split.cutShape.reduce((p, d) => p * d, 1);
    const derive: DerivedBottlenecks = {
      has: (file) => acts.values.has(file),
      source: `through the module's top ${o.fineTuneLayers} layers from the fine-tuning activations`,
      engine: acts.engine,
      async compute(files) {
        const x = new Float32Array(files.length * size);
        files.forEach((f, i) => x.set(acts.values.get(f)!, i * size));
        const b = await topBottlenecks(top, { x, y: new Int32Array(files.length), files });
        const d = b.x.length / files.length;
        return files.map((_, i) => b.x.slice(i * d, (i + 1) * d));
      },
    };
    return { graph, split, bottom, numWorkers, top, acts, derive, dispose };
  } catch (err) {
    dispose();
    throw err;
  }
}

/**
 * Step "fine-tune the module" (--fine_tune_layers): trains the top and the head on
 * the cached activations (and distorted variants of them when a distortion flag is
 * on), and returns the module carrying the fine-tuned weights (for every export) with
 * the test bottlenecks through it.
 */
export async function fineTuneStage(
  ex: FeatureExtractor,
  head: Head,
  lists: ImageLists,
  prep: FineTunePrep,
  o: FineTuneStageOptions,
  log: Logger,
): Promise<{ extractor: FeatureExtractor; testing: LabeledSet; summary: FineTuneSummary }> {
  const { graph, split, bottom, numWorkers, top, acts } = prep;
  const sets: LabeledSets = labeledSets(lists, acts);
  let training = sets.training;
  if (distortionsOn(o)) {
    // Fresh distortions (--distortion_variants 0) would run the bottom at every step: fine-tuning uses cached variants.
    const variants = o.distortionVariants || FRESH_DISTORTION_VARIANTS;
    training = (await distortedTraining(lists, bottom, sets.training, { ...o, distortionVariants: variants, numWorkers }, log)).training;
  }
  const parameters = [...top.variables.values()].reduce((s, v) => s + v.size, 0);
  log.info(
    `Fine-tuning the top ${o.fineTuneLayers} layers of the module (${split.layers[0]} … ${split.layers[split.layers.length - 1]}, ${parameters} values) with the head: ` +
      `${o.fineTuneSteps !== undefined ? `${o.fineTuneSteps} steps` : `up to ${o.fineTuneEpochs} epochs`} of ${o.fineTuneBatchSize} with ${o.fineTuneOptimizer} at learning rate ${o.fineTuneLearningRate}`,
  );
  const r = await fineTune(top, head, training, sets.validation, {
    epochs: o.fineTuneEpochs,
    steps: o.fineTuneSteps,
    learningRate: o.fineTuneLearningRate,
    batchSize: o.fineTuneBatchSize,
    patience: FINE_TUNE_PATIENCE,
    seed: o.seed,
    optimizer: o.fineTuneOptimizer,
    labelSmoothing: o.labelSmoothing,
    classWeighting: o.classWeighting,
    signal: o.signal,
    log,
  });
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
  log.info(`Fine-tuning: validation accuracy ${pct(r.validationBefore)} before, ${pct(r.validationAfter)} after (N=${sets.validation.y.length}; weights of epoch ${r.bestEpoch} kept${sets.validation.y.length ? ', the latest within half a standard error of the best' : ''})`);
  const testing = await topBottlenecks(top, sets.testing);
  const tuned =
    ex.kind === 'graph' || ex.kind === 'layers'
      ? withFineTunedWeights(ex, top.values())
      : ex.kind === 'onnx'
        ? await withFineTunedOnnx(ex, graph, top.values(), { threads: o.numWorkers || undefined, log })
        : ex;
  return {
    extractor: tuned,
    testing,
    summary: {
      layers: split.layers,
      cut: split.cut,
      activation_shape: split.cutShape,
      parameters,
      epochs: r.history.length,
      steps: r.steps,
      best_epoch: r.bestEpoch,
      optimizer: o.fineTuneOptimizer,
      learning_rate: o.fineTuneLearningRate,
      batch_size: o.fineTuneBatchSize,
      activations: { computed: acts.computed, cached: acts.cached },
      validation_accuracy_before: r.validationBefore,
      validation_accuracy_after: r.validationAfter,
      history: r.history,
    },
  };
}
