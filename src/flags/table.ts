/**
 * The flag-table mechanism: a flag is one entry (name, type, default, help, help
 * group, check), and everything else — commander options, defaults, the typed
 * options the library takes, their validation and the report's flags table — is
 * derived from the table. Tables: flags/retrain.ts and flags/label_image.ts.
 */
import { UsageError } from '../errors.js';
import { MAX_INPUT_SIDE } from '../image/limits.js';
import { expandHome } from '../util/fsutil.js';

/** One flag. `T` is the value the library receives. */
export interface Flag<T> {
  /** `int`, `float`, ... : how the text after the flag is parsed. */
  readonly type: 'int' | 'float' | 'string' | 'path' | 'bool' | 'choice' | 'list';
  /** One line of --help. */
  readonly help: string;
  /** The --help heading the flag is listed under. */
  readonly group: string;
  /** The placeholder in --help (`<n>`, `<dir>`, ...); absent for booleans. */
  readonly arg?: string;
  /** The value when the flag is not given; a function when it depends on the machine (a temp folder). */
  readonly default?: T | (() => T);
  /** For `choice`: the allowed values. */
  readonly choices?: readonly string[];
  /** The flag must be given; the text says what to give (a usage error otherwise). */
  readonly required?: string;
  /** Text → value; throws with a message naming what was expected. */
  parse(text: string): T;
  /** Value → the text a user types after the flag (the report shows it). */
  format(value: T): string;
  /** Returns why a parsed value is not allowed (said after the flag and value), or undefined. */
  check?(value: T, flag: string): string | undefined;
}

export type FlagTable = Record<string, Flag<unknown>>;

/** The options a table describes: one field per flag, typed by its parser. */
export type OptionsOf<T extends FlagTable> = { [K in keyof T]: T[K] extends Flag<infer V> ? V : never };

/** A rule over several flags (e.g. split percentages that must add up to under 100). */
export type CrossCheck<O> = (o: O) => string | undefined;

/** `howManyTrainingSteps` → `--how_many_training_steps`: flags keep retrain.py's snake_case names. */
export function flagName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

type Spec<T> = { help: string; group: string; arg?: string; default?: T | (() => T); required?: string; check?: (v: T, flag: string) => string | undefined };

export function wholeNumber(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n)) throw new Error(`needs a whole number, got "${text}"`);
  return n;
}

function finiteNumber(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new Error(`needs a number, got "${text}"`);
  return n;
}

export function int(s: Spec<number> & { default: number | (() => number) }): Flag<number>;
export function int(s: Spec<number>): Flag<number | undefined>;
export function int(s: Spec<number>): Flag<number> {
  return { type: 'int', arg: '<n>', ...s, parse: wholeNumber, format: String };
}

export function float(s: Spec<number> & { default: number }): Flag<number>;
export function float(s: Spec<number>): Flag<number | undefined>;
export function float(s: Spec<number>): Flag<number> {
  return { type: 'float', arg: '<x>', ...s, parse: finiteNumber, format: String };
}

export function string(s: Spec<string> & { default: string }): Flag<string>;
export function string(s: Spec<string>): Flag<string | undefined>;
export function string(s: Spec<string>): Flag<string> {
  return { type: 'string', arg: '<text>', ...s, parse: (t) => t, format: (v) => v };
}

/** A file or folder; `~/` is expanded, and an empty path (an unset shell variable) is refused. */
export function filePath(s: Spec<string> & { default: string | (() => string) }): Flag<string>;
export function filePath(s: Spec<string> & { required: string }): Flag<string>;
export function filePath(s: Spec<string>): Flag<string | undefined>;
export function filePath(s: Spec<string>): Flag<string> {
  const own = s.check;
  return {
    type: 'path',
    arg: '<path>',
    ...s,
    parse: expandHome,
    format: (v) => v,
    check: (v, flag) => (v.trim() === '' ? 'is empty (an unset shell variable?): give a path' : own?.(v, flag)),
  };
}

export function bool(s: Omit<Spec<boolean>, 'arg' | 'default'>): Flag<boolean> {
  return { type: 'bool', ...s, default: false, parse: () => true, format: String };
}

export function choice<const C extends readonly string[]>(choices: C, s: Spec<C[number]> & { default: C[number] }): Flag<C[number]> {
  return { type: 'choice', arg: '<name>', ...s, choices, parse: (t) => t as C[number], format: String };
}

/** A value with its own syntax (a range `0,1`, a list of files). */
export function custom<T>(s: Spec<T> & { type?: 'string' | 'list'; required: string; parse(text: string): T; format(v: T): string }): Flag<T>;
export function custom<T>(s: Spec<T> & { type?: 'string' | 'list'; parse(text: string): T; format(v: T): string }): Flag<T | undefined>;
export function custom<T>(s: Spec<T> & { type?: 'string' | 'list'; parse(text: string): T; format(v: T): string }): Flag<T> {
  return { type: s.type ?? 'string', ...s } as Flag<T>;
}

/**
 * --input_mean/--input_std: one number for every channel, or three (R,G,B) such as
 * torchvision's ImageNet `123.675,116.28,103.53`. Parsed and checked here only, so
 * retrain and label-image read them alike.
 */
export function parseChannelValues(text: string): number[] {
  const parts = text.split(',').map((t) => t.trim());
  const values = parts.map(Number);
  if ((parts.length !== 1 && parts.length !== 3) || parts.some((t) => t === '') || !values.every(Number.isFinite)) {
    throw new Error(`needs one number or three comma-separated numbers (R,G,B), got "${text}"`);
  }
  return values;
}

