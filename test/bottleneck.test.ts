import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { bottleneckPath, cacheBottlenecks } from '../src/bottleneck/index.js';
import { decodeBottleneck, encodeBottleneck, HEADER_BYTES } from '../src/bottleneck/format.js';
import { allImages, createImageLists } from '../src/dataset/index.js';
import { loadModuleInput } from '../src/image/index.js';
import { MemoryLogger } from '../src/log.js';
import { loadFeatureExtractor } from '../src/module/index.js';
import { makeImageDir, makeLayersModel, makeGraphModel, tempDir, useCpuBackend } from './helpers/fixtures.js';

const ID = 'ab'.repeat(32);
const STAMP = { size: 1234, mtimeMs: 1700000000123.5, contentHash: new Uint8Array(32).fill(7) };

test('format: round trip, and every kind of mismatch is refused with a reason', () => {
  const values = Float32Array.from([0.5, -1.25, 3e-8, 1000]);
  const bytes = encodeBottleneck(values, ID, STAMP);
  assert.equal(bytes.byteLength, HEADER_BYTES + 16);
  const ok = decodeBottleneck(bytes, ID, 4, STAMP);
  assert.ok(ok.ok);
  assert.deepEqual(Array.from(ok.values), Array.from(values));
  // Reading at an odd offset inside a larger buffer still works.
  const shifted = new Uint8Array(bytes.byteLength + 1);
  shifted.set(bytes, 1);
  assert.ok(decodeBottleneck(shifted.subarray(1), ID, 4, STAMP).ok);

  const reasons = [
    decodeBottleneck(bytes.subarray(0, 20), ID, 4, STAMP),
    decodeBottleneck(bytes.subarray(0, bytes.length - 4), ID, 4, STAMP),
    decodeBottleneck(bytes, ID, 5, STAMP),
    decodeBottleneck(bytes, 'cd'.repeat(32), 4, STAMP),
    decodeBottleneck(bytes, ID, 4, { ...STAMP, size: 1235 }),
    decodeBottleneck(bytes, ID, 4, { ...STAMP, mtimeMs: 1 }),
    decodeBottleneck(bytes, ID, 4, { ...STAMP, contentHash: new Uint8Array(32).fill(8) }),
    decodeBottleneck(new TextEncoder().encode('0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6,1.7,1.8,1.9'), ID, 4, STAMP),
  ].map((d) => (d.ok ? 'ok' : d.reason));
  assert.deepEqual(reasons, [
    'shorter than its header',
    'wrong length (truncated?)',
    'holds 4 values, the module gives 5',
    'made by another module',
    'the image changed since',
    'the image changed since',
    "made from other image content (the image was rewritten, or another image's cache file put here)",
    'not a bottleneck file',
  ]);
  const nan = encodeBottleneck(Float32Array.from([NaN, 1, 2, 3]), ID, STAMP);
  assert.equal((decodeBottleneck(nan, ID, 4, STAMP) as { reason: string }).reason, 'holds NaN or infinite values');
});

test('cacheBottlenecks: computes each image once, reuses the cache, recomputes what is stale', async () => {
  await useCpuBackend();
  const images = await makeImageDir(tempDir(), { classes: ['red', 'green'], perClass: 7 });
  const cache = tempDir();
  const lists = await createImageLists(images, { testingPercentage: 20, validationPercentage: 20 }, new MemoryLogger());
  const ex = await loadFeatureExtractor({ spec: await makeLayersModel(tempDir()), cacheDir: '', log: new MemoryLogger() });

  const log1 = new MemoryLogger();
  const first = await cacheBottlenecks(lists, ex, { bottleneckDir: cache, batchSize: 4, log: log1 });
  assert.deepEqual([first.computed, first.cached, first.failed.length], [14, 0, 0]);
  const refs = allImages(lists);
  for (const ref of refs) {
    const file = bottleneckPath(cache, lists.classes[ref.classIndex]!.dir, ref.name, ex.info.name);
    assert.ok(fs.existsSync(file), file);
    // The cached vector is the module's output for that image, computed alone.
    const input = await loadModuleInput(ref.file, ex.inputSpec);
    const alone = tf.tidy(() => ex.extract(tf.tensor4d(input, [1, 32, 32, 3])).dataSync());
    const got = first.values.get(ref.file)!;
    assert.ok(got.every((v, i) => Math.abs(v - alone[i]!) < 1e-5));
  }
  // Nothing but the cache files is left in the cache folder (no temporaries).
  for (const cls of ['red', 'green']) {
    for (const f of fs.readdirSync(path.join(cache, cls))) assert.match(f, /\.png_.*\.bin$/);
  }

  const second = await cacheBottlenecks(lists, ex, { bottleneckDir: cache, batchSize: 4, log: new MemoryLogger() });
  assert.deepEqual([second.computed, second.cached], [0, 14]);
  for (const ref of refs) assert.deepEqual(second.values.get(ref.file), first.values.get(ref.file));

  // A truncated cache file and a changed image are both recomputed.
  const victim = refs[0]!;
  const victimCache = bottleneckPath(cache, lists.classes[victim.classIndex]!.dir, victim.name, ex.info.name);
  fs.truncateSync(victimCache, 30);
  const touched = refs[1]!;
  const t = new Date(Date.now() + 5000);
  fs.utimesSync(touched.file, t, t);
  const log3 = new MemoryLogger();
  const third = await cacheBottlenecks(lists, ex, { bottleneckDir: cache, batchSize: 4, log: log3 });
  assert.deepEqual([third.computed, third.cached], [2, 12]);
  assert.ok(log3.lines.some((l) => l.includes('shorter than its header')), log3.lines.join('\n'));
  assert.ok(log3.lines.some((l) => l.includes('the image changed since')), log3.lines.join('\n'));

  // Another module never reuses these files.
  const other = await loadFeatureExtractor({ spec: makeGraphModel(tempDir()), cacheDir: '', log: new MemoryLogger() });
  const fourth = await cacheBottlenecks(lists, other, { bottleneckDir: cache, batchSize: 4, log: new MemoryLogger() });
  assert.deepEqual([fourth.computed, fourth.cached], [14, 0]);
});

test('cacheBottlenecks: an undecodable image is skipped and reported, or fatal with strict', async () => {
  await useCpuBackend();
  const images = await makeImageDir(tempDir(), { classes: ['a', 'b'], perClass: 3 });
  fs.writeFileSync(path.join(images, 'a', 'broken.png'), 'not a png');
  const lists = await createImageLists(images, { testingPercentage: 0, validationPercentage: 0 }, new MemoryLogger());
  const ex = await loadFeatureExtractor({ spec: await makeLayersModel(tempDir()), cacheDir: '', log: new MemoryLogger() });
  const log = new MemoryLogger();
  const r = await cacheBottlenecks(lists, ex, { bottleneckDir: tempDir(), log });
  assert.equal(r.computed, 6);
  assert.equal(r.failed.length, 1);
  assert.equal(r.failed[0]!.file, path.join(images, 'a', 'broken.png'));
  assert.ok(log.lines.some((l) => l.startsWith('WARNING') && l.includes('broken.png')));
  await assert.rejects(cacheBottlenecks(lists, ex, { bottleneckDir: tempDir(), log, strict: true }), /broken\.png.*--strict/);
});
