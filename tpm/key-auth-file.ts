/**
 * The identity key's authValue, in the state directory: `tpm-key-auth.json`, written through
 * common/atomic-file.ts (temp + fsync + rename + fsync dir, mode 0600) and refused when anyone but
 * its owner may read it. During a rotation it also holds the next value (`next`), so that a crash
 * between the TPM swap and the final write leaves a file that names the value the TPM has.
 * The value is a secret: it never reaches a log or an error message.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readJsonState, StateFileError, writeFileAtomic } from '../common/atomic-file.js';
import { TpmError } from './errors.js';
import { KEY_AUTH_BYTES } from './tpm2-wire.js';

export const TPM_AUTH_FILE = 'tpm-key-auth.json';

export interface KeyAuth {
  /** Persistent handle the value belongs to, "0x81010001". */
  handle: string;
  /** The key's authValue. */
  auth: Uint8Array;
  /** Set only while a rotation is in progress: the value the key is being changed to. */
  next?: Uint8Array;
}

function authHex(path: string, v: unknown): Uint8Array {
  if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${KEY_AUTH_BYTES * 2}}$`).test(v)) {
    throw new TpmError('GH_TPM_STATE', `${path} is not a Gatehouse TPM key authorization file`);
  }
  return new Uint8Array(Buffer.from(v, 'hex'));
}

function validate(path: string, v: unknown): KeyAuth {
  const r = v as { version?: unknown; handle?: unknown; auth?: unknown; next?: unknown } | null;
  if (typeof r !== 'object' || r === null || r.version !== 1 || typeof r.handle !== 'string' || !/^0x81[0-9a-f]{6}$/.test(r.handle)) {
    throw new TpmError('GH_TPM_STATE', `${path} is not a Gatehouse TPM key authorization file`);
  }
  return { handle: r.handle, auth: authHex(path, r.auth), ...(r.next === undefined ? {} : { next: authHex(path, r.next) }) };
}

/** The file's path in `stateDir`. */
export function keyAuthPath(stateDir: string): string {
  return join(stateDir, TPM_AUTH_FILE);
}

/**
 * Read the authValue, or `undefined` when there is no file (a key provisioned before keys had
 * one). GH_TPM_STATE when it is malformed or readable by group or others.
 */
export async function readKeyAuth(stateDir: string): Promise<KeyAuth | undefined> {
  const path = keyAuthPath(stateDir);
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TpmError('GH_TPM_STATE', `cannot read ${path}`, { cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new TpmError('GH_TPM_STATE', `${path} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it and rotate the key's authorization (gatehouse tpm rotate-auth)`);
  }
  try {
    return await readJsonState(path, (v) => validate(path, v), { maxBytes: 4096 });
  } catch (cause) {
    if (cause instanceof StateFileError && cause.cause instanceof TpmError) throw cause.cause;
    throw new TpmError('GH_TPM_STATE', `cannot read ${path}`, { cause });
  }
}

/** Write the file atomically, mode 0600. */
export async function writeKeyAuth(stateDir: string, value: KeyAuth): Promise<void> {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
  const body = { version: 1, handle: value.handle, auth: hex(value.auth), ...(value.next ? { next: hex(value.next) } : {}) };
  const path = keyAuthPath(stateDir);
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, `${JSON.stringify(body)}\n`);
  } catch (cause) {
    throw new TpmError('GH_TPM_STATE', `cannot write ${path}`, { cause });
  }
}
