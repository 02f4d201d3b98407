/**
 * Issue 7: bad images are skipped with one warning each and listed in the summary
 * (fatal with --strict); unusual but valid images decode upright and train.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { decodeImage } from '../src/image/index.js';
import { makeImageDir, makeLayersModel, tempDir } from './helpers/fixtures.js';
import { filesBelow, hasStack, jpegClaimingSize, noisyRgb, pngWithCorruptData, permissionUser, runCliAsync } from './helpers/faults.js';


let root = '';
let images = '';
let model = '';
/** Bad file name → words its skip reason must contain. */
const BAD: Record<string, RegExp> = {};
const perm = permissionUser();
const GOOD: string[] = [];

before(async () => {
  root = tempDir('retrain-badimg-');
  // Run as nobody when root, so that file permissions apply: everything here must be reachable by it.
  fs.chmodSync(root, 0o777);
  images = await makeImageDir(path.join(root, 'images'), { classes: ['red', 'green', 'odd'], perClass: 10 });
  model = await makeLayersModel(path.join(root, 'model'));
  const red = path.join(images, 'red');
  const odd = path.join(images, 'odd');

  const jpeg = await noisyRgb(64, 48, [200, 40, 40]).jpeg({ quality: 90 }).toBuffer();
  fs.writeFileSync(path.join(red, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  BAD['truncated.jpg'] = /^truncated JPEG \(no end-of-image marker\)/;
  const png = await noisyRgb(64, 48, [200, 40, 40]).png().toBuffer();
  fs.writeFileSync(path.join(red, 'cut.png'), png.subarray(0, png.length - 100));
  BAD['cut.png'] = /^truncated PNG/;
  fs.writeFileSync(path.join(red, 'zero bytes.jpg'), '');
  BAD['zero bytes.jpg'] = /empty file \(0 bytes\)/;
  fs.writeFileSync(path.join(red, 'notes.jpg'), 'this is a text file, not a photo\n');
  BAD['notes.jpg'] = /not an image sharp can decode/;
  fs.writeFileSync(path.join(red, 'corrupt.png'), await pngWithCorruptData());
  BAD['corrupt.png'] = /cannot decode/;
  fs.writeFileSync(path.join(red, 'bomb.jpg'), await jpegClaimingSize(30000, 30000));
  BAD['bomb.jpg'] = /larger than \d+ pixels \(possible decompression bomb\)/;
  fs.symlinkSync(path.join(root, 'gone.jpg'), path.join(red, 'broken link.jpg'));
  BAD['broken link.jpg'] = /file not found \(a broken symlink\?\)/;
  // As root without a user that permissions apply to, an unreadable file cannot be made.
  if (!perm.skip) {
    fs.writeFileSync(path.join(red, 'locked.jpg'), jpeg);
    fs.chmodSync(path.join(red, 'locked.jpg'), 0o000);
    BAD['locked.jpg'] = /permission denied/;
  }
  // Hidden files are not images of the class, whatever they hold.
  fs.writeFileSync(path.join(red, '.hidden.jpg'), 'not an image');
  fs.writeFileSync(path.join(red, '._resource-fork.png'), Buffer.alloc(10));
  fs.mkdirSync(path.join(images, '.thumbnails'));
  await noisyRgb(40, 30, [10, 10, 10]).png().toFile(path.join(images, '.thumbnails', 'thumb.png'));

  // A colour inside the CMYK gamut, so the CMYK round trip keeps it.
  const px = () => noisyRgb(48, 32, [180, 120, 90]);
  const good: Array<[string, Promise<Buffer>]> = [
    ['cmyk.jpg', px().toColourspace('cmyk').jpeg().toBuffer()],
    ['gray.png', px().grayscale().png().toBuffer()],
    ['palette.png', px().png({ palette: true, colours: 16 }).toBuffer()],
    ['sixteen bit.png', px().toColourspace('rgb16').png().toBuffer()],
    ['alpha.png', px().ensureAlpha(0.5).png().toBuffer()],
    ['exif rotated.jpg', px().jpeg().withMetadata({ orientation: 6 }).toBuffer()],
    ['progressive.jpg', px().jpeg({ progressive: true }).toBuffer()],
    ['with, comma and "quotes" \'too\'.png', px().png().toBuffer()],
    ['ünïcödé 写真 фото.png', px().png().toBuffer()],
  ];
  for (const [name, buf] of good) {
    fs.writeFileSync(path.join(odd, name), await buf);
    GOOD.push(name);
  }
  // Sanity: the fixtures really are what their names say.
  assert.equal((await sharp(path.join(odd, 'cmyk.jpg')).metadata()).space, 'cmyk');
  assert.equal((await sharp(path.join(odd, 'sixteen bit.png')).metadata()).depth, 'ushort');
  assert.equal((await sharp(path.join(odd, 'palette.png')).metadata()).isPalette, true);
  assert.equal((await sharp(path.join(odd, 'exif rotated.jpg')).metadata()).orientation, 6);
  assert.equal((await sharp(path.join(odd, 'progressive.jpg')).metadata()).isProgressive, true);
});

after(() => fs.rmSync(root, { recursive: true, force: true }));

function args(out: string, extra: string[] = []): string[] {
  return [
    '--image_dir', images, '--tfhub_module', model, '--bottleneck_dir', path.join(out, 'bottlenecks'),
    '--output_graph', path.join(out, 'graph'), '--output_labels', path.join(out, 'labels.txt'),
    '--summary_json', path.join(out, 'summary.json'), '--how_many_training_steps', '20', '--backend', 'cpu', ...extra,
  ];
}

function outDir(name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d, { mode: 0o777 });
  fs.chmodSync(d, 0o777);
  return d;
}

const asUser = perm.user;

test('each bad image is skipped with one warning naming it and why, listed in the summary; the run goes on', async () => {
  const out = outDir('skip');
  const r = await runCliAsync('retrain', args(out), { HOME: root }, asUser);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!hasStack(r.stderr), r.stderr);
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  const failed = new Map<string, string>(summary.bottlenecks.failed.map((f: { file: string; reason: string }) => [path.basename(f.file), f.reason]));
  assert.deepEqual([...failed.keys()].sort(), Object.keys(BAD).sort());
  for (const [name, re] of Object.entries(BAD)) {
    assert.match(failed.get(name)!, re, name);
    const lines = r.stderr.split('\n').filter((l) => l.includes(`${path.join(images, 'red', name)}:`));
    assert.equal(lines.length, 1, `one line for ${name}:\n${r.stderr}`);
    assert.match(lines[0]!, /^WARNING:retrain:Skipping /);
  }
  assert.match(r.stderr, new RegExp(`Bottlenecks: \\d+ computed, 0 cached, ${Object.keys(BAD).length} failed`));
  // Hidden files are not part of any class.
  const listed = Object.values(summary.split).flatMap((byLabel) => Object.values(byLabel as Record<string, string[]>).flat());
  assert.ok(!listed.some((n) => n.startsWith('.')), 'hidden files listed');
  assert.deepEqual(Object.values(summary.classes).sort(), ['green', 'odd', 'red'], 'a hidden folder is not a class');
  // Every good image, odd names included, got a bottleneck and nothing else failed.
  for (const name of GOOD) assert.ok(listed.includes(name), `${name} not in the split`);
  assert.equal(summary.bottlenecks.computed, 3 * 10 + GOOD.length);
  const cached = filesBelow(path.join(out, 'bottlenecks'));
  for (const name of GOOD) assert.ok(cached.some((f) => f.startsWith(`odd/${name}_`)), `no bottleneck for ${name}`);
  assert.ok(fs.existsSync(path.join(out, 'graph', 'model.json')));
  assert.equal(summary.training.steps, 20);
});

