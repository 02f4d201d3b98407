import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { RetrainError } from '../src/errors.js';
import { MemoryLogger } from '../src/log.js';
import { cacheEntryDir, downloadModule, isModuleUrl, modelJsonUrl } from '../src/module/download.js';
import { folderSaveHandler, readModelFiles } from '../src/module/io.js';

const ROOT = '/google/tfjs-model';
const SHARDS = ['group1-shard1of2.bin', 'group1-shard2of2.bin'];

let tmpRoot: string;
let server: http.Server;
let base: string;
let original: tf.LayersModel;
let modelJsonText: string;
let shards: Map<string, Buffer>;
/** Every request as "<route>/<file>", with whether ?tfjs-format=file arrived. */
let requests: { file: string; tfjsFormat: boolean }[] = [];
let cutShards = false;

/** Routes under /google/tfjs-model/<route>/1/; each misbehaves in one way. */
function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  const u = new URL(req.url ?? '/', base);
  const m = /^\/google\/tfjs-model\/([a-z]+)\/1\/(.+)$/.exec(u.pathname);
  if (!m) return void res.writeHead(404).end();
  const [, route, file] = m as unknown as [string, string, string];
  requests.push({ file: `${route}/${file}`, tfjsFormat: u.searchParams.get('tfjs-format') === 'file' });
  if (u.searchParams.get('tfjs-format') !== 'file') return void res.writeHead(400).end();

  if (route === 'slow') return; // never answers
  if (route === 'missing') return void res.writeHead(404, 'Not Found').end();
  if (route === 'redirect') {
    return void res.writeHead(302, { location: `${ROOT}/fixture/1/${file}${u.search}` }).end();
  }
  if (route === 'offsite') return void res.writeHead(301, { location: `http://example.com/${file}` }).end();
  if (file === 'model.json') {
    const text = route === 'evil' ? modelJsonText.replace(SHARDS[1]!, `../${SHARDS[1]}`) : modelJsonText;
    return void res.writeHead(200, { 'content-type': 'application/json' }).end(text);
  }
  const body = shards.get(file);
  if (!body) return void res.writeHead(404, 'Not Found').end();
  if (route === 'flaky' && cutShards && file === SHARDS[1]) {
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, body.length / 2), () => res.socket?.destroy());
    return;
  }
  if (route === 'big' && file === SHARDS[1]) {
    // Chunked, so only the streaming byte count can notice.
    res.writeHead(200);
    res.write(body);
    return void res.end(Buffer.alloc(1024));
  }
  res.writeHead(200, { 'content-length': body.length }).end(body);
}

before(async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'download-test-'));

  // A tiny layers model, its one weight file split in two to exercise multi-shard groups.
  original = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, activation: 'relu' })] });
  const saved = path.join(tmpRoot, 'saved');
  await original.save(folderSaveHandler(saved));
  const json = JSON.parse(fs.readFileSync(path.join(saved, 'model.json'), 'utf8'));
  const data = fs.readFileSync(path.join(saved, json.weightsManifest[0].paths[0]));
  json.weightsManifest[0].paths = SHARDS;
  modelJsonText = JSON.stringify(json);
  shards = new Map([
    [SHARDS[0]!, data.subarray(0, 16)],
    [SHARDS[1]!, data.subarray(16)],
  ]);
  assert.equal(data.length, 32);

  server = http.createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

beforeEach(() => {
  requests = [];
  cutShards = false;
});

function moduleUrl(route: string): string {
  return `${base}${ROOT}/${route}/1`;
}

function freshCache(): string {
  return fs.mkdtempSync(path.join(tmpRoot, 'cache-'));
}

async function rejectsWith(p: Promise<unknown>, pattern: RegExp): Promise<RetrainError> {
  const err = await p.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RetrainError, `not a RetrainError: ${String(err)}`);
  assert.match(err.message, pattern);
  assert.doesNotMatch(err.message, /\n/);
  return err;
}

