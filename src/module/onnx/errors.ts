/** A module uses ops (or op options) the ONNX converter does not cover: the caller runs it on tfjs. */
export class UnsupportedOpsError extends Error {
  /** Op names (with the option in parentheses when the op is known but the option is not), sorted. */
  readonly ops: string[];
  constructor(ops: string[]) {
    const list = [...new Set(ops)].sort();
    super(`the ONNX converter does not support ${list.length === 1 ? 'op' : 'ops'} ${list.join(', ')}`);
    this.name = 'UnsupportedOpsError';
    this.ops = list;
  }
}
