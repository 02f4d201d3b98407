/**
 * The L2 head (--head l2 / l2_standardized, src/train/l2.ts): the same solution as
 * scikit-learn's multinomial LogisticRegression on the same problem, standardisation
 * folded into one dense layer, the same seed giving the same weights, and a run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { MemoryLogger } from '../src/log.js';
import { defaultRetrainOptions, runRetrain } from '../src/retrain.js';
import { minimizeLbfgs } from '../src/train/lbfgs.js';
import { C_GRID, denseProbabilities, fitL2Softmax, foldStandardization, standardization, trainL2Head } from '../src/train/l2.js';
import { makeImageDir, makeLayersModel, runCli, tempDir, useCpuBackend } from './helpers/fixtures.js';

const gauss = (rng: () => number) => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());

/** Overlapping classes (so the optimum is finite at any C) on inputs of unequal scales and offsets. */
function synthetic(n: number, dim: number, classes: number, seed: string) {
  const rng = seedrandom(seed);
  const centers = Array.from({ length: classes }, () => Array.from({ length: dim }, () => gauss(rng)));
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % classes;
    for (let d = 0; d < dim; d++) x[i * dim + d] = (centers[y[i]!]![d]! + 1.5 * gauss(rng)) * (d + 1) + 3 * d;
  }
  return { x, y, files: Array.from({ length: n }, (_, i) => `r${i}`) };
}

/** A python3 that has scikit-learn: the one on PATH, or Debian's (python3-sklearn). */
function sklearnPython(): string | undefined {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import sklearn'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return undefined;
}
const PY = sklearnPython();

const REFERENCE = `
import json, sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
d = json.load(open(sys.argv[1]))
x = np.array(d['x'], dtype=np.float64).reshape(-1, d['dim'])
y = np.array(d['y'])
out = {}
for name, std in (('raw', False), ('std', True)):
    z = StandardScaler().fit_transform(x) if std else x
    m = LogisticRegression(C=d['c'], multi_class='multinomial', fit_intercept=True, solver='lbfgs', tol=1e-10, max_iter=100000).fit(z, y)
    out[name] = {'proba': m.predict_proba(z).ravel().tolist(), 'coef': m.coef_.ravel().tolist()}
print(json.dumps(out))
`;

test('the L2 head matches scikit-learn\'s multinomial LogisticRegression (same C, fit_intercept), raw and standardised', { skip: PY ? false : 'scikit-learn not found for python3 or /usr/bin/python3: apt-get install python3-sklearn' }, () => {
  const n = 120;
  const dim = 6;
  const classes = 3;
  const c = 0.5;
  const set = synthetic(n, dim, classes, 'sklearn');
  const dir = tempDir('retrain-l2-sklearn-');
  const input = path.join(dir, 'set.json');
  fs.writeFileSync(input, JSON.stringify({ x: Array.from(set.x), y: Array.from(set.y), dim, c }));
  const r = spawnSync(PY!, ['-c', REFERENCE, input], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const ref = JSON.parse(r.stdout) as Record<'raw' | 'std', { proba: number[]; coef: number[] }>;
  for (const [name, standardize] of [['raw', false], ['std', true]] as const) {
    const fit = fitL2Softmax(set, dim, classes, c, standardize);
    assert.ok(fit.converged, `${name}: converged`);
    // Probabilities from our one raw-input layer against scikit-learn's on its own inputs.
    const p = denseProbabilities(fit, set.x, n, dim, classes);
    let worst = 0;
    p.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref[name].proba[i]!))));
    // Our products run on tfjs in float32, which limits how far the line search can go.
    assert.ok(worst < 1e-3, `${name}: probabilities differ by up to ${worst}`);
    if (!standardize) {
      // The weights themselves (coef_ is [classes][dim]; ours [dim][classes]); unique thanks to the penalty.
      let scale = 0;
      let diff = 0;
      for (let k = 0; k < classes; k++) {
        for (let d = 0; d < dim; d++) {
          scale = Math.max(scale, Math.abs(ref.raw.coef[k * dim + d]!));
          diff = Math.max(diff, Math.abs(fit.weights[d * classes + k]! - ref.raw.coef[k * dim + d]!));
        }
      }
      assert.ok(diff < 1e-2 * scale, `raw: weights differ by up to ${diff} (largest ${scale})`);
    }
  }
});

