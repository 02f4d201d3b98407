/**
 * Durable writes. write-file-atomic (which this replaces) issues one fs.write and
 * ignores how many bytes it took: on a full disk the kernel takes what fits, the
 * rest is dropped without an error, and the cut file is renamed into place. Here
 * every write loops until all bytes are in, a write that takes nothing is an
 * error, the size is checked, and the file is fsynced before the rename.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomInt } from 'node:crypto';
import { RetrainError, errorMessage } from '../errors.js';

function shortWrite(done: number, total: number): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`ENOSPC: short write, the disk took ${done} of ${total} bytes`);
  err.code = 'ENOSPC';
  return err;
}

const asBytes = (data: string | Uint8Array): Uint8Array => (typeof data === 'string' ? Buffer.from(data, 'utf8') : data);

/** Writes all of `data` at the file's position; a write that takes no bytes throws ENOSPC. */
export async function writeAll(fh: fs.promises.FileHandle, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.byteLength; ) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done);
    if (bytesWritten <= 0) throw shortWrite(done, data.byteLength);
    done += bytesWritten;
  }
}

/** writeAll for a sync fd (append-only logs such as TensorBoard event files). */
export function writeAllSync(fd: number, data: Uint8Array): void {
  for (let done = 0; done < data.byteLength; ) {
    const n = fs.writeSync(fd, data, done, data.byteLength - done);
    if (n <= 0) throw shortWrite(done, data.byteLength);
    done += n;
  }
}

/** fsync a folder so a rename in it survives a power cut; some file systems refuse, which costs nothing. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r').catch(() => undefined);
  if (!fh) return;
  await fh.sync().catch(() => {});
  await fh.close().catch(() => {});
}

/**
 * A file written whole under a temporary name (`<file>.<digits>`, the form the
 * bottleneck cache's cleanup knows), not yet under its own name: commit() renames
 * it into place, abort() removes it. Lets a caller stage several files and
 * publish them together.
 */
export interface StagedFile {
  readonly file: string;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export async function stageFile(file: string, data: string | Uint8Array): Promise<StagedFile> {
  const bytes = asBytes(data);
  const dir = path.dirname(file);
  let tmp: string | undefined;
  let fh: fs.promises.FileHandle | undefined;
  const fail = async (err: unknown): Promise<never> => {
    await fh?.close().catch(() => {});
    if (tmp) await fs.promises.rm(tmp, { force: true }).catch(() => {});
    throw new RetrainError(`cannot write ${file}: ${errorMessage(err)}`, 1, { cause: err });
  };
  try {
    await fs.promises.mkdir(dir, { recursive: true });
    // Keep the mode of a file being replaced.
    const mode = (await fs.promises.stat(file).catch(() => undefined))?.mode;
    for (;;) {
      tmp = `${file}.${randomInt(2 ** 47)}`;
      try {
        fh = await fs.promises.open(tmp, 'wx', mode === undefined ? 0o666 : mode & 0o7777);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          tmp = undefined;
          throw err;
        }
      }
    }
    await writeAll(fh, bytes);
    await fh.sync();
    const { size } = await fh.stat();
    if (size !== bytes.byteLength) throw shortWrite(size, bytes.byteLength);
    await fh.close();
    fh = undefined;
  } catch (err) {
    return fail(err);
  }
  const staged = tmp;
  return {
    file,
    async commit() {
      try {
        await fs.promises.rename(staged, file);
        tmp = undefined;
        await syncDir(dir);
      } catch (err) {
        await fail(err);
      }
    },
    async abort() {
      await fs.promises.rm(staged, { force: true }).catch(() => {});
    },
  };
}

/** Writes a file whole under a temporary name, fsyncs it and renames it into place; any failure names the path. */
export async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await (await stageFile(file, data)).commit();
}
