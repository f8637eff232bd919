/**
 * The reference peripheral's key file: a small JSON document holding the device id and its
 * Ed25519 seed, written atomically with mode 0600 and refused on load when anyone but the
 * owner can read or write it (the same rule OpenSSH applies to private keys).
 *
 * Format (version 1):
 *   {"format":"gatehouse-peripheral-key","version":1,"dev":"…","seed":"<64 hex>","publicKey":"<64 hex>"}
 * `publicKey` is redundant and checked on load, so a corrupted seed is caught.
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { StateFileError, writeFileAtomic } from '../../common/atomic-file.js';
import { isValidId } from '../../protocol/index.js';
import { CodedError } from '../../common/errors.js';
import { NobleEd25519Signer } from './noble-signer.js';

export const KEY_FILE_FORMAT = 'gatehouse-peripheral-key';
/** A key file is tiny; anything bigger is not ours. */
const MAX_KEY_FILE_BYTES = 4096;

export type KeyFileErrorCode =
  /** The device id is not acceptable. */
  | 'GH_KEYFILE_BAD_DEV'
  /** The key file exists and overwriting was not asked for. */
  | 'GH_KEYFILE_EXISTS'
  /** The file is not a key file of this format. */
  | 'GH_KEYFILE_FORMAT'
  /** The file cannot be read or written. */
  | 'GH_KEYFILE_IO'
  /** The file is accessible by group or others. */
  | 'GH_KEYFILE_PERMISSIONS';

/** A key file could not be written or loaded. */
export class KeyFileError extends CodedError<KeyFileErrorCode> {}

export interface PeripheralKey {
  dev: string;
  signer: NobleEd25519Signer;
}

/**
 * Write the key file through the project's one atomic writer (temp, fsync, rename or link,
 * fsync directory; mode 0600). Without `overwrite`, an existing file is never replaced
 * (GH_KEYFILE_EXISTS), also when two writers race.
 */
async function writeKeyFile(path: string, contents: string, overwrite: boolean): Promise<void> {
  try {
    await writeFileAtomic(path, contents, { overwrite, maxBytes: MAX_KEY_FILE_BYTES });
  } catch (cause) {
    if (cause instanceof StateFileError && cause.code === 'GH_STATE_EXISTS') {
      throw new KeyFileError('GH_KEYFILE_EXISTS', `${path} already exists; refusing to overwrite a key`, { cause });
    }
    throw new KeyFileError('GH_KEYFILE_IO', `cannot write ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** Generate a fresh key for `dev` and write it to `path`. Returns the key. */
export async function generateKeyFile(path: string, dev: string, opts: { overwrite?: boolean } = {}): Promise<PeripheralKey> {
  if (!isValidId(dev)) throw new KeyFileError('GH_KEYFILE_BAD_DEV', 'dev must be 1–64 characters of [A-Za-z0-9._:-]');
  const signer = await NobleEd25519Signer.generate(dev);
  const doc = {
    format: KEY_FILE_FORMAT,
    version: 1,
    dev,
    seed: Buffer.from(signer.exportSeed()).toString('hex'),
    publicKey: Buffer.from(signer.publicKeyRaw).toString('hex'),
  };
  await writeKeyFile(path, `${JSON.stringify(doc)}\n`, opts.overwrite ?? false);
  return { dev, signer };
}

function formatError(path: string, what: string): KeyFileError {
  return new KeyFileError('GH_KEYFILE_FORMAT', `${path}: ${what}`);
}

/**
 * Load a key file. Refuses (GH_KEYFILE_PERMISSIONS) a file that group or others may access,
 * checked on the open descriptor so the file cannot be swapped between check and read.
 */
export async function loadKeyFile(path: string): Promise<PeripheralKey> {
  let text: string;
  let fh: FileHandle;
  try {
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (cause) {
    throw new KeyFileError('GH_KEYFILE_IO', `cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new KeyFileError('GH_KEYFILE_FORMAT', `${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new KeyFileError(
        'GH_KEYFILE_PERMISSIONS',
        `${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: a private key must not be accessible by group or others (chmod 600)`,
      );
    }
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new KeyFileError('GH_KEYFILE_PERMISSIONS', `${path} is owned by uid ${st.uid}, not by this user`);
    }
    if (st.size > MAX_KEY_FILE_BYTES) throw formatError(path, 'too large to be a key file');
    text = await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new KeyFileError('GH_KEYFILE_FORMAT', `${path}: not JSON`, { cause });
  }
  if (doc === null || typeof doc !== 'object') throw formatError(path, 'not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.format !== KEY_FILE_FORMAT || d.version !== 1) throw formatError(path, `not a ${KEY_FILE_FORMAT} version 1 file`);
  if (!isValidId(d.dev)) throw formatError(path, 'dev must be 1–64 characters of [A-Za-z0-9._:-]');
  const hex64 = /^[0-9a-f]{64}$/;
  if (typeof d.seed !== 'string' || !hex64.test(d.seed)) throw formatError(path, 'seed must be 64 lowercase hex digits');
  if (typeof d.publicKey !== 'string' || !hex64.test(d.publicKey)) throw formatError(path, 'publicKey must be 64 lowercase hex digits');
  const signer = await NobleEd25519Signer.fromSeed(new Uint8Array(Buffer.from(d.seed, 'hex')), d.dev);
  if (Buffer.from(signer.publicKeyRaw).toString('hex') !== d.publicKey) {
    throw formatError(path, 'publicKey does not match the seed (corrupted key file)');
  }
  return { dev: d.dev, signer };
}
