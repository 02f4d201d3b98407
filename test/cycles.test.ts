/**
 * The import graph: no cycles (dpdm), and data flows one way — a stage imports only
 * stages before it, so adding an engine or a cache format touches one stage.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCircular, parseDependencyTree, type DependencyTree } from 'dpdm';
import { tempDir } from './helpers/fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Type imports count too: a type shared by two stages lives in the earlier one. */
async function importGraph(cwd: string): Promise<DependencyTree> {
  return parseDependencyTree('src/**/*.ts', { cwd, context: cwd, transform: false, skipDynamicImports: false });
}

/** The pipeline's order; a file may import its own stage and the ones listed before it. */
const LAYERS: string[][] = [
  ['src/errors.ts', 'src/log.ts', 'src/util'],
  // flatc's output for the TFLite schemas: read and written by src/graph, packed by src/export.
  ['src/export/tflite/generated'],
  ['src/backend.ts'],
  ['src/dataset'],
  ['src/image'],
  // The shared graph: module readers and format writers, used by the module's ONNX engine.
  ['src/module', 'src/graph'],
  ['src/bottleneck'],
  ['src/train'],
  ['src/finetune'],
  ['src/export'],
  ['src/check'],
  ['src/summary', 'src/tensorboard'],
  ['src/report'],
  ['src/flags'],
  ['src/retrain.ts', 'src/label_image.ts'],
  ['src/cli'],
];

function layerOf(file: string): number {
  const i = LAYERS.findIndex((l) => l.some((p) => file === p || file.startsWith(p + '/')));
  assert.notEqual(i, -1, `${file} is in no layer: add its folder to LAYERS in test/cycles.test.ts`);
  return i;
}

test('src has no import cycles', async () => {
  const cycles = parseCircular(await importGraph(ROOT));
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.map((c) => c.join(' -> ')).join('\n')}`);
});

test('the cycle check finds a cycle when there is one', async () => {
  const dir = tempDir('cycles-');
  fs.mkdirSync(path.join(dir, 'src'));
  // The same module resolution as ours: imports name the .js that tsc will emit.
  fs.copyFileSync(path.join(ROOT, 'tsconfig.json'), path.join(dir, 'tsconfig.json'));
  fs.writeFileSync(path.join(dir, 'src/a.ts'), "import { b } from './b.js';\nexport const a = () => b;\n");
  fs.writeFileSync(path.join(dir, 'src/b.ts'), "import type { a } from './a.js';\nexport const b = 1 as unknown as typeof a;\n");
  const cycles = parseCircular(await importGraph(dir));
  assert.equal(cycles.length, 1);
  assert.deepEqual([...cycles[0]!].sort(), ['src/a.ts', 'src/b.ts']);
});

test('stages import only earlier stages (data flows one way)', async () => {
  const tree = await importGraph(ROOT);
  const wrong: string[] = [];
  for (const [file, deps] of Object.entries(tree)) {
    if (!file.startsWith('src/')) continue;
    for (const d of deps ?? []) {
      if (!d.id?.startsWith('src/')) continue;
      if (layerOf(d.id) > layerOf(file)) wrong.push(`${file} -> ${d.id}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('the CLIs load no engine (tfjs, sharp, onnxruntime) before their flags are checked', async () => {
  // Type imports and the dynamic import of the library after parsing are left out: they load nothing at start.
  for (const cli of ['src/cli/retrain.ts', 'src/cli/label_image.ts']) {
    const tree = await parseDependencyTree(cli, { cwd: ROOT, context: ROOT, transform: true, skipDynamicImports: true });
    const heavy = Object.keys(tree).filter((f) => /node_modules\/(@tensorflow|sharp|onnxruntime-node)\//.test(f));
    const importers = heavy.map((h) => `${h} <- ${Object.entries(tree).find(([, deps]) => deps?.some((d) => d.id === h))?.[0]}`);
    assert.deepEqual(importers, [], `${cli} loads an engine at start`);
  }
});
