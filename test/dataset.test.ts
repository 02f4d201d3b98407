import { defaultRetrainOptions, validateRetrainOptions } from '../src/flags/retrain.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createImageLists, labelFromDir, splitPercentage, whichSet } from '../src/dataset/index.js';
import { MemoryLogger } from '../src/log.js';
import { RetrainError, UsageError } from '../src/errors.js';
import { makeImageDir, tempDir } from './helpers/fixtures.js';

/** The rule spelled out with BigInt, independently of the implementation's bit trick. */
function referencePercentage(baseName: string): number {
  const name = baseName.replace(/_nohash_.*$/, '');
  const h = BigInt('0x' + createHash('sha1').update(name, 'utf8').digest('hex')) % 2n ** 27n;
  return (Number(h) * 100) / (2 ** 27 - 1);
}

test('labels: lower case, runs of other characters become one space', () => {
  assert.equal(labelFromDir('Sun_Flowers'), 'sun flowers');
  assert.equal(labelFromDir('ROSES--red & white'), 'roses red white');
  assert.equal(labelFromDir('daisy'), 'daisy');
});

test('split percentage follows int(sha1(name), 16) % 2**27 for many names', () => {
  for (let i = 0; i < 500; i++) {
    const name = `img_${i}_${(i * 7919) % 1000}.jpg`;
    assert.equal(splitPercentage(name), referencePercentage(name), name);
  }
  // Only the base name counts, and _nohash_ suffixes are ignored.
  assert.equal(splitPercentage('/a/b/c/photo.jpg'), splitPercentage('photo.jpg'));
  assert.equal(splitPercentage('photo.jpg_nohash_3.jpg'), referencePercentage('photo.jpg'));
});

test('whichSet applies validation first, then testing', () => {
  const names = Array.from({ length: 2000 }, (_, i) => `f${i}.png`);
  const counts = { training: 0, validation: 0, testing: 0 };
  for (const n of names) {
    const p = referencePercentage(n);
    const expected = p < 10 ? 'validation' : p < 25 ? 'testing' : 'training';
    const got = whichSet(n, { validationPercentage: 10, testingPercentage: 15 });
    assert.equal(got, expected, n);
    counts[got]++;
  }
  // A hash split: roughly the asked proportions.
  assert.ok(counts.validation > 150 && counts.validation < 250, JSON.stringify(counts));
  assert.ok(counts.testing > 220 && counts.testing < 380, JSON.stringify(counts));
});

test('createImageLists: classes sorted by label, every image in exactly one set', async () => {
  const dir = tempDir();
  await makeImageDir(dir, { classes: ['Zebra_Stripes', 'apple', 'Mango'], perClass: 25 });
  // Extensions in any case count; hidden files, other files and nested folders do not.
  fs.copyFileSync(path.join(dir, 'apple', 'apple_000.png'), path.join(dir, 'apple', 'UPPER.PNG'));
  fs.writeFileSync(path.join(dir, 'apple', '.hidden.png'), 'x');
  fs.writeFileSync(path.join(dir, 'apple', 'notes.txt'), 'x');
  fs.mkdirSync(path.join(dir, 'apple', 'nested'));
  fs.copyFileSync(path.join(dir, 'apple', 'apple_000.png'), path.join(dir, 'apple', 'nested', 'deep.png'));
  fs.writeFileSync(path.join(dir, 'top_level.png'), 'x');
  const log = new MemoryLogger();
  const lists = await createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, log);
  assert.deepEqual(lists.classes.map((c) => c.label), ['apple', 'mango', 'zebra stripes']);
  assert.deepEqual(lists.classes.map((c) => c.dir), ['apple', 'Mango', 'Zebra_Stripes']);
  const apple = lists.classes[0]!;
  const all = [...apple.training, ...apple.validation, ...apple.testing].sort();
  assert.equal(all.length, 26);
  assert.ok(all.includes('UPPER.PNG'));
  assert.ok(!all.some((f) => f.startsWith('.') || f.endsWith('.txt') || f.includes('deep')));
  for (const cls of lists.classes) {
    for (const cat of ['training', 'validation', 'testing'] as const) {
      for (const f of cls[cat]) assert.equal(whichSet(f, { testingPercentage: 10, validationPercentage: 10 }), cat);
      assert.deepEqual(cls[cat], [...cls[cat]].sort());
    }
  }
  assert.deepEqual(log.lines.filter((l) => l.startsWith('WARNING')), []);
});

test('createImageLists: warnings for small and empty folders, errors for too few classes', async () => {
  const dir = tempDir();
  await makeImageDir(dir, { classes: ['a', 'b'], perClass: 5 });
  fs.mkdirSync(path.join(dir, 'empty'));
  const log = new MemoryLogger();
  const lists = await createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, log);
  assert.equal(lists.classes.length, 2);
  assert.ok(log.lines.some((l) => /No files found .*empty/.test(l)), log.lines.join('\n'));
  assert.equal(log.lines.filter((l) => /less than 20 images/.test(l)).length, 2);

  fs.rmSync(path.join(dir, 'b'), { recursive: true });
  await assert.rejects(createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, log), (e: Error) => e instanceof RetrainError && /Only one valid folder/.test(e.message));
  const none = tempDir();
  await assert.rejects(createImageLists(none, { testingPercentage: 10, validationPercentage: 10 }, log), /No valid folders/);
});

test('createImageLists: usage errors for bad folders and percentages', async () => {
  const log = new MemoryLogger();
  const split = { testingPercentage: 10, validationPercentage: 10 };
  await assert.rejects(createImageLists('/no/such/folder', split, log), (e: Error) => e instanceof UsageError && /--image_dir .* does not exist/.test(e.message));
  const dir = tempDir();
  const file = path.join(dir, 'f.txt');
  fs.writeFileSync(file, 'x');
  await assert.rejects(createImageLists(file, split, log), (e: Error) => e instanceof UsageError && /is a file/.test(e.message));
  const check = (testingPercentage: number, validationPercentage: number) =>
    validateRetrainOptions({ ...defaultRetrainOptions(), imageDir: dir, testingPercentage, validationPercentage });
  assert.throws(() => check(-1, 10), /--testing_percentage -1 is out of range: give a percentage from 0 to 100/);
  assert.throws(() => check(10, 101), /--validation_percentage 101/);
  assert.throws(() => check(60, 50), (e: Error) => e instanceof UsageError && /over 100/.test(e.message));
});

test('createImageLists: two folders with the same label are refused', async () => {
  const dir = tempDir();
  await makeImageDir(dir, { classes: ['Roses', 'ROSES'], perClass: 2 });
  await assert.rejects(createImageLists(dir, { testingPercentage: 10, validationPercentage: 10 }, new MemoryLogger()), /both give the label "roses"/);
});