test('folded standardisation: one dense layer on raw inputs gives the probabilities of the layer on standardised inputs', () => {
  const n = 40;
  const dim = 7;
  const classes = 4;
  const set = synthetic(n, dim, classes, 'fold');
  const rng = seedrandom('weights');
  const v = { weights: Float32Array.from({ length: dim * classes }, () => gauss(rng)), biases: Float32Array.from({ length: classes }, () => gauss(rng)) };
  const { mean, sd } = standardization(set.x, n, dim);
  const z = Float32Array.from(set.x, (value, i) => (value - mean[i % dim]!) / sd[i % dim]!);
  const separate = denseProbabilities(v, z, n, dim, classes);
  const folded = denseProbabilities(foldStandardization(v, mean, sd, classes), set.x, n, dim, classes);
  separate.forEach((p, i) => assert.ok(Math.abs(p - folded[i]!) < 1e-5, `row ${Math.floor(i / classes)}: ${p} vs ${folded[i]}`));
  // And the standardisation really was needed: the unfolded layer on raw inputs differs.
  const unfolded = denseProbabilities(v, set.x, n, dim, classes);
  assert.ok(unfolded.some((p, i) => Math.abs(p - separate[i]!) > 0.01));
});

test('L-BFGS finds the minimum of an ill-conditioned quadratic', () => {
  const scales = Float64Array.from({ length: 20 }, (_, i) => 10 ** (i / 6));
  const r = minimizeLbfgs((x, g) => {
    let f = 0;
    for (let i = 0; i < x.length; i++) {
      f += 0.5 * scales[i]! * (x[i]! - 1) ** 2;
      g[i] = scales[i]! * (x[i]! - 1);
    }
    return f;
  }, new Float64Array(20), { gradientTolerance: 1e-9, relativeDecrease: 0 });
  assert.ok(r.converged);
  for (const v of r.x) assert.ok(Math.abs(v - 1) < 1e-8, String(v));
});

test('the same seed gives the same L2 head, C chosen by k-fold on a small set (bit for bit)', () => {
  const training = synthetic(90, 5, 3, 'seed');
  const validation = synthetic(12, 5, 3, 'seed-val');
  const a = trainL2Head(training, validation, 5, 3, { standardize: true, seed: 3 });
  const b = trainL2Head(training, validation, 5, 3, { standardize: true, seed: 3 });
  assert.equal(a.choice.chosen_by, 'k_fold');
  assert.ok(C_GRID.includes(a.choice.c));
  assert.equal(a.choice.candidates.length, C_GRID.length);
  assert.deepEqual(a.values.weights, b.values.weights);
  assert.deepEqual(a.values.biases, b.values.biases);
  assert.deepEqual(a.choice, b.choice);
});

test('retrain --head l2_standardized: the choice is logged and in the summary, and the final test uses the folded head', async () => {
  await useCpuBackend();
  const root = tempDir('retrain-l2-run-');
  const imageDir = await makeImageDir(path.join(root, 'images'), { perClass: 10 });
  const log = new MemoryLogger();
  const { summary } = await runRetrain(
    {
      ...defaultRetrainOptions(),
      imageDir,
      tfhubModule: await makeLayersModel(path.join(root, 'module')),
      moduleCacheDir: path.join(root, 'modules'),
      bottleneckDir: path.join(root, 'bottlenecks'),
      outputGraph: path.join(root, 'out'),
      outputLabels: path.join(root, 'labels.txt'),
      summariesDir: path.join(root, 'logs'),
      testingPercentage: 20,
      validationPercentage: 20,
      skipDatasetCheck: true,
      backend: 'cpu',
      head: 'l2_standardized',
    },
    log,
  );
  const l2 = summary.training!.l2!;
  assert.equal(l2.standardized, true);
  assert.equal(l2.chosen_by, 'k_fold');
  assert.ok(C_GRID.includes(l2.c));
  assert.ok(log.lines.some((l) => l.includes(`L2 head on standardised bottlenecks: C = ${l2.c}, chosen by`)), log.lines.join('\n'));
  // Solid colours far apart: the converged head gets the test set right.
  assert.equal(summary.test!.accuracy, 1);
});

test('--head_c without an L2 head, and --head l2 with an SGD-only flag, are usage errors (exit 2, one line)', () => {
  const a = runCli('retrain', ['--image_dir', 'x', '--head_c', '1']);
  assert.equal(a.status, 2);
  assert.match(a.stderr, /--head_c 1 sets the L2 head's strength: add --head l2/);
  const b = runCli('retrain', ['--image_dir', 'x', '--head', 'l2', '--hidden_units', '8']);
  assert.equal(b.status, 2);
  assert.match(b.stderr, /--hidden_units 8 applies to the SGD head's step loop/);
  assert.equal(b.stderr.trim().split('\n').length, 1);
});
