import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { whichSet } from '../src/dataset/index.js';
import { makeImageDir, makeLayersModel, makeGraphModel, runCli, tempDir } from './helpers/fixtures.js';
import { runCliEach } from './helpers/faults.js';

interface Summary {
  module: { format: string; bottleneck_size: number; input_size: number[]; input_range: number[]; id: string };
  backend: string;
  classes: Record<string, string>;
  split: Record<string, Record<string, string[]>>;
  bottlenecks: { computed: number; cached: number; failed: unknown[] };
  timings_s: Record<string, number>;
  training: { steps: number; final_train_accuracy: number; final_validation_accuracy: number; cross_entropy: number };
  test: { accuracy: number; n: number; predictions: Array<{ file: string; true_label: string; predicted_label: string; score: number }> };
  outputs: { output_graph: string; output_labels: string; intermediate: string[] };
}

const noStack = (s: string) => assert.doesNotMatch(s, /\n\s+at .*:\d+:\d+/, 'no stack trace');

async function setup(moduleKind: 'layers' | 'graph') {
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { classes: ['Red', 'green', 'blue'], perClass: 24 });
  const module = moduleKind === 'layers' ? await makeLayersModel(path.join(root, 'module')) : makeGraphModel(path.join(root, 'module'));
  const args = (extra: string[] = []) => [
    '--image_dir', images,
    '--tfhub_module', module,
    '--bottleneck_dir', path.join(root, 'bottlenecks'),
    '--output_graph', path.join(root, 'out'),
    '--output_labels', path.join(root, 'labels.txt'),
    '--summary_json', path.join(root, 'summary.json'),
    '--summaries_dir', path.join(root, 'logs'),
    '--how_many_training_steps', '60',
    '--learning_rate', '0.5',
    '--eval_step_interval', '20',
    '--backend', 'cpu',
    ...extra,
  ];
  const summary = () => JSON.parse(fs.readFileSync(path.join(root, 'summary.json'), 'utf8')) as Summary;
  return { root, images, module, args, summary };
}

for (const kind of ['layers', 'graph'] as const) {
  test(`retrain → label-image end to end with a ${kind} module`, async () => {
    const s = await setup(kind);
    const r = runCli('retrain', s.args(['--print_misclassified_test_images']));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '', 'retrain logs to stderr only');
    assert.match(r.stderr, /^INFO:retrain:Using backend cpu/m);
    assert.match(r.stderr, /INFO:retrain:Step 59: Validation accuracy = [\d.]+% \(N=\d+\)/);
    assert.match(r.stderr, /INFO:retrain:Final test accuracy = [\d.]+% \(N=\d+\)/);
    assert.match(r.stderr, /=== MISCLASSIFIED TEST IMAGES ===/);

    const sum = s.summary();
    assert.equal(sum.backend, 'cpu');
    assert.equal(sum.module.format, `${kind}-model`);
    assert.deepEqual(sum.classes, { blue: 'blue', green: 'green', red: 'Red' });
    assert.deepEqual(fs.readFileSync(path.join(s.root, 'labels.txt'), 'utf8'), 'blue\ngreen\nred\n');
    assert.deepEqual([sum.bottlenecks.computed, sum.bottlenecks.cached, sum.bottlenecks.failed.length], [72, 0, 0]);
    for (const [cat, byLabel] of Object.entries(sum.split)) {
      for (const names of Object.values(byLabel)) for (const n of names) assert.equal(whichSet(n, { testingPercentage: 10, validationPercentage: 10 }), cat);
    }
    for (const stage of ['dataset', 'module', 'bottlenecks', 'training', 'testing', 'export']) assert.ok(sum.timings_s[stage]! >= 0, stage);
    assert.equal(sum.training.steps, 60);
    assert.equal(sum.test.n, sum.test.predictions.length);
    assert.equal(sum.test.n, Object.values(sum.split['testing']!).flat().length);
    assert.equal(sum.outputs.output_graph, path.join(s.root, 'out'));

    // label-image agrees with retrain's own test predictions, image by image.
    for (const p of sum.test.predictions) {
      const li = runCli('label-image', ['--graph', path.join(s.root, 'out'), '--labels', path.join(s.root, 'labels.txt'), '--image', p.file, '--top_k', '3', '--backend', 'cpu']);
      assert.equal(li.status, 0, li.stderr);
      const lines = li.stdout.trim().split('\n');
      assert.equal(lines.length, 3);
      const [label, score] = lines[0]!.split(' ');
      assert.equal(label, p.predicted_label, p.file);
      assert.ok(Math.abs(Number(score) - p.score) < 1e-5, `${score} vs ${p.score}`);
    }
    // Many images at once, as JSON.
    const all = runCli('label-image', ['--graph', path.join(s.root, 'out'), '--image', path.join(s.images, 'green'), '--json', '--top_k', '1', '--backend', 'cpu']);
    assert.equal(all.status, 0, all.stderr);
    const parsed = JSON.parse(all.stdout) as Array<{ image: string; predictions: Array<{ label: string }> }>;
    assert.equal(parsed.length, 24);

    // A second run takes every bottleneck from the cache and prints the same numbers.
    const again = runCli('retrain', s.args());
    assert.equal(again.status, 0, again.stderr);
    const sum2 = s.summary();
    assert.deepEqual([sum2.bottlenecks.computed, sum2.bottlenecks.cached], [0, 72]);
    const numbers = (t: string) => t.split('\n').filter((l) => /Step \d+:|Final test/.test(l));
    assert.deepEqual(numbers(again.stderr), numbers(r.stderr));
    assert.deepEqual(sum2.test.predictions, sum.test.predictions);
  });
}

