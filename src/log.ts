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

// C0/C1 controls, line and paragraph separators, bidi overrides, and lone surrogates
// (bytes of a file name that is not UTF-8: util/fsname.ts).
const UNSAFE = /[\p{Cc}\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]|[\ud800-\udfff]/gu;

/**
 * Makes text safe for one log line: a file name with a newline cannot split its
 * warning or forge a `WARNING:` line of its own. Bytes that are not UTF-8 show as \xNN.
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    if (code >= 0xdc80 && code <= 0xdcff) return `\\x${(code - 0xdc00).toString(16)}`;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
