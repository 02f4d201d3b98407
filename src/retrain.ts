/**
 * One retrain run, as retrain.py's `main`: a sequence of named steps, each a
 * function in the stage that owns it (dataset → module → bottleneck → train →
 * export, then summary and report). The run summary is assembled from what the
 * steps return. This file never prints and never exits.
 */
import path from 'node:path';
import { initBackend } from './backend.js';
import { requireOnnxRuntime } from './module/onnx/runtime.js';
import { cacheAllBottlenecks } from './bottleneck/index.js';
import { distortedTraining } from './bottleneck/distorted.js';
import { labeledSets, type LabeledSets } from './bottleneck/sets.js';
import { findImages, splitSection, type ImageLists } from './dataset/index.js';
import { RetrainError, UsageError } from './errors.js';
import { exportIntermediate, exportRetrained } from './export/stage.js';
import { checkOutputPaths } from './export/outputs.js';
import { checkOnnxExport, isOnnxPath } from './export/onnx.js';
import { checkTfliteExport, isTflitePath } from './export/tflite.js';
import { checkTensorFlowExport } from './export/tf.js';
import { fineTuneActivations, fineTuneStage, type FineTunePrep } from './finetune/stage.js';
import { RETRAIN_FLAGS, validateRetrainOptions, type RetrainOptions } from './flags/retrain.js';
import { describeFlags } from './flags/table.js';
import type { Logger } from './log.js';
import { loadModule, moduleSection, type FeatureExtractor } from './module/index.js';
import { writeCheckReport, writeReport } from './report/index.js';
import { checkPhotos, type DatasetCheckSummary } from './check/index.js';
import { emptySummary, withFailureSummary, writeSummary, type RunSummary } from './summary/index.js';
import { TrainingSummaries } from './tensorboard/index.js';
import { finalTest, trainNewHead, type Misclassified } from './train/stage.js';
import { throwIfInterrupted } from './util/abort.js';

export { DEFAULT_DISTORTION_VARIANTS, defaultRetrainOptions, type RetrainOptions } from './flags/retrain.js';

export interface RetrainResult {
  summary: RunSummary;
  /** Test images the head got wrong (logged with --print_misclassified_test_images). */
  misclassified: Misclassified[];
}

/**
 * What the run has done so far: wall time per step, and each step's summary section
 * as it completes, so that a run that fails midway still says what it did.
 */
class RunRecord {
  readonly timings: Record<string, number> = {};
  private parts: Partial<RunSummary> = {};
  async time<T>(step: string, fn: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.timings[step] = Math.round(performance.now() - t0) / 1000;
    }
  }
  note(parts: Partial<RunSummary>): void {
    Object.assign(this.parts, parts);
  }
  sofar(): RunSummary {
    return { ...emptySummary(), ...this.parts, timings_s: this.timings };
  }
}

export async function runRetrain(options: RetrainOptions, log: Logger): Promise<RetrainResult> {
  const o = validateRetrainOptions(options);
  // Paths before anything else: a refused path writes nothing, not even a summary.
  checkOutputPaths(o);
  const run = new RunRecord();
  return withFailureSummary(o.summaryJson, () => run.sofar(), log, () => retrainSteps(o, log, run));
}

async function retrainSteps(o: RetrainOptions, log: Logger, run: RunRecord): Promise<RetrainResult> {
  const backend = await run.time('backend', () => initBackend(o.backend));
  await requireOnnxRuntime(o.backend);
  log.info(`Using backend ${backend.name} (${backend.package})`);
  const lists = await run.time('dataset', () => findImages(o, log));
  run.note({ backend: backend.name, ...splitSection(lists) });
  const extractor = await run.time('module', () => loadModule(o, log));
  run.note({ module: moduleSection(extractor.info) });
  let prep: FineTunePrep | undefined;
  try {
    await refuseUnsupportedRequests(extractor, o);
    // Fine-tuning's activations first: the missing bottlenecks then come from them through the top, so the bottom runs once
    // per image; and an .onnx module's graph is read here, so an op the reader lacks is named before any image is read.
    if (o.fineTuneLayers > 0 && !o.bottlenecksOnly && !o.checkDataset) {
      prep = await run.time('fine_tune_activations', () => fineTuneActivations(extractor, lists, o, log));
    }
    const { bottlenecks, section } = await run.time('bottlenecks', () => cacheAllBottlenecks(lists, extractor, o, log, prep?.derive));
    run.note({ bottlenecks: section });
    if (o.bottlenecksOnly) return await finish(o, { summary: run.sofar(), misclassified: [] });
    const check = o.skipDatasetCheck ? undefined : await run.time('dataset_check', () => checkPhotos(lists, bottlenecks, o, path.join(reportDirOf(o), 'dataset_check.csv'), log));
    if (check) run.note({ dataset_check: check });
    if (o.checkDataset) return await finish(o, { summary: await reportCheck(o, run.sofar(), check!, log), misclassified: [] });
    const sets = usableSets(lists, labeledSets(lists, bottlenecks));
    return await trainAndExport(o, log, run, extractor, lists, sets, prep);
  } finally {
    prep?.dispose();
    extractor.dispose();
  }
}

