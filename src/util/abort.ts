/** Cooperative interruption: the CLI turns SIGINT into an AbortSignal; the library checks it between units of work. */
import { InterruptedError } from '../errors.js';

export function throwIfInterrupted(signal: AbortSignal | undefined, message = 'interrupted'): void {
  if (signal?.aborted) throw new InterruptedError(message);
}

/**
 * Lets pending I/O and signal handlers run. Stages that compute synchronously call
 * it now and then, or a Ctrl-C would not be seen until they end.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
