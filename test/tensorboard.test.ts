import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryLogger } from '../src/log.js';
import { defaultRetrainOptions, runRetrain } from '../src/retrain.js';
import { BUCKET_LIMITS, histogram } from '../src/tensorboard/histogram.js';
import { CrcError, readEvents, type ReadEvent, type ReadHistogram } from './helpers/event_reader.js';
import { SHARED, SKIP_SHARED, makeImageDir, makeLayersModel, tempDir, useCpuBackend } from './helpers/fixtures.js';

const f32 = Math.fround;

function only(dir: string): string {
  const files = fs.readdirSync(dir);
  assert.equal(files.length, 1, `one event file in ${dir}: ${files.join(', ')}`);
  return path.join(dir, files[0]!);
}

function values(e: ReadEvent): Map<string, { simpleValue?: number; histo?: ReadHistogram }> {
  return new Map((e.summary?.value ?? []).map((v) => [v.tag, v]));
}

/** The final layer's kernel and bias as the export wrote them. */
function exportedHead(dir: string): { weights: Float32Array; biases: Float32Array } {
  const model = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const group = model.weightsManifest[0];
  const shard = fs.readFileSync(path.join(dir, group.paths[0]));
  const out: Record<string, Float32Array> = {};
  let off = 0;
  for (const w of group.weights as Array<{ name: string; shape: number[] }>) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    out[w.name] = new Float32Array(shard.buffer.slice(shard.byteOffset + off, shard.byteOffset + off + n * 4));
    off += n * 4;
  }
  return { weights: out['final_result/kernel']!, biases: out['final_result/bias']! };
}

function stats(v: Float32Array) {
  const arr = [...v];
  const mean = arr.reduce((a, b) => a + b, 0) / arr.length;
  const stddev = Math.sqrt(arr.reduce((a, b) => a + (b - mean) ** 2, 0) / arr.length);
  return { mean, stddev, min: Math.min(...arr), max: Math.max(...arr), sum: arr.reduce((a, b) => a + b, 0) };
}

test('event files read back with an independent reader: CRCs, tags, steps and values match the run', async () => {
  await useCpuBackend();
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 14 });
  const model = await makeLayersModel(path.join(root, 'model'));
  const summariesDir = path.join(root, 'logs');
  // A stale event file from an earlier run must not be mixed into this one.
  fs.mkdirSync(path.join(summariesDir, 'train'), { recursive: true });
  fs.writeFileSync(path.join(summariesDir, 'train', 'events.out.tfevents.0000000001.old'), 'stale');
  fs.writeFileSync(path.join(summariesDir, 'keep.txt'), 'not ours');
  const log = new MemoryLogger();
  const o = {
    ...defaultRetrainOptions(),
    imageDir: images,
    tfhubModule: model,
    moduleCacheDir: path.join(root, 'cache'),
    bottleneckDir: path.join(root, 'bn'),
    outputGraph: path.join(root, 'out', 'graph'),
    outputLabels: path.join(root, 'out', 'labels.txt'),
    summariesDir,
    howManyTrainingSteps: 25,
    evalStepInterval: 4,
    validationBatchSize: -1,
    backend: 'cpu' as const,
  };
  const { summary } = await runRetrain(o, log);
  assert.ok(fs.existsSync(path.join(summariesDir, 'keep.txt')), 'other files in --summaries_dir are left alone');

  const history = summary.training!.history;
  assert.deepEqual(history.map((p) => p.step), [0, 4, 8, 12, 16, 20, 24]);
  const trainFile = only(path.join(summariesDir, 'train'));
  const valFile = only(path.join(summariesDir, 'validation'));
  const host = os.hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const f of [trainFile, valFile]) assert.match(path.basename(f), new RegExp(`^events\\.out\\.tfevents\\.\\d{10}\\.${host}$`));

  const head = exportedHead(o.outputGraph);
  for (const [file, which] of [[trainFile, 'train'], [valFile, 'validation']] as const) {
    const events = readEvents(file);
    assert.equal(events[0]!.fileVersion, 'brain.Event:2');
    const summaries = events.slice(1);
    assert.deepEqual(summaries.map((e) => e.step), history.map((p) => p.step), `${which} steps`);
    for (const [i, e] of summaries.entries()) {
      const v = values(e);
      assert.deepEqual(
        [...v.keys()].sort(),
        [
          'accuracy_1',
          'cross_entropy_1',
          ...['weights', 'biases'].flatMap((s) => ['mean', 'stddev_1', 'max', 'min', 'histogram'].map((n) => `final_retrain_ops/${s}/summaries/${n}`)),
        ].sort(),
      );
      const p = history[i]!;
      const acc = which === 'train' ? p.trainAccuracy : p.validationAccuracy;
      const ce = which === 'train' ? p.crossEntropy : p.validationCrossEntropy;
      assert.equal(v.get('accuracy_1')!.simpleValue, f32(acc), `${which} accuracy at step ${p.step}`);
      assert.equal(v.get('cross_entropy_1')!.simpleValue, f32(ce), `${which} cross entropy at step ${p.step}`);
      // The logged lines carry the same numbers, rounded.
      const logged = which === 'train' ? `Step ${p.step}: Train accuracy = ${(acc * 100).toFixed(1)}%` : `Step ${p.step}: Validation accuracy = ${(acc * 100).toFixed(1)}% (N=${p.validationN})`;
      assert.ok(log.lines.includes(`INFO: ${logged}`), logged);
      const h = v.get('final_retrain_ops/weights/summaries/histogram')!.histo!;
      assert.equal(h.num, head.weights.length);
      assert.equal(h.bucket.reduce((a, b) => a + b, 0), head.weights.length);
      assert.equal(h.bucketLimit.length, h.bucket.length);
      for (const limit of h.bucketLimit) assert.ok(BUCKET_LIMITS.includes(limit), `bucket limit ${limit} is one of TensorFlow's`);
    }
    // The last summary describes the head that was exported.
    const last = values(summaries[summaries.length - 1]!);
    for (const [scope, arr] of [['weights', head.weights], ['biases', head.biases]] as const) {
      const s = stats(arr);
      const g = (n: string) => last.get(`final_retrain_ops/${scope}/summaries/${n}`)!;
      assert.equal(g('min').simpleValue, f32(s.min));
      assert.equal(g('max').simpleValue, f32(s.max));
      assert.ok(Math.abs(g('mean').simpleValue! - s.mean) <= 1e-6 * Math.max(1e-3, Math.abs(s.mean)) + 1e-9, `${scope} mean`);
      assert.ok(Math.abs(g('stddev_1').simpleValue! - s.stddev) <= 1e-5 * s.stddev + 1e-9, `${scope} stddev`);
      const h = g('histogram').histo!;
      assert.equal(h.min, s.min);
      assert.equal(h.max, s.max);
      assert.ok(Math.abs(h.sum - s.sum) < 1e-9);
      // Each value lies in its bucket: bucket i holds [limit(i-1), limit(i)).
      const counts = h.bucketLimit.map((lim, k) => [...arr].filter((x) => x < lim && (k === 0 || x >= h.bucketLimit[k - 1]!)).length);
      assert.deepEqual(counts, h.bucket);
    }
  }

  // A flipped byte is caught by the CRC.
  const bad = Buffer.from(fs.readFileSync(trainFile));
  bad[bad.length - 10]! ^= 0xff;
  const badFile = path.join(root, 'bad.tfevents');
  fs.writeFileSync(badFile, bad);
  assert.throws(() => readEvents(badFile), CrcError);
});