/** The steps after the bottlenecks: train, fine-tune, test, export, report. */
async function trainAndExport(
  o: RetrainOptions,
  log: Logger,
  run: RunRecord,
  extractor: FeatureExtractor,
  lists: ImageLists,
  sets: LabeledSets,
  prep: FineTunePrep | undefined,
): Promise<RetrainResult> {
  const labels = lists.classes.map((c) => c.label);
  const size = extractor.info.bottleneckSize;
  const distorted = await run.time('distorted_bottlenecks', () => distortedTraining(lists, extractor, sets.training, o, log));
  const intermediate: string[] = [];
  const tb = new TrainingSummaries(o.summariesDir, log);
  const { head, section: training } = await run.time('training', () =>
    trainNewHead({ training: distorted.training, validation: sets.validation }, labels.length, size, o, {
      trainBottlenecks: distorted.trainBottlenecks,
      onEval: (point, h) => tb.onEval(point, h),
      onIntermediate: async (step, h) => void intermediate.push(await exportIntermediate(extractor, await h.values(), labels, o, step)),
    }, log).finally(() => tb.close()),
  );
  run.note({ training });
  try {
    const tuned = prep
      ? await run.time('fine_tuning', () => fineTuneStage(extractor, head, lists, prep, o, log))
      : undefined;
    if (tuned) run.note({ fine_tune: tuned.summary });
    const testing = tuned?.testing ?? sets.testing;
    // The fine-tuned module carries the new weights to every export.
    const exportedModule = tuned?.extractor ?? extractor;
    const test = await run.time('testing', () => finalTest(head, testing, labels, o, log));
    run.note({ test: test.section });
    throwIfInterrupted(o.signal, 'interrupted before export: the model was not exported; the bottleneck cache is kept');
    const values = await head.values();
    const exported = await run.time('export', () => exportRetrained(exportedModule, values, labels, testing, o, log, sets.training));
    if (exported) run.note({ export: exported });
    run.note({ outputs: { output_graph: o.outputGraph, output_labels: o.outputLabels, intermediate } });
    // A signal during the export lets it finish (it is one atomic unit), then stops here.
    throwIfInterrupted(o.signal, `interrupted during the export: the export was finished first, so ${o.outputGraph} holds the new model; the report was not written`);
    const summary = run.sofar();
    await run.time('report', () => reportRun(o, summary, labels, log));
    return await finish(o, { summary, misclassified: test.misclassified });
  } finally {
    head.dispose();
  }
}

/** Refuses what cannot be done (fine-tuning, a TensorFlow export) before any time goes into bottlenecks. */
async function refuseUnsupportedRequests(extractor: FeatureExtractor, o: RetrainOptions): Promise<void> {
  if (extractor.kind === 'onnx') refuseForOnnxModule(extractor.info.spec, o);
  checkTensorFlowExport(extractor.info, o);
  checkOnnxExport(extractor, o);
  if (!o.bottlenecksOnly && !o.checkDataset) await checkTfliteExport(extractor, o);
}

/** An .onnx module runs on onnxruntime: ONNX and TFLite (read by src/graph/from_onnx.ts) are the formats it can be exported to. */
function refuseForOnnxModule(spec: string, o: RetrainOptions): void {
  if (o.bottlenecksOnly || o.checkDataset) return;
  if (o.savedModelDir) throw new UsageError(`--saved_model_dir ${o.savedModelDir}: with the .onnx module ${spec} the model is exported as ONNX or TFLite only; drop --saved_model_dir`);
  if (!isOnnxPath(o.outputGraph) && !isTflitePath(o.outputGraph)) {
    throw new UsageError(`--output_graph ${o.outputGraph}: with the .onnx module ${spec} the model is exported as ONNX or TFLite only; give a .onnx or .tflite file, e.g. --output_graph /tmp/output_graph.onnx`);
  }
}

/** Every class needs a training image; images whose bottleneck failed are already left out. */
function usableSets(lists: ImageLists, sets: LabeledSets): LabeledSets {
  const missing = lists.classes.filter((_, k) => !sets.training.y.includes(k)).map((c) => `"${c.label}"`);
  if (missing.length > 0) {
    throw new RetrainError(`no usable training images for class ${missing.join(', ')}: add images or lower --testing_percentage/--validation_percentage`);
  }
  return sets;
}

/** Reports go beside --output_graph unless --report_dir says otherwise. */
const reportDirOf = (o: RetrainOptions): string => o.reportDir ?? path.dirname(path.resolve(o.outputGraph));

/** report.html and its CSVs. */
async function reportRun(o: RetrainOptions, summary: RunSummary, labels: string[], log: Logger): Promise<void> {
  const report = await writeReport(reportDirOf(o), { summary, labels, flags: describeFlags(RETRAIN_FLAGS, o) });
  log.info(`Wrote the report to ${report.html}`);
}

/** --check_dataset stops after the check: dataset_check.html and its CSV. */
async function reportCheck(o: RetrainOptions, summary: RunSummary, check: DatasetCheckSummary, log: Logger): Promise<RunSummary> {
  log.info(`Wrote the dataset check to ${await writeCheckReport(reportDirOf(o), check)} and ${check.csv}`);
  return summary;
}

/** --summary_json, written last so that it records every step's time. */
async function finish(o: RetrainOptions, result: RetrainResult): Promise<RetrainResult> {
  if (o.summaryJson) await writeSummary(o.summaryJson, result.summary);
  return result;
}
