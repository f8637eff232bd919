/**
 * The backend's data directory and the files in it are private to the service user: the
 * directory is 0700 on every start (not only when created, so a directory loosened by hand or
 * made by another tool is fixed), and a file is created 0600 from its first byte.
 */
import { chmodSync, closeSync, constants, lstatSync, mkdirSync, openSync } from 'node:fs';
import { RegistryError } from './errors.js';

/** Create `dir` (0700) if missing; set its mode to 0700 if it is anything else. */
export function ensureDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new RegistryError('GH_REGISTRY_DATA_DIR', `${dir} is not a directory`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/**
 * Create `path` empty with mode 0600 unless it exists (O_CREAT|O_EXCL, so it is never readable
 * by others, not even for a moment); an existing file with a looser mode is set to 0600.
 */
export function ensurePrivateFile(path: string): void {
  try {
    closeSync(openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600));
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = lstatSync(path);
  if (!st.isFile()) throw new RegistryError('GH_REGISTRY_OPEN', `${path} is not a regular file`);
  if ((st.mode & 0o077) !== 0) chmodSync(path, st.mode & 0o600);
}
