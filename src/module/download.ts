/**
 * Fetching a TF.js model (model.json + weight shards) from TF Hub or Kaggle into a
 * local cache, once. The cache entry appears only by an atomic folder rename after
 * every shard has been checked, so a later run never trusts a partial download and
 * needs no network at all.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InterruptedError, RetrainError, UsageError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { writeAtomic } from '../util/fsutil.js';
import { writeAll } from '../util/write.js';
import { checkModelFiles, checkWeightPath, expectedGroupBytes, parseModelJson } from './io.js';

export interface DownloadOptions {
  cacheDir: string;
  /** Per request, redirects and body included; default 60000. */
  timeoutMs?: number;
  /** Aborting it (Ctrl-C) stops the download at once; nothing is cached. */
  signal?: AbortSignal;
  log: Logger;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 10;
const MAX_MODEL_JSON_BYTES = 64 * 1024 * 1024;
/** A temp folder untouched this long belongs to a killed process. */
const STALE_MS = 60 * 60 * 1000;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
const OFFLINE_HINT = 'check the URL, or pass a local model folder with --tfhub_module for offline use';

export function isModuleUrl(spec: string): boolean {
  return /^https?:\/\//i.test(spec);
}

export function defaultModuleCacheDir(): string {
  if (process.env['TFHUB_CACHE_DIR']) return process.env['TFHUB_CACHE_DIR'];
  const cacheHome = process.env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache');
  return path.join(cacheHome, 'retrain-ts', 'modules');
}

/** The model.json URL for a module URL, as tfjs's `loadGraphModel(url, { fromTFHub: true })` builds it. */
export function modelJsonUrl(url: string): string {
  const u = parseUrl(url);
  if (u.pathname.endsWith('.json')) return url;
  return `${url.replace(/\/+$/, '')}/model.json?tfjs-format=file`;
}

/** Like tensorflow_hub's resolver: one folder per module, named by the SHA-1 of its URL. */
export function cacheEntryDir(cacheDir: string, url: string): string {
  return path.join(cacheDir, createHash('sha1').update(url.replace(/\/+$/, '')).digest('hex'));
}

/** Returns the path of model.json in the cache entry for `url`, downloading it first if needed. */
export async function downloadModule(url: string, opts: DownloadOptions): Promise<string> {
  checkTransport(url);
  const jsonUrl = modelJsonUrl(url);
  const entry = cacheEntryDir(opts.cacheDir, url);
  const entryJson = path.join(entry, 'model.json');
  if (fs.existsSync(entry)) {
    try {
      checkModelFiles(entryJson);
      opts.log.info(`Using cached module ${url} from ${entry}`);
      return entryJson;
    } catch (err) {
      opts.log.warn(`cached module ${url} in ${entry} is unusable (${errorMessage(err)}); downloading it again`);
    }
  }

  await mkdirOrFail(opts.cacheDir);
  await removeStaleTemps(opts.cacheDir);
  opts.log.info(`Downloading module ${url} to ${entry}`);
  const tmp = siblingName(entry, 'tmp');
  await mkdirOrFail(tmp);
  try {
    await fetchModel(jsonUrl, tmp, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.signal);
    checkModelFiles(path.join(tmp, 'model.json'));
    const record = { url, modelJsonUrl: jsonUrl, downloadedAt: new Date().toISOString() };
    await writeAtomic(path.join(tmp, 'retrain-download.json'), `${JSON.stringify(record, null, 2)}\n`);
    await moveIntoPlace(tmp, entry);
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
  return entryJson;
}

async function fetchModel(jsonUrl: string, dir: string, timeoutMs: number, userSignal?: AbortSignal): Promise<void> {
  const chunks: Uint8Array[] = [];
  await fetchBody(jsonUrl, MAX_MODEL_JSON_BYTES, timeoutMs, (chunk) => {
    chunks.push(chunk);
  }, userSignal);
  const jsonText = Buffer.concat(chunks).toString('utf8');
  const json = parseModelJson(jsonText, jsonUrl);
  await writeAtomic(path.join(dir, 'model.json'), jsonText);

  let expected: number[];
  try {
    expected = expectedGroupBytes(json.weightsManifest);
  } catch (err) {
    throw new RetrainError(`${jsonUrl}: ${errorMessage(err)}; cannot check its download`, 1, { cause: err });
  }
  for (const [i, group] of json.weightsManifest.entries()) {
    let received = 0;
    for (const p of group.paths) {
      checkWeightPath(p, jsonUrl);
      const file = path.join(dir, p);
      await mkdirOrFail(path.dirname(file));
      const fh = await fs.promises.open(file, 'wx').catch((err: unknown) => {
        throw new RetrainError(`cannot write ${file}: ${errorMessage(err)}`, 1, { cause: err });
      });
      try {
        received += await fetchBody(weightUrl(jsonUrl, p), expected[i] - received, timeoutMs, async (chunk) => {
          await writeAll(fh, chunk).catch((err: unknown) => {
            throw new RetrainError(`cannot write ${file}: ${errorMessage(err)}`, 1, { cause: err });
          });
        }, userSignal);
      } finally {
        await fh.close();
      }
    }
    if (received !== expected[i]) {
      throw new RetrainError(
        `cannot download ${jsonUrl}: weight group ${i + 1} has ${received} bytes but its manifest declares ${expected[i]}; ${OFFLINE_HINT}`,
      );
    }
  }
}

/**
 * As tfjs's http handler: the model.json URL's folder, the manifest path, then its query
 * string. Built from the URL as requested, not where it redirected to: Kaggle redirects
 * each file to its own signed storage URL.
 */
function weightUrl(jsonUrl: string, weightPath: string): string {
  const u = new URL(jsonUrl);
  return `${u.origin}${u.pathname.slice(0, u.pathname.lastIndexOf('/') + 1)}${weightPath}${u.search}`;
}

/**
 * GETs `url`, following redirects by hand so every hop obeys the https rule, and streams
 * the body to `sink`. More than `maxBytes` aborts the transfer at once. Returns the byte count.
 */
async function fetchBody(
  url: string,
  maxBytes: number,
  timeoutMs: number,
  sink: (chunk: Uint8Array) => unknown,
  userSignal?: AbortSignal,
): Promise<number> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = userSignal ? AbortSignal.any([timeout, userSignal]) : timeout;
  const fail = (reason: string, cause?: unknown): RetrainError =>
    userSignal?.aborted
      ? new InterruptedError(`interrupted while downloading ${url}: nothing was cached; run the same command again to start over`)
      : new RetrainError(`cannot download ${url}: ${signal.aborted ? `timed out after ${timeoutMs / 1000} s` : reason}; ${OFFLINE_HINT}`, 1, {
          cause,
        });

  let current = url;
  let response: Response | undefined;
  for (let hop = 0; hop <= MAX_REDIRECTS && !response; hop++) {
    checkTransport(current, url);
    let res: Response;
    try {
      res = await fetch(current, { redirect: 'manual', signal });
    } catch (err) {
      throw fail(describeFetchError(err), err);
    }
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      current = new URL(location, current).href;
    } else if (!res.ok) {
      await res.body?.cancel();
      throw fail(`HTTP ${res.status} ${res.statusText}`.trim());
    } else {
      response = res;
    }
  }
  if (!response) throw fail(`more than ${MAX_REDIRECTS} redirects`);

  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw fail(`the server sends ${declared} bytes where at most ${maxBytes} are expected`);
  }
  let received = 0;
  try {
    for await (const chunk of response.body ?? []) {
      received += chunk.byteLength;
      // Leaving the loop cancels the stream, which cuts the connection.
      if (received > maxBytes) throw fail(`the server sent more than the ${maxBytes} bytes expected`);
      await sink(chunk);
    }
  } catch (err) {
    if (err instanceof RetrainError) throw err;
    throw fail(`the connection broke after ${received} bytes (${describeFetchError(err)})`, err);
  }
  return received;
}

