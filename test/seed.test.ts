import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Head } from '../src/train/index.js';
import { useCpuBackend } from './helpers/fixtures.js';

before(useCpuBackend);

/** Initial weights of a fresh head (one at a time: its variable names are global). */
async function initialWeights(seed: number): Promise<Float32Array> {
  const head = new Head(64, 5, seed);
  const { weights } = await head.values();
  head.dispose();
  return weights;
}

// tfjs's random ops ignore a seed of 0, and 0 is the default --seed.
test('the head starts from the same weights for the same seed, including seed 0', async () => {
  for (const seed of [0, 1, 12345]) assert.deepEqual(await initialWeights(seed), await initialWeights(seed), `seed ${seed}`);
  assert.notDeepEqual(await initialWeights(0), await initialWeights(1));
});
