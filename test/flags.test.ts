/** The flag tables: one entry per flag gives the commander option, the default, the check and --help's group. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { optionsFromCommand } from '../src/cli/flags.js';
import { labelImageCommand } from '../src/cli/label_image.js';
import { retrainCommand } from '../src/cli/retrain.js';
import { UsageError } from '../src/errors.js';
import { LABEL_IMAGE_FLAGS } from '../src/flags/label_image.js';
import { RETRAIN_FLAGS, RETRAIN_GROUPS, defaultRetrainOptions, validateRetrainOptions } from '../src/flags/retrain.js';
import { describeFlags, flagName } from '../src/flags/table.js';
import { REPO_ROOT, runCli } from './helpers/fixtures.js';

test('every retrain flag comes from the table, with its default, and parses back to typed options', () => {
  const cmd = retrainCommand();
  const names = cmd.options.map((o) => o.long);
  assert.deepEqual(names, Object.keys(RETRAIN_FLAGS).map(flagName));
  const parsed = optionsFromCommand(cmd.parse(['node', 'retrain', '--image_dir', '~/photos', '--learning_rate', '0.5', '--input_range', '0,1', '--strict']), RETRAIN_FLAGS);
  const d = defaultRetrainOptions();
  assert.equal(parsed.learningRate, 0.5);
  assert.deepEqual(parsed.inputRange, [0, 1]);
  assert.equal(parsed.strict, true);
  assert.ok(!parsed.imageDir.startsWith('~'), 'a leading ~ is expanded');
  assert.equal(parsed.howManyTrainingSteps, d.howManyTrainingSteps);
  assert.equal(parsed.howManyTrainingSteps, 4000, "retrain.py's default");
  assert.equal(parsed.bottleneckDir, d.bottleneckDir);
  assert.equal(parsed.numWorkers, undefined);
});

test('retrain --help lists the flags in groups, in the order a user thinks', () => {
  const r = runCli('retrain', ['--help']);
  assert.equal(r.status, 0);
  const headings = Object.values(RETRAIN_GROUPS);
  const at = headings.map((h) => r.stdout.indexOf(`\n${h}\n`));
  assert.ok(at.every((i) => i > 0), `missing a heading in:\n${r.stdout}`);
  assert.deepEqual([...at].sort((a, b) => a - b), at, 'headings in table order');
  const section = (h: string) => r.stdout.slice(r.stdout.indexOf(`\n${h}\n`), r.stdout.indexOf('\n\n', r.stdout.indexOf(`\n${h}\n`) + 1));
  assert.match(section(RETRAIN_GROUPS.distortions), /--random_crop/);
  assert.match(section(RETRAIN_GROUPS.fineTuning), /--fine_tune_layers/);
  assert.doesNotMatch(section(RETRAIN_GROUPS.training), /--random_crop/);
});

test('label-image uses the same mechanism: --backend is checked, --top_k too', () => {
  const names = labelImageCommand().options.map((o) => o.long);
  assert.deepEqual(names, Object.keys(LABEL_IMAGE_FLAGS).map(flagName));
  const bad = runCli('label-image', ['--graph', 'x', '--image', 'y.jpg', '--backend', 'gpu-please']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--backend/);
  const k = runCli('label-image', ['--graph', 'x', '--image', 'y.jpg', '--top_k', '0']);
  assert.equal(k.status, 2);
  assert.match(k.stderr, /--top_k 0 must be a whole number above 0/);
  const images = optionsFromCommand(labelImageCommand().parse(['node', 'label-image', '--graph', 'g', '--image', 'a.jpg', 'b.jpg', '--image', 'c.jpg']), LABEL_IMAGE_FLAGS).image;
  assert.deepEqual(images, ['a.jpg', 'b.jpg', 'c.jpg']);
});

test('each value is checked once, by its table entry, with one line naming the flag', () => {
  const base = { ...defaultRetrainOptions(), imageDir: 'x' };
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ imageDir: undefined }, /^--image_dir is required/],
    [{ outputGraph: '' }, /^--output_graph is empty/],
    [{ testBatchSize: 0 }, /^--test_batch_size 0 must be above 0, or -1/],
    [{ trainBatchSize: 100_000_000 }, /^--train_batch_size 100000000 is too large: give at most 65536/],
    [{ learningRate: 1e39 }, /^--learning_rate 1e\+39 is beyond float32 range \(training computes in float32\): lower --learning_rate/],
    [{ quantizeBytes: 3 }, /^--quantize_bytes 3 must be 1 \(uint8\) or 2 \(float16\)/],
    [{ finalTensorName: 'a/b' }, /^--final_tensor_name a\/b must be a plain name/],
    [{ seed: 1.5 }, /^--seed 1.5 must be a whole number/],
    [{ backend: 'gpu' }, /^--backend gpu is not one of auto/],
  ];
  for (const [o, re] of cases) {
    assert.throws(() => validateRetrainOptions({ ...base, ...o } as typeof base), (e: Error) => e instanceof UsageError && re.test(e.message), String(re));
  }
  assert.doesNotThrow(() => validateRetrainOptions(base));
});

test('describeFlags: the values as typed, and which were given', () => {
  const o = { ...defaultRetrainOptions(), imageDir: '/p', randomCrop: 5, flipLeftRight: true, inputRange: [-1, 1] as [number, number] };
  const rows = describeFlags(RETRAIN_FLAGS, o);
  const row = (f: string) => rows.find((r) => r.flag === f);
  assert.deepEqual(row('--random_crop'), { flag: '--random_crop', value: '5', given: true });
  assert.deepEqual(row('--flip_left_right'), { flag: '--flip_left_right', value: '', given: true });
  assert.deepEqual(row('--input_range'), { flag: '--input_range', value: '-1,1', given: true });
  assert.deepEqual(row('--learning_rate'), { flag: '--learning_rate', value: '0.01', given: false });
  assert.equal(row('--strict'), undefined, 'an unset boolean is not listed');
  assert.equal(row('--saved_model_dir'), undefined, 'an unset optional flag is not listed');
});

test("README's flag list names every flag of both tables, so it cannot drift from --help", () => {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Every flag'));
  const missing = [...Object.keys(RETRAIN_FLAGS), ...Object.keys(LABEL_IMAGE_FLAGS)].map(flagName).filter((f) => !new RegExp(`${f}\\b`).test(section));
  assert.deepEqual(missing, []);
});