test('downloads once, loads like the original, then uses the cache with no requests', async () => {
  const cacheDir = freshCache();
  const log = new MemoryLogger();
  const url = moduleUrl('fixture');
  const jsonPath = await downloadModule(url, { cacheDir, log });

  const entry = cacheEntryDir(cacheDir, url);
  assert.equal(jsonPath, path.join(entry, 'model.json'));
  assert.deepEqual(fs.readdirSync(cacheDir), [path.basename(entry)]);
  assert.deepEqual(fs.readdirSync(entry).sort(), [...SHARDS, 'model.json', 'retrain-download.json'].sort());
  const record = JSON.parse(fs.readFileSync(path.join(entry, 'retrain-download.json'), 'utf8'));
  assert.equal(record.url, url);
  assert.equal(record.modelJsonUrl, `${url}/model.json?tfjs-format=file`);
  assert.deepEqual(log.lines, [`INFO: Downloading module ${url} to ${entry}`]);
  assert.deepEqual(
    requests.map((r) => r.file),
    ['fixture/model.json', ...SHARDS.map((s) => `fixture/${s}`)],
  );
  assert.ok(requests.every((r) => r.tfjsFormat));

  const loaded = await tf.loadLayersModel(tf.io.fromMemory(readModelFiles(jsonPath).artifacts));
  const x = tf.tensor2d([
    [1, -2, 3],
    [0.5, 0.25, -1],
  ]);
  assert.deepEqual(await (loaded.predict(x) as tf.Tensor).array(), await (original.predict(x) as tf.Tensor).array());

  requests = [];
  const log2 = new MemoryLogger();
  assert.equal(await downloadModule(`${url}/`, { cacheDir, log: log2 }), jsonPath);
  assert.equal(requests.length, 0);
  assert.deepEqual(log2.lines, [`INFO: Using cached module ${url}/ from ${entry}`]);
});

test('follows a redirect to another path', async () => {
  const cacheDir = freshCache();
  const jsonPath = await downloadModule(moduleUrl('redirect'), { cacheDir, log: new MemoryLogger() });
  readModelFiles(jsonPath);
  assert.deepEqual(
    requests.map((r) => r.file),
    ['redirect/model.json', 'fixture/model.json', ...SHARDS.flatMap((s) => [`redirect/${s}`, `fixture/${s}`])],
  );
});

test('a weight cut off midway leaves nothing behind; a later call succeeds', async () => {
  const cacheDir = freshCache();
  const url = moduleUrl('flaky');
  cutShards = true;
  await rejectsWith(downloadModule(url, { cacheDir, log: new MemoryLogger() }), new RegExp(`cannot download ${url}/${SHARDS[1]}.*connection broke`));
  assert.deepEqual(fs.readdirSync(cacheDir), []);

  cutShards = false;
  requests = [];
  const jsonPath = await downloadModule(url, { cacheDir, log: new MemoryLogger() });
  readModelFiles(jsonPath);
  assert.equal(requests.length, 3);
  assert.deepEqual(fs.readdirSync(cacheDir), [path.basename(cacheEntryDir(cacheDir, url))]);
});

test('a weight larger than its manifest says is cut off and rejected', async () => {
  const cacheDir = freshCache();
  await rejectsWith(
    downloadModule(moduleUrl('big'), { cacheDir, log: new MemoryLogger() }),
    new RegExp(`cannot download ${moduleUrl('big')}/${SHARDS[1]}.*more than the 16 bytes expected`),
  );
  assert.deepEqual(fs.readdirSync(cacheDir), []);
});

test('HTTP errors and timeouts become one-line RetrainErrors', async () => {
  const cacheDir = freshCache();
  const missing = moduleUrl('missing');
  await rejectsWith(
    downloadModule(missing, { cacheDir, log: new MemoryLogger() }),
    new RegExp(`cannot download ${missing}/model\\.json\\?tfjs-format=file: HTTP 404 Not Found; check the URL, or pass a local model folder with --tfhub_module`),
  );
  const slow = moduleUrl('slow');
  const started = Date.now();
  await rejectsWith(downloadModule(slow, { cacheDir, timeoutMs: 300, log: new MemoryLogger() }), /slow\/1\/model\.json.*timed out after 0\.3 s/);
  assert.ok(Date.now() - started < 5000);
  assert.deepEqual(fs.readdirSync(cacheDir), []);
});

