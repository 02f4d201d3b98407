/** labelImages(): label-image's loop as a library function that returns results; the CLI only prints them. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { defaultLabelImageOptions } from '../src/flags/label_image.js';
import { labelImages } from '../src/label_image.js';
import { MemoryLogger } from '../src/log.js';
import { defaultRetrainOptions, runRetrain } from '../src/retrain.js';
import { REPO_ROOT, cliEnv, makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

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

test('label-image reads a named path as cat does (a pipe, - for stdin); folder scans skip pipes; --version', async () => {
  await useCpuBackend();
  const root = tempDir();
  const images = await makeImageDir(path.join(root, 'images'), { perClass: 6 });
  const model = await makeLayersModel(path.join(root, 'model'));
  const out = path.join(root, 'out');
  await runRetrain(
    { ...defaultRetrainOptions(), imageDir: images, tfhubModule: model, bottleneckDir: path.join(root, 'bn'), outputGraph: out, outputLabels: path.join(root, 'labels.txt'), summariesDir: path.join(root, 'logs'), howManyTrainingSteps: 5, backend: 'cpu' },
    new MemoryLogger(),
  );
  const photo = path.join(images, 'red', fs.readdirSync(path.join(images, 'red'))[0]!);
  const folder = path.join(root, 'to-label');
  fs.mkdirSync(folder);
  fs.copyFileSync(photo, path.join(folder, 'a.png'));
  const fifo = path.join(folder, 'pipe.png');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  // A folder scan skips the pipe (reading it would wait for a writer forever).
  const scanned = await labelImages({ ...defaultLabelImageOptions(), graph: out, image: [folder], backend: 'cpu' }, new MemoryLogger());
  assert.deepEqual(scanned.results.map((x) => path.basename(x.image)), ['a.png']);
  const expected = scanned.results[0]!.predictions.map((p) => [p.label, p.score.toFixed(5)]);
  const predictions = (stdout: string) => (JSON.parse(stdout) as Array<{ predictions: Array<{ label: string; score: number }> }>)[0]!.predictions.map((p) => [p.label, p.score.toFixed(5)]);

  const args = ['--graph', out, '--json', '--backend', 'cpu'];
  const stdin = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'label-image.js'), ...args, '--image', '-'], { input: fs.readFileSync(photo), encoding: 'utf8', env: cliEnv() });
  assert.equal(stdin.status, 0, stdin.stderr);
  assert.deepEqual(predictions(stdin.stdout), expected);

  // Named explicitly, the pipe is read: as `--image <(cat photo)` would give it.
  const writer = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', photo, fifo], { stdio: 'ignore' });
  const piped = runCli('label-image', [...args, '--image', fifo]);
  writer.kill();
  assert.equal(piped.status, 0, piped.stderr);
  assert.deepEqual(predictions(piped.stdout), expected);

  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const cmd of ['retrain', 'label-image'] as const) {
    const v = runCli(cmd, ['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout, `${pkg.version}\n`);
  }
});
