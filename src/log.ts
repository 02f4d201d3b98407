/**
 * The library reports through a Logger and never prints: the CLI decides where
 * lines go (stderr, in retrain.py's `INFO:` style) and whether a progress bar shows.
 */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  /** A unit of work done, for progress bars; `total` is fixed per stage. */
  progress?(stage: string, done: number, total: number): void;
}

export const silentLogger: Logger = { info() {}, warn() {} };

/** Collects lines in memory; for tests and for the report. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  info(message: string): void {
    this.lines.push(`INFO: ${message}`);
  }
  warn(message: string): void {
    this.lines.push(`WARNING: ${message}`);
  }
}