test("the reader parses retrain.py's own event file, and its histogram edges are ours", { skip: SKIP_SHARED }, () => {
  const dir = path.join(SHARED, 'reference', 'retrain_py_flowers_mobilenet_v1_050', 'training_summaries', 'validation');
  const events = readEvents(path.join(dir, fs.readdirSync(dir)[0]!));
  assert.equal(events[0]!.fileVersion, 'brain.Event:2');
  const tags = new Set(events.flatMap((e) => (e.summary?.value ?? []).map((v) => v.tag)));
  for (const t of ['accuracy_1', 'cross_entropy_1', 'final_training_ops/weights/summaries/stddev_1', 'final_training_ops/biases/summaries/histogram']) {
    assert.ok(tags.has(t), t);
  }
  let checked = 0;
  for (const e of events) {
    for (const v of e.summary?.value ?? []) {
      if (!v.histo) continue;
      for (const limit of v.histo.bucketLimit) assert.ok(BUCKET_LIMITS.includes(limit), `retrain.py bucket limit ${limit} is one of ours`);
      checked++;
    }
  }
  assert.ok(checked > 1000, `checked ${checked} histograms`);
});

test('histogram: every value lands in the bucket TensorFlow puts it in, edges included', () => {
  const xs = [0, -0, 1e-13, -1e-13, 1e25, -1e25, 3.5, -3.5, 1e-3, -2e-6];
  // Exact edges and their neighbours: bucket i holds [limit(i-1), limit(i)).
  for (const k of [1, 2, 100, 700, 800, 1500]) xs.push(BUCKET_LIMITS[k]!, -BUCKET_LIMITS[k]!, BUCKET_LIMITS[k]! * (1 + 1e-15));
  let seed = 1;
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 16807) % 2147483647;
    xs.push((seed / 2147483647 - 0.5) * 10 ** ((i % 30) - 15));
  }
  const h = histogram(xs);
  assert.equal(h.num, xs.length);
  const counts = h.bucketLimit.map((lim, k) => xs.filter((x) => x < lim && (k === 0 || x >= h.bucketLimit[k - 1]!)).length);
  assert.deepEqual(counts, h.bucket);
  assert.ok(h.bucket.filter((c) => c > 0).length > 100);
});