/** A per-channel value flag; `nonZero` for a divisor (--input_std). */
export function channels(s: Spec<number[]> & { nonZero?: boolean }): Flag<number[] | undefined> {
  const { nonZero, ...spec } = s;
  const flag: Flag<number[]> = {
    type: 'string',
    arg: '<x|r,g,b>',
    ...spec,
    parse: parseChannelValues,
    format: (v) => v.join(','),
    check: (v) =>
      (v.length !== 1 && v.length !== 3) || !v.every(Number.isFinite)
        ? 'must be one number or three comma-separated numbers (R,G,B)'
        : nonZero && v.some((x) => x === 0)
          ? 'must not be 0 (it divides)'
          : undefined,
  };
  return flag as Flag<number[] | undefined>;
}

/** Every flag's value, defaults filled in, for options that were left out. */
export function defaultsOf<T extends FlagTable>(table: T): OptionsOf<T> {
  const out: Record<string, unknown> = {};
  for (const [key, flag] of Object.entries(table)) {
    const d = flag.default;
    out[key] = typeof d === 'function' ? (d as () => unknown)() : d;
  }
  return out as OptionsOf<T>;
}

/**
 * Checks every value once, against its own flag and then the cross-flag rules; the
 * first problem is a UsageError that names the flag. Returns the options unchanged.
 */
export function validateOptions<T extends FlagTable, O extends OptionsOf<T>>(table: T, o: O, rules: ReadonlyArray<CrossCheck<O>> = []): O {
  for (const [key, flag] of Object.entries(table)) {
    const v = (o as Record<string, unknown>)[key];
    const name = flagName(key);
    if (v === undefined) {
      if (flag.required) throw new UsageError(`${name} is required: ${flag.required}`);
      continue;
    }
    if (flag.type === 'int' && !Number.isInteger(v)) throw new UsageError(`${name} ${String(v)} must be a whole number`);
    if (flag.type === 'float' && !Number.isFinite(v)) throw new UsageError(`${name} ${String(v)} must be a number`);
    if (flag.choices && !flag.choices.includes(v as string)) {
      throw new UsageError(`${name} ${String(v)} is not one of ${flag.choices.join(', ')}`);
    }
    const why = flag.check?.(v, name);
    const shown = flag.format(v);
    if (why) throw new UsageError(shown === '' ? `${name} ${why}` : `${name} ${shown} ${why}`);
  }
  for (const rule of rules) {
    const why = rule(o);
    if (why) throw new UsageError(why);
  }
  return o;
}

/**
 * The flags of a run as a user would type them, for the report: every flag with a
 * value, and whether it was given or is the default.
 */
export function describeFlags<T extends FlagTable>(table: T, o: OptionsOf<T>): Array<{ flag: string; value: string; given: boolean }> {
  const defaults = defaultsOf(table) as Record<string, unknown>;
  const rows: Array<{ flag: string; value: string; given: boolean }> = [];
  for (const [key, flag] of Object.entries(table)) {
    const v = (o as Record<string, unknown>)[key];
    if (v === undefined || (flag.type === 'bool' && v === false && defaults[key] === false)) continue;
    const value = flag.type === 'bool' ? '' : flag.format(v);
    const given = flag.format(v) !== (defaults[key] === undefined ? undefined : flag.format(defaults[key]));
    rows.push({ flag: flagName(key), value, given });
  }
  return rows;
}

/** Positive whole number. */
export const above0 = (v: number): string | undefined => (Number.isInteger(v) && v > 0 ? undefined : 'must be a whole number above 0');
/** 0 to turn something off, or a positive whole number. */
export const zeroOrMore = (off: string) => (v: number): string | undefined =>
  Number.isInteger(v) && v >= 0 ? undefined : `must be 0 (${off}) or a whole number above 0`;
/** --input_height/--input_width: a whole number from 1 to MAX_INPUT_SIDE. */
export const inputSide = (v: number): string | undefined =>
  Number.isInteger(v) && v > 0 && v <= MAX_INPUT_SIDE ? undefined : `must be a whole number from 1 to ${MAX_INPUT_SIDE}`;
/** A fraction in [0, 1). */
export const fraction = (v: number): string | undefined => (v >= 0 && v < 1 ? undefined : 'must be at least 0 and below 1');
/** A percentage in [0, 100]. */
export const percentage = (v: number): string | undefined => (v >= 0 && v <= 100 ? undefined : 'is out of range: give a percentage from 0 to 100');
/** A rate above 0 that float32, which training computes in, can hold: 1e39 is finite as a double only. */
export const positiveRate = (v: number, flag: string): string | undefined =>
  !(v > 0) ? 'must be a number above 0' : Number.isFinite(Math.fround(v)) ? undefined : `is beyond float32 range (training computes in float32): lower ${flag}`;
/** A batch of 1 to `max`, or -1 (the whole set) where `wholeSet`. */
export const batchOf = (max: number, wholeSet = false) => (v: number): string | undefined => {
  if (wholeSet && v === -1) return undefined;
  if (!Number.isInteger(v) || v <= 0) return wholeSet ? 'must be above 0, or -1 for the whole set' : 'must be a whole number above 0';
  return v > max ? `is too large: give at most ${max}${wholeSet ? ', or -1 for the whole set' : ''}` : undefined;
};

/** --input_range MIN,MAX. */
export function parseRange(text: string, flag = '--input_range'): [number, number] {
  const parts = text.split(',').map((s) => Number(s.trim()));
  if (parts.length !== 2 || !parts.every(Number.isFinite) || parts[0]! >= parts[1]!) {
    throw new UsageError(`${flag} "${text}" is not a range: give two numbers MIN,MAX with MIN < MAX, e.g. 0,1 or -1,1`);
  }
  return [parts[0]!, parts[1]!];
}
