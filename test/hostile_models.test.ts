/**
 * Issue 16 §4 and §6: hostile or broken models and flags each get one accurate line
 * naming the file or flag, before anything large is allocated; training that runs
 * away stops naming --learning_rate, and nothing is exported.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';
import { copyModel as copyModelAs, hasStack, runCliAsync } from './helpers/faults.js';

let root = '';
let images = '';
let layers = '';
let graph = '';

before(async () => {
  root = tempDir('retrain-hostile-');
  images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green'], perClass: 6 });
  layers = await makeLayersModel(path.join(root, 'layers'));
  // A model retrain exported, for label-image.
  const r = await runCliAsync('retrain', args(path.join(root, 'trained'), layers));
  assert.equal(r.status, 0, r.stderr);
  graph = path.join(root, 'trained', 'graph');
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

function args(out: string, module: string, extra: string[] = []): string[] {
  return [
    '--image_dir', images, '--tfhub_module', module, '--bottleneck_dir', path.join(root, 'bn'), '--output_graph', path.join(out, 'graph'),
    '--output_labels', path.join(out, 'labels.txt'), '--summaries_dir', path.join(out, 'logs'), '--how_many_training_steps', '5',
    '--backend', 'cpu', '--num_workers', '0', ...extra,
  ];
}

/** One `<command>: error:` line matching `message`, the exit status, no stack, and no model written. */
async function expectError(command: 'retrain' | 'label-image', argv: string[], status: number, message: RegExp): Promise<void> {
  const r = await runCliAsync(command, argv);
  assert.equal(r.status, status, `${argv.join(' ')}:\n${r.stderr}`);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith(`${command}: error:`));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, message);
  assert.doesNotMatch(errors[0]!, /Cannot read properties|undefined|Invalid typed array|out of bounds|--verbose/);
  assert.ok(!hasStack(r.stderr), r.stderr);
}

const copyModel = (name: string, edit: (json: Record<string, any>) => void): string => copyModelAs(root, layers, name, edit);

const layer = (j: Record<string, any>, cls: string) => j.modelTopology.config.layers.find((l: { class_name: string }) => l.class_name === cls).config;

test('a topology that does not match its weights manifest fails before tfjs builds it, in one line naming the file and layer', async () => {
  const huge = copyModel('m-units-huge', (j) => (layer(j, 'Dense').units = 1e8));
  const hugeFloat = copyModel('m-units-float', (j) => (layer(j, 'Dense').units = 3.5e8));
  const few = copyModel('m-units-few', (j) => (layer(j, 'Dense').units = 3));
  const filters = copyModel('m-filters', (j) => (layer(j, 'Conv2D').filters = 5000));
  const kernel = copyModel('m-kernel', (j) => (layer(j, 'Conv2D').kernel_size = [1e6, 1e6]));
  const input = copyModel('m-input', (j) => (layer(j, 'Conv2D').batch_input_shape = [null, 60000, 60000, 3]));
  const out = path.join(root, 'nope');
  await Promise.all([
    expectError('retrain', args(out, huge), 1, /m-units-huge\/model\.json: layer logits \(Dense\) has units 100000000, beyond any image model/),
    expectError('retrain', args(out, hugeFloat), 1, /m-units-float\/model\.json: layer logits \(Dense\) has units 350000000/),
    expectError('retrain', args(out, few), 1, /m-units-few\/model\.json: layer logits \(Dense\) has units 3 but its weights are logits\/kernel \[8,4\]/),
    expectError('retrain', args(out, filters), 1, /m-filters\/model\.json: layer conv \(Conv2D\) has filters 5000 but its weights are/),
    expectError('retrain', args(out, kernel), 1, /m-kernel\/model\.json: layer conv \(Conv2D\) has kernel_size \[1000000,1000000\]/),
    expectError('retrain', args(out, input), 1, /module .*m-input takes 60000x60000 images, beyond any image model/),
  ]);
  assert.ok(!fs.existsSync(out));
});

test('a broken weights manifest (null entries, nameless or untyped weights) gets one line naming the file', async () => {
  const nullGroup = copyModel('m-null-group', (j) => j.weightsManifest.push(null));
  const nullWeight = copyModel('m-null-weight', (j) => (j.weightsManifest[0].weights[1] = null));
  const noDtype = copyModel('m-no-dtype', (j) => delete j.weightsManifest[0].weights[0].dtype);
  const nullTopology = copyModel('m-null-topology', (j) => (j.modelTopology = null));
  const out = path.join(root, 'nope');
  await Promise.all([
    expectError('retrain', args(out, nullGroup), 1, /m-null-group\/model\.json: weightsManifest entry 2 is not a \{paths, weights\} group; the model\.json is corrupt/),
    expectError('retrain', args(out, nullWeight), 1, /m-null-weight\/model\.json: weight 2 of weightsManifest entry 1 has no name/),
    expectError('retrain', args(out, noDtype), 1, /m-no-dtype\/model\.json: weight conv\/kernel has no dtype, which TF\.js cannot load/),
    expectError('retrain', args(out, nullTopology), 1, /m-null-topology\/model\.json is not a TF\.js model\.json/),
    expectError('label-image', ['--graph', nullGroup, '--image', images], 1, /m-null-group\/model\.json: weightsManifest entry 2/),
  ]);
});

