/** The head's training as a default run does it, timed: shared by bench.ts (real bottlenecks) and head.ts (synthetic rows). */
import { silentLogger } from '../src/log.js';
import { trainHead, type LabeledSet } from '../src/train/index.js';
import { round } from './anchor.js';

/** Wall and CPU seconds (all threads) of `steps` steps at retrain.py's defaults: rate 0.01, an evaluation every 10 steps on 100 validation rows. */
export async function timeHeadTraining(training: LabeledSet, validation: LabeledSet, classCount: number, size: number, steps: number, batchSize: number): Promise<{ s: number; cpu_s: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await trainHead(training, validation, classCount, size, {
    steps,
    learningRate: 0.01,
    trainBatchSize: batchSize,
    validationBatchSize: 100,
    // retrain.py's default interval, so evaluation cost is part of the figure.
    evalStepInterval: 10,
    seed: 0,
    log: silentLogger,
  });
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  r.head.dispose();
  return { s: round(s, 2), cpu_s: round((c.user + c.system) / 1e6, 2) };
}
