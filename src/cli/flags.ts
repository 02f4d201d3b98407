/** Commander options from a flag table (src/flags/), and the typed options back from a parse. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { errorMessage } from '../errors.js';
import { defaultsOf, flagName, type FlagTable, type OptionsOf } from '../flags/table.js';

/** Adds every flag of the table, under its --help group, in table order. */
export function addFlags(cmd: Command, table: FlagTable): Command {
  const defaults = defaultsOf(table) as Record<string, unknown>;
  for (const [key, flag] of Object.entries(table)) {
    const name = flagName(key);
    const opt = new Option(flag.arg ? `${name} ${flag.arg}` : name, flag.help).helpGroup(flag.group);
    if (flag.choices) opt.choices(flag.choices);
    else if (flag.type === 'list') {
      opt.argParser((text: string, previous: unknown) => [...(Array.isArray(previous) ? previous : []), ...(flag.parse(text) as unknown[])]);
    } else if (flag.type !== 'bool') {
      opt.argParser((text: string) => {
        try {
          return flag.parse(text);
        } catch (err) {
          throw new InvalidArgumentError(`${name} ${errorMessage(err)}`);
        }
      });
    }
    const d = defaults[key];
    if (d !== undefined && flag.type !== 'bool') opt.default(d, flag.format(d));
    cmd.addOption(opt);
  }
  return cmd;
}

/** The parsed flags as the library's options: commander keeps snake_case names, the table camelCase. */
export function optionsFromCommand<T extends FlagTable>(cmd: Command, table: T): OptionsOf<T> {
  const parsed = cmd.opts();
  const defaults = defaultsOf(table) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(table)) out[key] = parsed[flagName(key).slice(2)] ?? defaults[key];
  return out as OptionsOf<T>;
}