test('a model.json that is a folder, and a model folder without model.json, are named as such by both commands', async () => {
  const jsonDir = path.join(root, 'json-is-dir');
  fs.mkdirSync(path.join(jsonDir, 'model.json'), { recursive: true });
  const empty = path.join(root, 'empty-model');
  fs.mkdirSync(empty);
  const out = path.join(root, 'nope');
  const img = path.join(images, 'red', 'red_000.png');
  await Promise.all([
    expectError('retrain', args(out, jsonDir), 2, /--tfhub_module .*json-is-dir: its model\.json is a folder, not a file/),
    expectError('retrain', args(out, path.join(jsonDir, 'model.json')), 2, /--tfhub_module .*json-is-dir\/model\.json is a folder, not a model\.json file/),
    expectError('label-image', ['--graph', jsonDir, '--image', img], 2, /--graph .*json-is-dir: its model\.json is a folder, not a file/),
    expectError('label-image', ['--graph', path.join(jsonDir, 'model.json'), '--image', img], 2, /--graph .*json-is-dir\/model\.json is a folder, not a model\.json file/),
    expectError('label-image', ['--graph', empty, '--image', img], 2, /--graph .*empty-model is a folder without a model\.json: give the folder/),
    expectError('label-image', ['--graph', path.join(root, 'missing'), '--image', img], 2, /--graph .*missing does not exist/),
  ]);
  // Still good: the real thing.
  const ok = await runCliAsync('label-image', ['--graph', graph, '--image', img]);
  assert.equal(ok.status, 0, ok.stderr);
});

test('size flags far beyond sane values are usage errors naming the flag, before any work', async () => {
  const out = path.join(root, 'nope');
  const img = path.join(images, 'red', 'red_000.png');
  await Promise.all([
    expectError('retrain', args(out, layers, ['--train_batch_size', '100000000']), 2, /--train_batch_size 100000000 is too large: give at most 65536/),
    expectError('retrain', args(out, layers, ['--validation_batch_size', '100000000']), 2, /--validation_batch_size 100000000 is too large/),
    expectError('retrain', args(out, layers, ['--test_batch_size', '100000000']), 2, /--test_batch_size 100000000 is too large/),
    expectError('retrain', args(out, layers, ['--bottleneck_batch_size', '1000000']), 2, /--bottleneck_batch_size 1000000 is too large: give at most 256/),
    expectError('retrain', args(out, layers, ['--fine_tune_layers', '1', '--fine_tune_batch_size', '1000000']), 2, /--fine_tune_batch_size 1000000 is too large/),
    expectError('retrain', args(out, layers, ['--hidden_units', '100000000']), 2, /--hidden_units 100000000 is too large/),
    expectError('retrain', args(out, layers, ['--input_height', '100000', '--input_width', '100000']), 2, /--input_height 100000 must be a whole number from 1 to 4096/),
    expectError('label-image', ['--graph', graph, '--image', img, '--input_width', '100000'], 2, /--input_width 100000 must be a whole number from 1 to 4096/),
  ]);
});

test('training that runs away stops with one line naming --learning_rate, and nothing is exported', async () => {
  // The same photos under both labels: the loss can never reach 0, so a huge rate keeps it growing.
  const dir = path.join(root, 'conflict');
  for (const [cls, other] of [['a', 'b'], ['b', 'a']]) {
    fs.mkdirSync(path.join(dir, cls), { recursive: true });
    for (const src of ['red', 'green']) {
      for (const f of fs.readdirSync(path.join(images, src))) fs.copyFileSync(path.join(images, src, f), path.join(dir, cls, `${other}-${f}`));
    }
  }
  const run = (out: string, extra: string[]) => [...args(out, layers, extra), '--image_dir', dir, '--bottleneck_dir', path.join(root, 'bn-conflict')];
  const outs = ['diverge', 'float32', 'intermediate', 'finetune'].map((n) => path.join(root, n));
  await Promise.all([
    expectError('retrain', run(outs[0]!, ['--learning_rate', '1e30']), 1, /^retrain: error: training diverged \(the cross entropy is [\d.e+]+ at step 0\): lower --learning_rate \(now 1e\+30\); nothing was exported$/),
    expectError('retrain', run(outs[1]!, ['--learning_rate', '1e39']), 2, /--learning_rate 1e\+39 is beyond float32 range .*: lower --learning_rate/),
    expectError('retrain', run(outs[2]!, ['--learning_rate', '1e25', '--intermediate_store_frequency', '1', '--intermediate_output_graphs_dir', path.join(root, 'inter-graphs')]),
      1, /training diverged \(the cross entropy is [\d.e+]+ at step 0\): lower --learning_rate \(now 1e\+25\)/),
    expectError('retrain', run(outs[3]!, ['--fine_tune_layers', '1', '--fine_tune_learning_rate', '1e39']), 2, /--fine_tune_learning_rate 1e\+39 is beyond float32 range/),
  ]);
  for (const out of outs) {
    assert.ok(!fs.existsSync(path.join(out, 'graph')) && !fs.existsSync(path.join(out, 'labels.txt')), `${out}: something was exported`);
  }
  assert.ok(!fs.existsSync(path.join(root, 'inter-graphs')), 'an intermediate model of a run that diverged');
  // A sane rate on the same data still trains and exports.
  const ok = await runCliAsync('retrain', run(path.join(root, 'sane'), []));
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(fs.existsSync(path.join(root, 'sane', 'graph', 'model.json')));
});
