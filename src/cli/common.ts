/** What both commands share: stderr logging, progress bars, flag parsing, exit codes. */
import fs from 'node:fs';
import cliProgress from 'cli-progress';
import { CommanderError, InvalidArgumentError, type Command } from 'commander';
import { InterruptedError, RetrainError, errorMessage } from '../errors.js';
import { wholeNumber } from '../flags/table.js';
import { escapeControls, type Logger } from '../log.js';
import { hasRawBytes, nameFromBytes } from '../util/fsname.js';

/** The package's version, for --version: package.json beside dist/ (dist/src/cli/ → ../../..). */
export function packageVersion(): string {
  const file = new URL('../../../package.json', import.meta.url);
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

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
  const write = (message: string) => {
    // File names may hold newlines or control characters: one message stays one line.
    const line = escapeControls(message);
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
export async function runMain(name: string, verbose: () => boolean, body: () => Promise<number>, interrupt?: Interrupt): Promise<void> {
  keepRunningWithClosedPipes();
  try {
    process.exitCode = await body();
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof RetrainError) {
      process.stderr.write(`${name}: error: ${escapeControls(err.message)}\n`);
      if (verbose()) process.stderr.write(`${err.cause instanceof Error ? err.cause.stack : err.stack}\n`);
      // SIGTERM stops the run the way SIGINT does, but the shell's status says which.
      process.exitCode = err instanceof InterruptedError && interrupt?.exitCode ? interrupt.exitCode : err.exitCode;
      return;
    }
    process.stderr.write(`${name}: error: ${escapeControls(errorMessage(err).split('\n')[0]!)}${verbose() ? '' : ' (run with --verbose for details)'}\n`);
    if (verbose() && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}

/** 128 + the signal number, as a shell reports a process that a signal stopped. */
const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };

export interface Interrupt {
  signal: AbortSignal;
  /** 130 after SIGINT, 143 after SIGTERM; undefined while no signal came. */
  readonly exitCode: number | undefined;
  dispose(): void;
}

/**
 * Ctrl-C or SIGTERM (how Kubernetes and CI stop a job) aborts the returned signal,
 * so the library stops at its next check and keeps what it finished; a second
 * signal quits at once (every file is written atomically, so nothing half-written
 * is trusted later).
 */
export function onInterrupt(): Interrupt {
  const controller = new AbortController();
  let exitCode: number | undefined;
  const handler = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(SIGNAL_EXIT[sig]);
    exitCode = SIGNAL_EXIT[sig];
    controller.abort();
  };
  const signals = Object.keys(SIGNAL_EXIT) as NodeJS.Signals[];
  for (const s of signals) process.on(s, handler);
  return {
    signal: controller.signal,
    get exitCode() {
      return exitCode;
    },
    dispose: () => signals.forEach((s) => process.off(s, handler)),
  };
}

/** Exit status of a command whose reader went away (`| head`): 128 + SIGPIPE, as `cat` gets. */
export const CLOSED_PIPE_EXIT = 141;

let pipesWatched = false;
let stdoutClosed = false;

/**
 * A reader that goes away (`retrain ... 2>&1 | head -2`) must not kill a run: without
 * a listener, Node turns the EPIPE of a log line into an uncaught error. Lines to a
 * closed stream are dropped.
 */
export function keepRunningWithClosedPipes(): void {
  if (pipesWatched) return;
  pipesWatched = true;
  process.stdout.on('error', () => void (stdoutClosed = true));
  process.stderr.on('error', () => {});
}

/** Whether stdout's reader went away; label-image then stops quietly, as `cat` does. */
export function stdoutClosedByReader(): boolean {
  return stdoutClosed;
}

/**
 * process.argv, except that an argument that is not UTF-8 (a file name such as
 * `caf\xe9.jpg`) keeps its bytes, as util/fsname.ts strings: Node decodes it into
 * a name that opens no file. Linux keeps the raw arguments in /proc/self/cmdline.
 */
export function cliArgv(argv: string[] = process.argv): string[] {
  if (!argv.some((a) => a.includes('\ufffd'))) return argv;
  let raw: Buffer;
  try {
    raw = fs.readFileSync('/proc/self/cmdline');
  } catch {
    return argv;
  }
  const parts: Buffer[] = [];
  for (let start = 0; start < raw.length; ) {
    const end = raw.indexOf(0, start);
    parts.push(raw.subarray(start, end < 0 ? raw.length : end));
    start = end < 0 ? raw.length : end + 1;
  }
  const args = parts.slice(parts.length - (argv.length - 2)).map(nameFromBytes);
  // Only when the tail really is our arguments: each UTF-8 one must match Node's.
  if (args.length !== argv.length - 2 || args.some((a, i) => !hasRawBytes(a) && a !== argv[i + 2])) return argv;
  return [argv[0]!, argv[1]!, ...args];
}
