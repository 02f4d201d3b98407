/**
 * Errors the CLI turns into one line and an exit status, without a stack trace.
 * Anything else is a bug and keeps its stack.
 */
export class RetrainError extends Error {
  /** Process exit status: 2 for usage errors, 1 for everything else. */
  readonly exitCode: number;
  constructor(message: string, exitCode = 1, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetrainError';
    this.exitCode = exitCode;
  }
}

/** A flag or argument the user got wrong (exit status 2, as argparse). */
export class UsageError extends RetrainError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** One image that cannot be used; the run skips it unless --strict. */
export class ImageError extends RetrainError {
  readonly file: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super(`${file}: ${reason}`, 1, options);
    this.name = 'ImageError';
    this.file = file;
  }
  get reason(): string {
    return this.message.slice(this.file.length + 2);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The run was stopped (Ctrl-C): exit status 130, as a shell reports SIGINT. */
export class InterruptedError extends RetrainError {
  constructor(message: string) {
    super(message, 130);
    this.name = 'InterruptedError';
  }
}
