/** What both commands share: stderr logging, progress bars, flag parsing, exit codes. */
import cliProgress from 'cli-progress';
import { CommanderError, InvalidArgumentError, type Command } from 'commander';
import { RetrainError, errorMessage } from '../errors.js';
import { wholeNumber } from '../flags/table.js';
import type { Logger } from '../log.js';

/** retrain.py's `INFO:tensorflow:` style, under our own name; a progress bar only on a TTY. */
export function stderrLogger(name: string, stream: NodeJS.WriteStream = process.stderr): Logger & { stop(): void } {
  const tty = stream.isTTY === true && !process.env['CI'];
  let multi: cliProgress.MultiBar | undefined;
  let bar: cliProgress.SingleBar | undefined;
  let barStage = '';
  let startedAt = 0;
  let startDone = 0;
  let drawnAt = 0;
  // cli-progress redraws (and flushes logged lines) from a timer, which never fires while
  // a stage keeps the event loop busy, and stop() drops unflushed lines: redraw ourselves.
  const draw = () => {
    drawnAt = Date.now();
    multi?.update();
  };
  const write = (line: string) => {
    if (multi) {
      multi.log(line + '\n');
      draw();
    } else stream.write(line + '\n');
  };
  const stop = () => {
    if (multi) draw();
    multi?.stop();
    multi = undefined;
    bar = undefined;
  };
  return {
    info: (m) => write(`INFO:${name}:${m}`),
    warn: (m) => write(`WARNING:${name}:${m}`),
    progress: tty
      ? (stage, done, total) => {
          if (stage !== barStage) {
            stop();
            barStage = stage;
            multi = new cliProgress.MultiBar(
              // A long ETA window: per-step times vary a lot on a shared machine.
              { stream, format: `${stage} [{bar}] {value}/{total} {percentage}% | {rate}/s | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true, etaBuffer: 200 },
              cliProgress.Presets.shades_classic,
            );
            bar = multi.create(total, 0, { rate: '0' });
            startedAt = Date.now();
            startDone = done;
          }
          // The first call reports work already done when the clock starts: rate from there on.
          const elapsed = (Date.now() - startedAt) / 1000;
          bar!.update(done, { rate: elapsed >= 0.25 ? ((done - startDone) / elapsed).toFixed(1) : '-' });
          if (Date.now() - drawnAt >= 100) draw();
          if (done >= total) {
            stop();
            barStage = '';
          }
        }
      : undefined,
    stop,
  };
}

/** A whole-number option for scripts outside the flag tables (bench/): the tables' own parser. */
export function intArg(flag: string) {
  return (v: string): number => {
    try {
      return wholeNumber(v);
    } catch (err) {
      throw new InvalidArgumentError(`${flag} ${errorMessage(err)}`);
    }
  };
}

/** Commander reports its own errors; we make them exit 2 like argparse, with a pointer to --help. */
export function configureCommand(cmd: Command, name: string): Command {
  return cmd
    .name(name)
    .exitOverride()
    .allowExcessArguments(false)
    .configureOutput({
      outputError: (str, write) => write(`${name}: ${str.trim().replace(/^error: /, 'error: ')} (see ${name} --help)\n`),
    });
}

/**
 * Runs a command body: a RetrainError becomes one line and its exit status; anything
 * else is a bug, reported in one line too unless --verbose asks for the stack.
 */
export async function runMain(name: string, verbose: () => boolean, body: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await body();
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof RetrainError) {
      process.stderr.write(`${name}: error: ${err.message}\n`);
      if (verbose()) process.stderr.write(`${err.cause instanceof Error ? err.cause.stack : err.stack}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`${name}: error: ${errorMessage(err).split('\n')[0]}${verbose() ? '' : ' (run with --verbose for details)'}\n`);
    if (verbose() && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}

/**
 * Ctrl-C aborts the returned signal, so the library stops at its next check and
 * keeps what it finished; a second Ctrl-C quits at once (every file is written
 * atomically, so nothing half-written is trusted later).
 */
export function onInterrupt(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const handler = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', handler);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', handler) };
}
