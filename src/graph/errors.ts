/** A module uses ops (or op options) a graph reader or writer does not cover. */
export class UnsupportedOpsError extends Error {
  /** Op names (with the option in parentheses when the op is known but the option is not), sorted. */
  readonly ops: string[];
  constructor(ops: string[], what = 'the converter') {
    const list = [...new Set(ops)].sort();
    super(`${what} does not support ${list.length === 1 ? 'op' : 'ops'} ${list.join(', ')}`);
    this.name = 'UnsupportedOpsError';
    this.ops = list;
  }
}
