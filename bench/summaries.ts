/**
 * What TensorBoard summaries and the report add to a run. Prints figures; run with
 * `node dist/bench/summaries.js` after building.
 *   - onEval: one evaluation's summaries (train + validation events) for heads of
 *     retrain.py's sizes, in ms per evaluation (retrain.py's default is 401 of them);
 *   - report: report.html with N misclassified thumbnails, from ../shared's photos when
 *     present, else generated images.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { silentLogger } from '../src/log.js';
import { writeReport } from '../src/report/index.js';
import type { RunSummary } from '../src/summary/index.js';
import { TrainingSummaries } from '../src/tensorboard/index.js';
import { Head } from '../src/train/index.js';
import { HAVE_SHARED, SHARED, makeImageDir, tempDir, useCpuBackend } from '../test/helpers/fixtures.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function benchOnEval(size: number, classes: number, evals: number): Promise<void> {
  const dir = tempDir('bench-tb-');
  const tb = new TrainingSummaries(dir, silentLogger);
  const head = new Head(size, classes, 1);
  const times: number[] = [];
  for (let i = 0; i < evals; i++) {
    const t0 = performance.now();
    await tb.onEval({ step: i * 10, trainAccuracy: 0.5, crossEntropy: 1, validationAccuracy: 0.5, validationCrossEntropy: 1, validationN: 100 }, head);
    times.push(performance.now() - t0);
  }
  tb.close();
  const bytes = fs.statSync(tb.train.file).size;
  head.dispose();
  console.log(`onEval ${size}x${classes}: median ${median(times).toFixed(2)} ms/evaluation over ${evals}; train event file ${(bytes / evals / 1024).toFixed(1)} KiB/evaluation`);
}

async function benchReport(n: number): Promise<void> {
  let files: string[];
  if (HAVE_SHARED) {
    const root = path.join(SHARED, 'datasets', 'flowers-dev');
    files = fs.readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory()).flatMap((d) => fs.readdirSync(path.join(root, d.name)).map((f) => path.join(root, d.name, f)));
  } else {
    const root = await makeImageDir(tempDir('bench-img-'), { perClass: Math.ceil(n / 3), width: 320, height: 240, format: 'jpg' });
    files = fs.readdirSync(root).flatMap((d) => fs.readdirSync(path.join(root, d)).map((f) => path.join(root, d, f)));
  }
  files = files.filter((f) => /\.jpe?g$/i.test(f)).slice(0, n);
  const labels = ['a', 'b', 'c'];
  const summary: RunSummary = {
    module: null,
    backend: tf.getBackend(),
    classes: { a: 'a', b: 'b', c: 'c' },
    split: { training: {}, validation: {}, testing: {} },
    bottlenecks: { computed: 0, cached: 0, failed: [] },
    timings_s: {},
    training: { steps: 4000, final_train_accuracy: 1, final_validation_accuracy: 1, cross_entropy: 0.1, history: Array.from({ length: 401 }, (_, i) => ({ step: i * 10, trainAccuracy: 0.9, crossEntropy: 0.3, validationAccuracy: 0.8, validationCrossEntropy: 0.4, validationN: 100 })) },
    test: { accuracy: 0, n: files.length, predictions: files.map((file, i) => ({ file, true_label: labels[i % 3]!, predicted_label: labels[(i + 1) % 3]!, score: 0.5 })) },
  };
  const dir = tempDir('bench-report-');
  const t0 = performance.now();
  const out = await writeReport(dir, { summary, labels, flags: [] });
  const ms = performance.now() - t0;
  console.log(`report with ${files.length} misclassified thumbnails (${HAVE_SHARED ? 'flowers-dev photos' : 'generated 320x240 JPEGs'}): ${ms.toFixed(0)} ms, report.html ${(fs.statSync(out.html).size / 1024).toFixed(0)} KiB`);
}

await useCpuBackend();
console.log(`backend ${tf.getBackend()}`);
await benchOnEval(1280, 5, 100);
await benchOnEval(1024, 100, 50);
await benchReport(60);
await benchReport(200);