test('retrain: --bottlenecks_only stops after caching; intermediate models are stored', async () => {
  const s = await setup('layers');
  const r = runCli('retrain', s.args(['--bottlenecks_only']));
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Step 0/);
  assert.equal(s.summary().bottlenecks.computed, 72);
  assert.equal(s.summary().training, undefined);
  assert.ok(!fs.existsSync(path.join(s.root, 'out')));

  const inter = path.join(s.root, 'inter');
  const r2 = runCli('retrain', s.args(['--intermediate_store_frequency', '25', '--intermediate_output_graphs_dir', inter]));
  assert.equal(r2.status, 0, r2.stderr);
  assert.deepEqual(fs.readdirSync(inter).sort(), ['intermediate_25', 'intermediate_50']);
  assert.ok(fs.existsSync(path.join(inter, 'intermediate_25', 'model.json')));
  assert.deepEqual(s.summary().outputs.intermediate, [path.join(inter, 'intermediate_25'), path.join(inter, 'intermediate_50')]);
});

test('retrain: user errors are one line with exit 2 (usage) or 1, no stack trace', async () => {
  const s = await setup('layers');
  const oneClass = tempDir();
  await makeImageDir(oneClass, { classes: ['only'], perClass: 3 });
  const cases: Array<[string[], number, RegExp]> = [
    [['--image_dir', '/no/such/dir'], 2, /--image_dir \/no\/such\/dir does not exist/],
    [[], 2, /--image_dir is required/],
    [['--image_dir', s.images, '--bogus'], 2, /unknown option '--bogus'/],
    [['--image_dir', s.images, '--train_batch_size', '0'], 2, /--train_batch_size 0 must be/],
    [['--image_dir', s.images, '--train_batch_size', 'ten'], 2, /--train_batch_size needs a whole number/],
    [['--image_dir', s.images, '--testing_percentage', '70', '--validation_percentage', '40'], 2, /over 100/],
    [['--image_dir', s.images, '--tfhub_module', '/no/such/model'], 2, /--tfhub_module \/no\/such\/model does not exist/],
    [['--image_dir', s.images, '--tfhub_module', s.module, '--saved_model_dir', '/tmp/sm'], 2, /--saved_model_dir \/tmp\/sm: a TensorFlow graph can only be written when the module is a TF.js graph model/],
    [['--image_dir', s.images, '--backend', 'tpu'], 2, /--backend/],
    [['--image_dir', oneClass, '--tfhub_module', s.module], 1, /Only one valid folder of images/],
  ];
  const runs = await runCliEach('retrain', cases.map(([args]) => args));
  for (const [k, [args, status, re]] of cases.entries()) {
    const r = runs[k]!;
    assert.equal(r.status, status, `${args.join(' ')}\n${r.stderr}`);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('retrain: error:'));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0]!, re);
    noStack(r.stderr);
  }
});

test('label-image: errors and flags', async () => {
  const s = await setup('graph');
  const r = runCli('retrain', s.args());
  assert.equal(r.status, 0, r.stderr);
  const out = path.join(s.root, 'out');
  const img = path.join(s.images, 'blue', 'blue_000.png');
  const cases: Array<[string[], number, RegExp]> = [
    [['--image', img], 2, /--graph is required/],
    [['--graph', out], 2, /--image is required/],
    [['--graph', '/no/model', '--image', img], 2, /--graph \/no\/model does not exist/],
    [['--graph', out, '--image', img, '--output_layer', 'nope'], 2, /--output_layer nope is not a node/],
    [['--graph', out, '--image', img, '--labels', '/no/labels.txt'], 1, /cannot read --labels/],
  ];
  const runs = await runCliEach('label-image', cases.map(([args]) => [...args, '--backend', 'cpu']));
  for (const [k, [args, status, re]] of cases.entries()) {
    const res = runs[k]!;
    assert.equal(res.status, status, `${args.join(' ')}\n${res.stderr}`);
    assert.match(res.stderr, re);
    noStack(res.stderr);
  }
  // The bottleneck itself can be read out with --output_layer (label_image.py's use).
  const feat = runCli('label-image', ['--graph', out, '--image', img, '--output_layer', 'module_apply_default/hub_output/feature_vector/Mean', '--top_k', '8', '--json', '--backend', 'cpu']);
  assert.equal(feat.status, 0, feat.stderr);
  assert.equal((JSON.parse(feat.stdout) as Array<{ predictions: unknown[] }>)[0]!.predictions.length, 8);
  // A bad image among good ones: reported, the others still classified, exit 1.
  const bad = path.join(s.root, 'bad.jpg');
  fs.writeFileSync(bad, 'nope');
  const mixed = runCli('label-image', ['--graph', out, '--image', img, bad, '--backend', 'cpu']);
  assert.equal(mixed.status, 1);
  assert.match(mixed.stdout, new RegExp(`^${img}\\n(\\w+ [\\d.e-]+\\n){3}`));
  assert.match(mixed.stderr, /bad\.jpg/);
});
