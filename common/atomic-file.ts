/**
 * Crash-safe state files. A write goes to a fresh temporary file in the same directory, is
 * fsynced, renamed over the target and the directory is fsynced, so after a crash or power cut
 * a reader sees the old content or the new one, never a mix. Files are created mode 0600.
 * Reads are bounded and never follow a symlink at the target.
 */
import { constants as fsc } from 'node:fs';
import { link, mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CodedError } from './errors.js';

/** Default upper bound on a state file (1 MiB): state files are small; a huge one is corrupt. */
export const DEFAULT_MAX_STATE_BYTES = 1024 * 1024;

export type StateFileErrorCode =
  | 'GH_STATE_WRITE'
  | 'GH_STATE_EXISTS'
  | 'GH_STATE_NO_SPACE'
  | 'GH_STATE_READ_ONLY'
  | 'GH_STATE_READ'
  | 'GH_STATE_TOO_LARGE'
  | 'GH_STATE_NOT_REGULAR'
  | 'GH_STATE_CORRUPT';

/** A state file could not be written or read back. `path` names the file concerned. */
export class StateFileError extends CodedError<StateFileErrorCode> {
  readonly path: string;

  constructor(code: StateFileErrorCode, path: string, message: string, options?: { cause?: unknown }) {
    super(code, `${message}: ${path}`, options);
    this.path = path;
  }
}

export interface AtomicWriteOptions {
  /** Refuse to write more than this many bytes (default 1 MiB). */
  maxBytes?: number;
  /**
   * Replace an existing file (default true). With `false` an existing file is never replaced,
   * also when two writers race: the write fails with `GH_STATE_EXISTS` (for keys, which must
   * not be clobbered).
   */
  overwrite?: boolean;
}

export interface ReadStateOptions {
  /** Refuse to read a file larger than this (default 1 MiB). */
  maxBytes?: number;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

function writeError(path: string, err: unknown): StateFileError {
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new StateFileError('GH_STATE_NO_SPACE', path, `no space left to write state file (${code})`, { cause: err });
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new StateFileError('GH_STATE_READ_ONLY', path, `state directory is not writable (${code})`, { cause: err });
  }
  return new StateFileError('GH_STATE_WRITE', path, `cannot write state file (${code ?? 'error'})`, { cause: err });
}

/**
 * Replace `path` atomically with `data` (temp + fsync + rename + fsync dir, mode 0600).
 * A symlink at `path` is replaced by the file, never written through. With
 * `overwrite: false` the temp is linked into place instead, so an existing `path` is kept.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_STATE_BYTES;
  if (bytes.byteLength > maxBytes) {
    throw new StateFileError('GH_STATE_TOO_LARGE', path, `state of ${bytes.byteLength} bytes exceeds ${maxBytes}`);
  }
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  let tmpGone = false;
  try {
    // O_EXCL|O_NOFOLLOW: never reuse or follow something an attacker placed at the temp name.
    fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    await fh.chmod(0o600); // the umask may only clear bits; make the mode exact anyway
    let off = 0;
    while (off < bytes.byteLength) {
      const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off);
      off += bytesWritten;
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    if (options.overwrite === false) {
      // link(2) fails with EEXIST rather than replace, so racing writers cannot clobber a file.
      try {
        await link(tmp, path);
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') {
          throw new StateFileError('GH_STATE_EXISTS', path, 'file already exists; refusing to overwrite it', { cause: err });
        }
        throw err;
      }
      await unlink(tmp);
    } else {
      // rename(2) replaces a symlink at `path` itself rather than its target.
      await rename(tmp, path);
    }
    tmpGone = true;
    await syncDir(dir);
  } catch (err) {
    if (err instanceof StateFileError) throw err;
    throw writeError(path, err);
  } finally {
    if (fh !== undefined) await fh.close().catch(() => undefined);
    if (!tmpGone) await unlink(tmp).catch(() => undefined);
  }
}

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/**
 * Read a state file, bounded. Returns `undefined` when it does not exist. A symlink at `path`,
 * a non-regular file or an oversized file is an error.
 */
export async function readStateFile(path: string, options: ReadStateOptions = {}): Promise<Uint8Array | undefined> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_STATE_BYTES;
  let fh: FileHandle;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') {
      throw new StateFileError('GH_STATE_NOT_REGULAR', path, 'state file is a symlink; refusing to follow it', { cause: err });
    }
    throw new StateFileError('GH_STATE_READ', path, `cannot read state file (${code ?? 'error'})`, { cause: err });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new StateFileError('GH_STATE_NOT_REGULAR', path, 'state file is not a regular file');
    if (st.size > maxBytes) {
      throw new StateFileError('GH_STATE_TOO_LARGE', path, `state file of ${st.size} bytes exceeds ${maxBytes}`);
    }
    // Read at most maxBytes + 1 so a file growing under us is still caught.
    const buf = Buffer.alloc(maxBytes + 1);
    let off = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
      if (off > maxBytes) {
        throw new StateFileError('GH_STATE_TOO_LARGE', path, `state file exceeds ${maxBytes} bytes`);
      }
    }
    return new Uint8Array(buf.subarray(0, off));
  } catch (err) {
    if (err instanceof StateFileError) throw err;
    throw new StateFileError('GH_STATE_READ', path, `cannot read state file (${errnoCode(err) ?? 'error'})`, { cause: err });
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Write `value` as JSON, atomically. */
export async function writeJsonAtomic(path: string, value: unknown, options: AtomicWriteOptions = {}): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value)}\n`, options);
}

/**
 * Read a JSON state file and hand it to `validate`, which returns the typed value or throws.
 * Returns `undefined` when the file does not exist; anything unparsable is `GH_STATE_CORRUPT`.
 */
export async function readJsonState<T>(
  path: string,
  validate: (value: unknown) => T,
  options: ReadStateOptions = {},
): Promise<T | undefined> {
  const bytes = await readStateFile(path, options);
  if (bytes === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new StateFileError('GH_STATE_CORRUPT', path, 'state file is not valid JSON', { cause: err });
  }
  try {
    return validate(parsed);
  } catch (err) {
    throw new StateFileError('GH_STATE_CORRUPT', path, 'state file content is invalid', { cause: err });
  }
}

/** Remove temporaries a crash left next to `path` (`.<name>.<hex>.tmp`). Best effort. */
export async function removeStaleTemps(path: string): Promise<number> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (name.startsWith(prefix) && /^[0-9a-f]{12}\.tmp$/.test(name.slice(prefix.length))) {
      await unlink(join(dir, name)).then(
        () => { removed += 1; },
        () => undefined,
      );
    }
  }
  return removed;
}

/** Create a state directory (and parents) mode 0700 if missing. */
export async function ensureStateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw writeError(dir, err);
  }
}
