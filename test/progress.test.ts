import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { stderrLogger } from '../src/cli/common.js';

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  Object.assign(w, { isTTY, columns: 120, rows: 40 });
  return { stream: w as unknown as NodeJS.WriteStream, text: () => chunks.join('') };
}

/** A busy loop like training's: the event loop never turns between steps. */
function busyRun(log: ReturnType<typeof stderrLogger>, steps: number): void {
  for (let i = 0; i < steps; i++) {
    const until = Date.now() + 1;
    while (Date.now() < until);
    if (i % 50 === 0) log.info(`Step ${i}: Train accuracy = 50.0%`);
    log.progress?.('training', i + 1, steps);
  }
  log.info('Final test accuracy = 90.0% (N=10)');
  log.stop();
}

test('on a TTY: a bar with rate and ETA, and every log line still printed while it runs', () => {
  const ci = process.env['CI'];
  delete process.env['CI'];
  try {
    const { stream, text } = fakeStream(true);
    busyRun(stderrLogger('retrain', stream), 400);
    const out = text();
    for (let i = 0; i < 400; i += 50) assert.ok(out.includes(`INFO:retrain:Step ${i}: Train accuracy = 50.0%`), `step ${i} line printed`);
    assert.ok(out.includes('INFO:retrain:Final test accuracy'));
    const bars = out.match(/training \[[^\]]*\] \d+\/400 \d+% \| [\d.]+\/s \| ETA \d+s/g) ?? [];
    assert.ok(bars.length >= 2, `the bar is redrawn during the loop (${bars.length} times)`);
  } finally {
    if (ci !== undefined) process.env['CI'] = ci;
  }
});

test('not on a TTY (or under CI): the log lines only, no bar', () => {
  const { stream, text } = fakeStream(false);
  const log = stderrLogger('retrain', stream);
  assert.equal(log.progress, undefined);
  busyRun(log, 100);
  assert.equal(text(), ['Step 0', 'Step 50'].map((s) => `INFO:retrain:${s}: Train accuracy = 50.0%\n`).join('') + 'INFO:retrain:Final test accuracy = 90.0% (N=10)\n');
});