test('--strict makes the first bad image fatal: one line naming it, exit 1, no model', async () => {
  const out = outDir('strict');
  const r = await runCliAsync('retrain', args(out, ['--strict']), { HOME: root }, asUser);
  assert.equal(r.status, 1, r.stderr);
  const last = r.stderr.trim().split('\n').at(-1)!;
  assert.match(last, /^retrain: error: .*\/red\/.+: .+ \(--strict makes this fatal\)$/);
  const name = Object.keys(BAD).find((n) => last.includes(`/red/${n}: `));
  assert.ok(name, last);
  assert.match(last, BAD[name]!);
  assert.ok(!hasStack(r.stderr), r.stderr);
  assert.ok(!fs.existsSync(path.join(out, 'graph')));
  // The summary of the failed run carries its error.
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.deepEqual(summary.error, { message: last.replace(/^retrain: error: /, ''), exit_code: 1 });
});

test('a class whose images are all unreadable: one clear line, exit 1', async () => {
  const dir = path.join(root, 'allbad');
  await makeImageDir(dir, { classes: ['red', 'green'], perClass: 6 });
  for (const f of fs.readdirSync(path.join(dir, 'green'))) fs.writeFileSync(path.join(dir, 'green', f), 'garbage');
  const out = outDir('allbad-out');
  const r = await runCliAsync('retrain', [...args(out), '--image_dir', dir]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr.trim().split('\n').at(-1)!, /^retrain: error: no usable training images for class "green": /);
  assert.ok(!hasStack(r.stderr));
});

test('EXIF orientation, CMYK, grey, palette, 16-bit and alpha decode to upright 8-bit RGB with the right colours', async () => {
  const odd = path.join(images, 'odd');
  const rotated = await decodeImage(path.join(odd, 'exif rotated.jpg'));
  assert.deepEqual([rotated.width, rotated.height], [32, 48], 'orientation 6 turns 48x32 upright to 32x48');
  // An asymmetric picture: the left column bright, rotated 90° clockwise it becomes the top row.
  const w = 30;
  const h = 20;
  const px = Buffer.alloc(w * h * 3, 20);
  for (let y = 0; y < h; y++) px.fill(240, y * w * 3, y * w * 3 + 3);
  const file = path.join(root, 'asym.jpg');
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(file);
  const up = await decodeImage(file);
  assert.deepEqual([up.width, up.height], [h, w]);
  const at = (x: number, y: number) => up.data[(y * up.width + x) * 3]!;
  assert.ok(at(up.width / 2, 0) > 200 && at(up.width / 2, up.height - 1) < 60, 'the bright edge ends up on top');

  for (const name of ['cmyk.jpg', 'palette.png', 'sixteen bit.png', 'alpha.png']) {
    const img = await decodeImage(path.join(odd, name));
    assert.equal(img.data.length, img.width * img.height * 3, name);
    const mean = [0, 1, 2].map((c) => img.data.filter((_, i) => i % 3 === c).reduce((a, b) => a + b, 0) / (img.width * img.height));
    // The source colour is about (180, 120, 90).
    assert.ok(Math.abs(mean[0]! - 180) < 20 && Math.abs(mean[1]! - 120) < 20 && Math.abs(mean[2]! - 90) < 20, `${name}: ${mean}`);
  }
  const grey = await decodeImage(path.join(odd, 'gray.png'));
  for (let i = 0; i < 30; i += 3) assert.ok(grey.data[i] === grey.data[i + 1] && grey.data[i] === grey.data[i + 2]);
});