test('refuses plain http to other hosts and manifest paths that leave the folder', async () => {
  const cacheDir = path.join(tmpRoot, 'never-created');
  const log = new MemoryLogger();
  const refused = await rejectsWith(downloadModule('http://example.com/x', { cacheDir, log }), /^--tfhub_module http:\/\/example\.com\/x: use an https:\/\/ URL/);
  assert.equal(refused.exitCode, 2, "the user's own http URL is a usage error");
  assert.equal(fs.existsSync(cacheDir), false);
  assert.deepEqual(log.lines, []);

  const offsite = moduleUrl('offsite');
  await rejectsWith(
    downloadModule(offsite, { cacheDir: freshCache(), log }),
    new RegExp(`refusing to follow the redirect from ${offsite}/model\\.json\\?tfjs-format=file to http://example\\.com/model\\.json: plain http is only allowed for localhost`),
  );

  const evilCache = freshCache();
  await rejectsWith(downloadModule(moduleUrl('evil'), { cacheDir: evilCache, log }), /weight path "\.\.\/group1-shard2of2\.bin" leaves the model folder/);
  assert.deepEqual(
    requests.map((r) => r.file),
    ['offsite/model.json', 'evil/model.json'],
  );
  assert.deepEqual(fs.readdirSync(evilCache), []);
  assert.equal(fs.existsSync(path.join(tmpRoot, SHARDS[1]!)), false);
});

test('a cache entry with a deleted shard is downloaded again', async () => {
  const cacheDir = freshCache();
  const url = moduleUrl('fixture');
  const jsonPath = await downloadModule(url, { cacheDir, log: new MemoryLogger() });
  fs.rmSync(path.join(path.dirname(jsonPath), SHARDS[0]!));

  requests = [];
  const log = new MemoryLogger();
  assert.equal(await downloadModule(url, { cacheDir, log }), jsonPath);
  readModelFiles(jsonPath);
  assert.equal(requests.length, 3);
  assert.match(log.lines[0]!, /^WARNING: cached module .* is unusable \(.*group1-shard1of2\.bin is missing/);
  assert.match(log.lines[1]!, /^INFO: Downloading module /);
  assert.deepEqual(fs.readdirSync(cacheDir), [path.basename(path.dirname(jsonPath))]);
});

test('temp folders are never trusted; stale ones are removed', async () => {
  const cacheDir = freshCache();
  const url = moduleUrl('fixture');
  const entry = cacheEntryDir(cacheDir, url);
  const fresh = `${entry}.tmp-1-aaaa`;
  const stale = `${entry}.tmp-2-bbbb`;
  for (const dir of [fresh, stale]) {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'model.json'), modelJsonText);
    for (const [name, body] of shards) fs.writeFileSync(path.join(dir, name), body);
  }
  const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
  fs.utimesSync(stale, twoHoursAgo, twoHoursAgo);

  await downloadModule(url, { cacheDir, log: new MemoryLogger() });
  assert.equal(requests.length, 3);
  assert.deepEqual(fs.readdirSync(cacheDir).sort(), [path.basename(entry), path.basename(fresh)].sort());
});

test('modelJsonUrl and isModuleUrl', () => {
  assert.equal(
    modelJsonUrl('https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1'),
    'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1/model.json?tfjs-format=file',
  );
  assert.equal(
    modelJsonUrl('https://www.kaggle.com/models/google/mobilenet-v2/TfJs/100-224-feature-vector/3/'),
    'https://www.kaggle.com/models/google/mobilenet-v2/TfJs/100-224-feature-vector/3/model.json?tfjs-format=file',
  );
  assert.equal(modelJsonUrl('https://example.com/models/m/model.json'), 'https://example.com/models/m/model.json');
  assert.equal(modelJsonUrl('https://example.com/m/model.json?v=2'), 'https://example.com/m/model.json?v=2');
  assert.ok(isModuleUrl('HTTPS://tfhub.dev/x'));
  assert.ok(!isModuleUrl('/models/mobilenet'));
});