/** Undici reports "fetch failed" / "terminated" and hides the useful part in `cause`. */
function describeFetchError(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause ? `${errorMessage(err)}: ${errorMessage(cause)}` : errorMessage(err);
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new RetrainError(`${url} is not a valid URL`);
  }
}

/** Model weights are code-adjacent input: only https, or http to this machine. */
function checkTransport(target: string, requested = target): void {
  const u = parseUrl(target);
  if (u.protocol === 'https:' || (u.protocol === 'http:' && LOOPBACK_HOSTS.has(u.hostname))) return;
  // The user's own URL is a flag to fix (exit 2); a server redirecting to http is not.
  if (target === requested) {
    throw new UsageError(`--tfhub_module ${target}: use an https:// URL (plain http is only allowed for localhost)`);
  }
  throw new RetrainError(`refusing to follow the redirect from ${requested} to ${target}: plain http is only allowed for localhost`);
}

/**
 * Renames the finished temp folder to the entry. If the entry exists, a valid one came
 * from a concurrent download and wins; an invalid one is moved aside and replaced.
 */
async function moveIntoPlace(tmp: string, entry: string): Promise<void> {
  const moved: string[] = [];
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await fs.promises.rename(tmp, entry);
        return;
      } catch (err) {
        if (!isTakenError(err) || attempt === 3) {
          throw new RetrainError(`cannot move ${tmp} to ${entry}: ${errorMessage(err)}`, 1, { cause: err });
        }
      }
      if (isUsableEntry(entry)) return;
      const old = siblingName(entry, 'old');
      try {
        await fs.promises.rename(entry, old);
        moved.push(old);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new RetrainError(`cannot replace the broken cache entry ${entry}: ${errorMessage(err)}`, 1, { cause: err });
        }
      }
    }
  } finally {
    await Promise.all(moved.map((d) => fs.promises.rm(d, { recursive: true, force: true })));
  }
}

function isTakenError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'EPERM';
}

function isUsableEntry(entry: string): boolean {
  try {
    checkModelFiles(path.join(entry, 'model.json'));
    return true;
  } catch {
    return false;
  }
}

function siblingName(entry: string, kind: 'tmp' | 'old'): string {
  return `${entry}.${kind}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Leftovers of killed downloads; never read, only removed once clearly abandoned. */
async function removeStaleTemps(cacheDir: string): Promise<void> {
  const names = await fs.promises.readdir(cacheDir).catch(() => [] as string[]);
  const now = Date.now();
  for (const name of names) {
    if (!/^[0-9a-f]{40}\.(tmp|old)-\d+-[0-9a-f]+$/.test(name)) continue;
    const dir = path.join(cacheDir, name);
    const stat = await fs.promises.stat(dir).catch(() => undefined);
    if (stat && now - stat.mtimeMs > STALE_MS) await fs.promises.rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

async function mkdirOrFail(dir: string): Promise<void> {
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (err) {
    throw new RetrainError(`cannot create ${dir}: ${errorMessage(err)}`, 1, { cause: err });
  }
}
