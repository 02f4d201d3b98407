/**
 * Issue 7: bad folders, flags and modules each give one line saying what to do,
 * exit 2 for usage errors and 1 for the rest, and no stack trace unless --verbose.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { makeGraphModel, makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';
import { copyModel as copyModelAs, hasStack, runCliAsync } from './helpers/faults.js';

let root = '';
let images = '';
let layers = '';
let graph = '';
let server: http.Server;
let base = '';

before(async () => {
  root = tempDir('retrain-badinput-');
  images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green'], perClass: 6 });
  layers = await makeLayersModel(path.join(root, 'layers'));
  graph = makeGraphModel(path.join(root, 'graph'));
  server = http.createServer((_req, res) => {
    res.statusCode = 404;
    res.end('not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function args(extra: string[], module = layers): string[] {
  const out = path.join(root, 'out');
  return [
    '--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', path.join(out, 'bn'), '--output_graph', path.join(out, 'graph'),
    '--output_labels', path.join(out, 'labels.txt'), '--how_many_training_steps', '5', '--backend', 'cpu',
    '--module_cache_dir', path.join(root, 'modcache'), ...extra,
  ];
}

/** Several expectError calls at once: each is mostly process start-up, so they overlap well. */
async function all(...checks: Array<Promise<unknown>>): Promise<void> {
  await Promise.all(checks);
}

/** Runs retrain and checks the one-line error: exit status, message, no stack. */
async function expectError(extra: string[], status: number, message: RegExp, module?: string): Promise<string> {
  const r = await runCliAsync('retrain', args(extra, module));
  assert.equal(r.status, status, `${extra.join(' ')}:\n${r.stderr}`);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('retrain: error:'));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, message);
  assert.ok(!hasStack(r.stderr), `stack trace without --verbose:\n${r.stderr}`);
  return r.stderr;
}

const copyModel = (from: string, name: string, edit: (json: Record<string, any>) => void): string => copyModelAs(root, from, name, edit);

test('--image_dir missing, a file, or empty; one class', async () => {
  const file = path.join(root, 'a-file.txt');
  fs.writeFileSync(file, 'x');
  const empty = path.join(root, 'empty');
  fs.mkdirSync(path.join(empty, 'no-images-here'), { recursive: true });
  const one = path.join(root, 'one');
  fs.cpSync(path.join(images, 'red'), path.join(one, 'red'), { recursive: true });
  await all(
    expectError(['--image_dir', path.join(root, 'nope')], 2, /--image_dir .*nope does not exist: point it at a folder with one subfolder/),
    expectError(['--image_dir', file], 2, /--image_dir .*a-file\.txt is a file, not a folder/),
    expectError(['--image_dir', empty], 1, /No valid folders of images found at --image_dir .*empty: add one subfolder of images per class/),
    expectError(['--image_dir', one], 1, /Only one valid folder of images found .* add a second class folder/),
  );
});

test('percentages out of range, zero or negative batch sizes, unknown flags: exit 2', async () => {
  await all(
    expectError(['--testing_percentage', '120'], 2, /--testing_percentage 120 is out of range: give a percentage from 0 to 100/),
    expectError(['--validation_percentage=-5'], 2, /--validation_percentage -5 is out of range/),
    expectError(['--testing_percentage', '60', '--validation_percentage', '50'], 2, /is over 100: lower one of them/),
    expectError(['--train_batch_size', '0'], 2, /--train_batch_size 0 must be a whole number above 0/),
    expectError(['--train_batch_size', '-3'], 2, /--train_batch_size -3 must be a whole number above 0/),
    expectError(['--bottleneck_batch_size', '0'], 2, /--bottleneck_batch_size 0 must be a whole number above 0/),
    expectError(['--validation_batch_size', '-7'], 2, /--validation_batch_size -7 must be above 0, or -1/),
    expectError(['--train_batch_size', 'ten'], 2, /--train_batch_size needs a whole number, got "ten"/),
    expectError(['--no_such_flag'], 2, /unknown option '--no_such_flag'.*\(see retrain --help\)/),
  );
});

test('--tfhub_module that does not exist, is not a model, or is a URL that answers 404', async () => {
  const text = path.join(root, 'notes.txt');
  fs.writeFileSync(text, 'hello');
  const json = path.join(root, 'other.json');
  fs.writeFileSync(json, '{"hello": 1}');
  fs.mkdirSync(path.join(root, 'emptymodel'));
  await all(
    expectError([], 2, /--tfhub_module .*missing-model does not exist: give a TF Hub or Kaggle URL, or a local TF\.js model/, path.join(root, 'missing-model')),
    expectError([], 1, /notes\.txt is not valid JSON .*: is it a TF\.js model\.json\?/, text),
    expectError([], 1, /other\.json is not a TF\.js model\.json/, json),
    expectError([], 2, /--tfhub_module .*emptymodel has no model\.json or saved_model\.pb: is it a model folder\?/, path.join(root, 'emptymodel')),
    expectError([], 1, /404/, `${base}/google/tfjs-model/missing/1`),
  );
  assert.deepEqual(fs.readdirSync(path.join(root, 'modcache')).filter((n) => !n.startsWith('.')), [], 'a failed download leaves no cache entry');
});

test('--verbose adds the stack trace', async () => {
  const r = await runCliAsync('retrain', args(['--image_dir', path.join(root, 'nope'), '--verbose']));
  assert.equal(r.status, 2);
  assert.ok(hasStack(r.stderr), r.stderr);
});

test('untrusted model.json: weight paths outside the folder, sizes that do not match, unknown ops and layers', async () => {
  const up = copyModel(layers, 'm-dotdot', (j) => (j.weightsManifest[0].paths = ['../layers/group1-shard1of1.bin']));
  const abs = copyModel(layers, 'm-abs', (j) => (j.weightsManifest[0].paths = [path.join(layers, 'group1-shard1of1.bin')]));
  const bigger = copyModel(layers, 'm-shape', (j) => (j.weightsManifest[0].weights[0].shape = [3, 3, 3, 9]));
  const short = copyModel(layers, 'm-short', () => {});
  const shard = path.join(short, 'group1-shard1of1.bin');
  fs.truncateSync(shard, fs.statSync(shard).size - 4);
  const op = copyModel(graph, 'm-op', (j) => (j.modelTopology.node.find((n: { op: string }) => n.op === 'Relu').op = 'FancyUnheardOfOp'));
  const layer = copyModel(layers, 'm-layer', (j) => {
    const l = j.modelTopology.config.layers.find((x: { class_name: string }) => x.class_name === 'GlobalAveragePooling2D');
    l.class_name = 'FancyUnheardOfLayer';
  });
  await all(
    expectError([], 1, /weight path "\.\.\/layers\/group1-shard1of1\.bin" leaves the model folder; refusing to load it/, up),
    expectError([], 1, /weight path ".*" leaves the model folder/, abs),
    expectError([], 1, /weight group 1 has \d+ bytes but its manifest declares \d+; the model is incomplete or corrupt/, bigger),
    expectError([], 1, /has \d+ bytes but its manifest declares \d+/, short),
    expectError([], 1, /cannot load module .*m-op as a TF\.js graph-model \(unsupported op or layer: FancyUnheardOfOp\)/, op),
    expectError([], 1, /cannot load module .*m-layer as a TF\.js layers-model \(unsupported op or layer: FancyUnheardOfLayer\)/, layer),
  );
});
