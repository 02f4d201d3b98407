/**
 * An export is one atomic unit: the new model folder is built beside its target
 * (same parent, so renames stay on one file system), checked, then swapped in:
 * target → backup, staging → target, backup removed. A run that dies at any point
 * leaves the old folder or the new one whole; its leftovers (a staging folder, or a
 * backup with no target) are cleaned up or restored by the next run.
 */
import fs from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { RetrainError, errorMessage } from '../errors.js';
import { syncDir } from '../util/write.js';

const LEFTOVER = /^\.(.+)\.(staging|backup)-(\d+)(?:-\d+)?$/;

const staging = (target: string) => path.join(path.dirname(target), `.${path.basename(target)}.staging-${process.pid}`);
let swaps = 0;
const backup = (target: string) => path.join(path.dirname(target), `.${path.basename(target)}.backup-${process.pid}-${++swaps}`);

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Cleans up after runs that died while exporting to `target`: restores a backup
 * when the target is missing (the run died between its two renames), removes the
 * rest. Leftovers of live runs are theirs.
 */
export function recoverExport(target: string): void {
  const parent = path.dirname(path.resolve(target));
  const base = path.basename(target);
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return;
  }
  const dead = names
    .map((n) => ({ n, m: LEFTOVER.exec(n) }))
    .filter(({ m }) => m && m[1] === base && !alive(Number(m[3])))
    .sort((a, b) => (a.m![2] === b.m![2] ? 0 : a.m![2] === 'backup' ? -1 : 1));
  for (const { n, m } of dead) {
    const p = path.join(parent, n);
    try {
      if (m![2] === 'backup' && !fs.existsSync(target)) fs.renameSync(p, target);
      else fs.rmSync(p, { recursive: true, force: true });
    } catch (err) {
      throw new RetrainError(`cannot clean up ${p}, left by an earlier run that died while exporting: ${errorMessage(err)}; remove it`, 1, { cause: err });
    }
  }
}

/** What may already be in a folder that an export replaces whole; anything else is refused, never dropped. */
export type Replaceable = (name: string) => boolean;

export function foreignEntries(dir: string, replaceable: Replaceable): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => !replaceable(n));
}

/** Paths in a staging folder's errors are reported as the target's: that is the path the user gave. */
function asTarget(err: unknown, stage: string, target: string): unknown {
  if (!(err instanceof Error) || !err.message.includes(stage)) return err;
  const message = err.message.split(stage).join(target);
  return err instanceof RetrainError ? new RetrainError(message, err.exitCode, { cause: err.cause ?? err }) : new Error(message, { cause: err });
}

/**
 * Builds a folder with `build(stagingDir)`, checks it with `check`, and swaps it in
 * place of `target`. `flag` names the target in errors.
 */
export async function publishDir(
  target: string,
  flag: string,
  replaceable: Replaceable,
  build: (dir: string) => Promise<void>,
  check: (dir: string) => void,
): Promise<void> {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target, { throwIfNoEntry: false });
  } catch (err) {
    // ENOTDIR: a file where a parent folder should be.
    throw new RetrainError(`cannot write ${target}: ${errorMessage(err)}`, 1, { cause: err });
  }
  if (st && !st.isDirectory()) throw new RetrainError(`${flag} ${target} is a file: give a folder`);
  const foreign = foreignEntries(target, replaceable);
  if (foreign.length > 0) {
    throw new RetrainError(`${flag} ${target} holds ${foreign.slice(0, 3).join(', ')}, which an export would replace: give an empty or new folder, or one a previous export wrote`);
  }
  recoverExport(target);
  const stage = staging(target);
  try {
    fs.rmSync(stage, { recursive: true, force: true });
    fs.mkdirSync(stage, { recursive: true });
    await build(stage);
    check(stage);
    await syncDir(stage);
    await swapIn(stage, target);
  } catch (err) {
    fs.rmSync(stage, { recursive: true, force: true });
    if (!(err instanceof RetrainError)) throw new RetrainError(`cannot write ${target}: ${errorMessage(asTarget(err, stage, target))}`, 1, { cause: err });
    throw asTarget(err, stage, target);
  }
}

/** target → backup, staging → target; retried if another run put its own target there meanwhile (the last one wins whole). */
async function swapIn(stage: string, target: string): Promise<void> {
  const backups: string[] = [];
  try {
    for (let attempt = 0; ; attempt++) {
      const b = backup(target);
      try {
        fs.renameSync(target, b);
        backups.push(b);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      try {
        fs.renameSync(stage, target);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || attempt > 100) throw err;
      }
    }
  } catch (err) {
    // Put the old folder back if nothing took its place.
    const last = backups.at(-1);
    if (last && !fs.existsSync(target)) fs.renameSync(last, target);
    throw new RetrainError(`cannot write ${target}: ${errorMessage(err)}`, 1, { cause: err });
  }
  await syncDir(path.dirname(path.resolve(target)));
  for (const b of backups) fs.rmSync(b, { recursive: true, force: true });
}

/**
 * Holds a lock on each of `paths` while `fn` runs, so two runs writing the same model
 * or labels do so one after the other: the labels and weights left are one run's.
 * A lock whose holder died goes stale after 10 s and is taken over.
 */
export async function withOutputLocks<T>(paths: string[], onWait: (p: string) => void, fn: () => Promise<T>): Promise<T> {
  // A path inside another (labels inside the model folder) is covered by that one's lock.
  const all = [...new Set(paths.map((p) => path.resolve(p)))];
  const keys = all.filter((p) => !all.some((q) => q !== p && p.startsWith(q + path.sep))).sort();
  const releases: Array<() => Promise<void>> = [];
  let compromised: Error | undefined;
  try {
    for (const p of keys) {
      const lockfilePath = path.join(path.dirname(p), `.${path.basename(p)}.lock`);
      const opts = { lockfilePath, realpath: false, stale: 10_000, onCompromised: (e: Error) => void (compromised ??= e) };
      fs.mkdirSync(path.dirname(p), { recursive: true });
      try {
        releases.push(await lockfile.lock(p, opts));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
        onWait(p);
        releases.push(await lockfile.lock(p, { ...opts, retries: { retries: 6000, factor: 1, minTimeout: 100, maxTimeout: 100 } }));
      }
    }
  } catch (err) {
    await Promise.all(releases.map((r) => r().catch(() => {})));
    throw new RetrainError(`cannot lock ${keys.join(' and ')} for writing: ${errorMessage(err)}`, 1, { cause: err });
  }
  try {
    const out = await fn();
    if (compromised) throw new RetrainError(`lost the lock on ${keys.join(' and ')} while writing (${compromised.message}): run again`);
    return out;
  } finally {
    await Promise.all(releases.map((r) => r().catch(() => {})));
  }
}
