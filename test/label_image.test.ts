/** labelImages(): label-image's loop as a library function that returns results; the CLI only prints them. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { defaultLabelImageOptions } from '../src/flags/label_image.js';
import { labelImages } from '../src/label_image.js';
import { MemoryLogger } from '../src/log.js';
import { defaultRetrainOptions, runRetrain } from '../src/retrain.js';
import { makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

test('labelImages returns every result, skips an unreadable image with a reason and sets exit code 1', async () => {
  await useCpuBackend();
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 6 });
  const model = await makeLayersModel(path.join(root, 'model'));
  const out = path.join(root, 'out');
  await runRetrain(
    { ...defaultRetrainOptions(), imageDir: images, tfhubModule: model, bottleneckDir: path.join(root, 'bn'), outputGraph: out, outputLabels: path.join(root, 'labels.txt'), summariesDir: path.join(root, 'logs'), howManyTrainingSteps: 20, backend: 'cpu' },
    new MemoryLogger(),
  );
  const folder = path.join(root, 'to-label');
  fs.mkdirSync(folder);
  fs.copyFileSync(path.join(images, 'red', fs.readdirSync(path.join(images, 'red'))[0]!), path.join(folder, 'a.png'));
  fs.copyFileSync(path.join(images, 'blue', fs.readdirSync(path.join(images, 'blue'))[0]!), path.join(folder, 'b.png'));
  fs.writeFileSync(path.join(folder, 'c.jpg'), 'not an image');
  const seen: string[] = [];
  const log = new MemoryLogger();
  const r = await labelImages({ ...defaultLabelImageOptions(), graph: out, image: [folder], topK: 2, backend: 'cpu' }, log, { onResult: (res) => seen.push(res.image) });
  assert.deepEqual(r.results.map((x) => path.basename(x.image)), ['a.png', 'b.png']);
  assert.deepEqual(seen, r.results.map((x) => x.image), 'each result is reported as it is ready');
  assert.ok(r.results.every((x) => x.predictions.length === 2 && x.scores.length === 3));
  assert.equal(r.skipped.length, 1);
  assert.match(r.skipped[0]!.image, /c\.jpg$/);
  assert.equal(r.exitCode, 1);
  assert.ok(log.lines.some((l) => l.startsWith('WARNING') && l.includes('c.jpg')));

  const ok = await labelImages({ ...defaultLabelImageOptions(), graph: out, image: [path.join(folder, 'a.png')], backend: 'cpu' }, new MemoryLogger());
  assert.equal(ok.exitCode, 0);
  // The CLI prints what the library returns, and exits with its code.
  const cli = runCli('label-image', ['--graph', out, '--image', folder, '--top_k', '2', '--json', '--backend', 'cpu']);
  assert.equal(cli.status, 1);
  assert.deepEqual(JSON.parse(cli.stdout).map((x: { image: string }) => path.basename(x.image)), ['a.png', 'b.png']);
});
