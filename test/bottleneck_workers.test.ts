import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { initBackend } from '../src/backend.js';
import { cacheBottlenecks } from '../src/bottleneck/index.js';
import { createImageLists, type ImageLists } from '../src/dataset/index.js';
import { RetrainError } from '../src/errors.js';
import { MemoryLogger, silentLogger } from '../src/log.js';
import { loadFeatureExtractor, type FeatureExtractor } from '../src/module/index.js';
import { makeGraphModel, makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';

let root: string;
let lists: ImageLists;
const split = { testingPercentage: 10, validationPercentage: 10 };

before(async () => {
  root = tempDir();
  await makeImageDir(path.join(root, 'images'), { perClass: 14 });
  lists = await createImageLists(path.join(root, 'images'), split, silentLogger);
});

async function both(extractor: FeatureExtractor, name: string): Promise<void> {
  const inProcess = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(root, `${name}-0`), batchSize: 5, numWorkers: 0, log: silentLogger });
  const log = new MemoryLogger();
  const pooled = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(root, `${name}-2`), batchSize: 5, numWorkers: 2, log });
  assert.equal(pooled.workers, 2);
  assert.ok(log.lines.some((l) => /2 worker threads/.test(l)));
  // What --summary_json records: the workers run the main thread's tfjs backend.
  assert.deepEqual(pooled.engine, { name: 'cpu', workers: 2 });
  assert.deepEqual(inProcess.engine, { name: 'cpu', workers: 0 });
  assert.equal(pooled.computed, 42);
  assert.equal(inProcess.computed, 42);
  for (const [file, want] of inProcess.values) {
    const got = pooled.values.get(file);
    assert.ok(got, `no bottleneck for ${file}`);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-6, `${file}[${i}]: ${got[i]} vs ${want[i]}`);
  }
  // The workers' results were written like any other: a later run reads them all.
  const again = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(root, `${name}-2`), batchSize: 5, numWorkers: 2, log: silentLogger });
  assert.equal(again.computed, 0);
  assert.equal(again.cached, 42);
}

test('worker threads compute the same bottlenecks as the main thread (layers model)', async () => {
  await initBackend('cpu');
  const extractor = await loadFeatureExtractor({ spec: await makeLayersModel(path.join(root, 'layers')), cacheDir: '', bottleneckLayer: 'pool', log: silentLogger });
  assert.equal(extractor.kind === 'layers' && extractor.fused, true);
  await both(extractor, 'layers');
  extractor.dispose();
});

test('worker threads compute the same bottlenecks as the main thread (graph model)', async () => {
  await initBackend('cpu');
  const extractor = await loadFeatureExtractor({ spec: makeGraphModel(path.join(root, 'graph')), cacheDir: '', log: silentLogger });
  await both(extractor, 'graph');
  extractor.dispose();
});

test('an unreadable image is skipped by the pool, and fatal with --strict', async () => {
  await initBackend('cpu');
  const images = path.join(root, 'broken');
  await makeImageDir(images, { perClass: 6 });
  fs.writeFileSync(path.join(images, 'red', 'red_999.png'), 'not a png');
  const broken = await createImageLists(images, split, silentLogger);
  const extractor = await loadFeatureExtractor({ spec: makeGraphModel(path.join(root, 'graph2')), cacheDir: '', log: silentLogger });
  const r = await cacheBottlenecks(broken, extractor, { bottleneckDir: path.join(root, 'broken-bn'), batchSize: 4, numWorkers: 2, log: silentLogger });
  assert.equal(r.computed, 18);
  assert.deepEqual(r.failed.map((f) => path.basename(f.file)), ['red_999.png']);
  await assert.rejects(
    cacheBottlenecks(broken, extractor, { bottleneckDir: path.join(root, 'broken-strict'), batchSize: 4, numWorkers: 2, strict: true, log: silentLogger }),
    (err: unknown) => err instanceof RetrainError && /red_999\.png/.test(err.message),
  );
  extractor.dispose();
});

test('workers that cannot load the same module leave the work to the main thread', async () => {
  await initBackend('cpu');
  const dir = await makeLayersModel(path.join(root, 'changing'), 1);
  const extractor = await loadFeatureExtractor({ spec: dir, cacheDir: '', bottleneckLayer: 'pool', log: silentLogger });
  const want = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(root, 'changing-0'), batchSize: 5, numWorkers: 0, log: silentLogger });
  // Another model under the same path: the workers' module id no longer matches.
  await makeLayersModel(dir, 2);
  const log = new MemoryLogger();
  const got = await cacheBottlenecks(lists, extractor, { bottleneckDir: path.join(root, 'changing-2'), batchSize: 5, numWorkers: 2, log });
  assert.equal(got.workers, 0);
  assert.deepEqual(got.engine, { name: 'cpu', workers: 0 });
  assert.ok(log.lines.some((l) => /module id differs.*main thread/.test(l)), log.lines.join('\n'));
  for (const [file, values] of want.values) assert.deepEqual(got.values.get(file), values);
  extractor.dispose();
});
