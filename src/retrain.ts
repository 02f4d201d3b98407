/**
 * One retrain run, as retrain.py's `main`: a sequence of named steps, each a
 * function in the stage that owns it (dataset → module → bottleneck → train →
 * export, then summary and report). The run summary is assembled from what the
 * steps return. This file never prints and never exits.
 */
import path from 'node:path';
import { initBackend } from './backend.js';
import { cacheAllBottlenecks, type BottleneckSection } from './bottleneck/index.js';
import { distortedTraining } from './bottleneck/distorted.js';
import { labeledSets, type LabeledSets } from './bottleneck/sets.js';
import { findImages, splitSection, type ImageLists } from './dataset/index.js';
import { RetrainError } from './errors.js';
import { checkQuantizedExport, exportIntermediate, exportRetrained } from './export/stage.js';
import { checkOnnxExport } from './export/onnx.js';
import { checkTensorFlowExport } from './export/tf.js';
import { fineTunableLayers } from './finetune/index.js';
import { fineTuneStage } from './finetune/stage.js';
import { RETRAIN_FLAGS, fineTuneRate, validateRetrainOptions, type RetrainOptions } from './flags/retrain.js';
import { describeFlags } from './flags/table.js';
import type { Logger } from './log.js';
import { loadModule, moduleSection, type FeatureExtractor } from './module/index.js';
import { writeReport } from './report/index.js';
import { writeSummary, type RunSummary } from './summary/index.js';
import { TrainingSummaries } from './tensorboard/index.js';
import { finalTest, trainNewHead, type Misclassified } from './train/stage.js';
import { throwIfInterrupted } from './util/abort.js';

export { DEFAULT_DISTORTION_VARIANTS, defaultRetrainOptions, type RetrainOptions } from './flags/retrain.js';

export interface RetrainResult {
  summary: RunSummary;
  /** Test images the head got wrong (logged with --print_misclassified_test_images). */
  misclassified: Misclassified[];
}

/** Wall time per step, in seconds, for the summary and the report. */
class StepClock {
  readonly timings: Record<string, number> = {};
  async time<T>(step: string, fn: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.timings[step] = Math.round(performance.now() - t0) / 1000;
    }
  }
}

export async function runRetrain(options: RetrainOptions, log: Logger): Promise<RetrainResult> {
  const o = validateRetrainOptions(options);
  const clock = new StepClock();
  const backend = await clock.time('backend', () => initBackend(o.backend));
  log.info(`Using backend ${backend.name} (${backend.package})`);
  const lists = await clock.time('dataset', () => findImages(o, log));
  const extractor = await clock.time('module', () => loadModule(o, log));
  const base = { module: moduleSection(extractor.info), backend: backend.name, ...splitSection(lists), timings_s: clock.timings };
  try {
    refuseUnsupportedRequests(extractor, o);
    const { bottlenecks, section } = await clock.time('bottlenecks', () => cacheAllBottlenecks(lists, extractor, o, log));
    if (o.bottlenecksOnly) return await finish(o, { summary: { ...base, bottlenecks: section }, misclassified: [] });
    const sets = usableSets(lists, labeledSets(lists, bottlenecks));
    return await trainAndExport(o, log, clock, extractor, lists, sets, { ...base, bottlenecks: section });
  } finally {
    extractor.dispose();
  }
}

/** The steps after the bottlenecks: train, fine-tune, test, export, report. */
async function trainAndExport(
  o: RetrainOptions,
  log: Logger,
  clock: StepClock,
  extractor: FeatureExtractor,
  lists: ImageLists,
  sets: LabeledSets,
  base: Omit<RunSummary, 'training'> & { bottlenecks: BottleneckSection },
): Promise<RetrainResult> {
  const labels = lists.classes.map((c) => c.label);
  const size = extractor.info.bottleneckSize;
  const distorted = await clock.time('distorted_bottlenecks', () => distortedTraining(lists, extractor, sets.training, o, log));
  const intermediate: string[] = [];
  const tb = new TrainingSummaries(o.summariesDir, log);
  const { head, section: training } = await clock.time('training', () =>
    trainNewHead({ training: distorted.training, validation: sets.validation }, labels.length, size, o, {
      trainBottlenecks: distorted.trainBottlenecks,
      onEval: (point, h) => tb.onEval(point, h),
      onIntermediate: async (step, h) => void intermediate.push(await exportIntermediate(extractor, await h.values(), labels, o, step)),
    }, log).finally(() => tb.close()),
  );
  try {
    const tuned = o.fineTuneLayers > 0
      ? await clock.time('fine_tuning', () => fineTuneStage(extractor, head, sets, { ...o, fineTuneLearningRate: fineTuneRate(o) }, log))
      : undefined;
    const testing = tuned?.testing ?? sets.testing;
    const test = await clock.time('testing', () => finalTest(head, testing, labels, o, log));
    throwIfInterrupted(o.signal, 'interrupted before export: the model was not exported; the bottleneck cache is kept');
    const values = await head.values();
    await clock.time('export', () => exportRetrained(extractor, values, labels, o, log));
    // A signal during the export lets it finish (it is one atomic unit), then stops here.
    throwIfInterrupted(o.signal, `interrupted during the export: the export was finished first, so ${o.outputGraph} holds the new model; the report was not written`);
    const exported = await clock.time('export_check', () => checkQuantizedExport(o, testing, log));
    const summary: RunSummary = {
      ...base,
      training,
      ...(tuned ? { fine_tune: tuned.summary } : {}),
      test: test.section,
      ...(exported ? { export: exported } : {}),
      outputs: { output_graph: o.outputGraph, output_labels: o.outputLabels, intermediate },
    };
    await clock.time('report', () => reportRun(o, summary, labels, log));
    return await finish(o, { summary, misclassified: test.misclassified });
  } finally {
    head.dispose();
  }
}

/** Refuses what cannot be done (fine-tuning, a TensorFlow export) before any time goes into bottlenecks. */
function refuseUnsupportedRequests(extractor: FeatureExtractor, o: RetrainOptions): void {
  if (o.fineTuneLayers > 0) fineTunableLayers(extractor, o.fineTuneLayers);
  checkTensorFlowExport(extractor.info, o);
  checkOnnxExport(extractor, o);
}

/** Every class needs a training image; images whose bottleneck failed are already left out. */
function usableSets(lists: ImageLists, sets: LabeledSets): LabeledSets {
  const missing = lists.classes.filter((_, k) => !sets.training.y.includes(k)).map((c) => `"${c.label}"`);
  if (missing.length > 0) {
    throw new RetrainError(`no usable training images for class ${missing.join(', ')}: add images or lower --testing_percentage/--validation_percentage`);
  }
  return sets;
}

/** report.html and its CSVs, beside --output_graph unless --report_dir says otherwise. */
async function reportRun(o: RetrainOptions, summary: RunSummary, labels: string[], log: Logger): Promise<void> {
  const dir = o.reportDir ?? path.dirname(path.resolve(o.outputGraph));
  const report = await writeReport(dir, { summary, labels, flags: describeFlags(RETRAIN_FLAGS, o) });
  log.info(`Wrote the report to ${report.html}`);
}

/** --summary_json, written last so that it records every step's time. */
async function finish(o: RetrainOptions, result: RetrainResult): Promise<RetrainResult> {
  if (o.summaryJson) await writeSummary(o.summaryJson, result.summary);
  return result;
}
