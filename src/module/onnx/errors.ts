/** A module uses ops (or op options) the converter does not cover: the caller runs it on tfjs. */
export { UnsupportedOpsError } from '../../graph/errors.js';
