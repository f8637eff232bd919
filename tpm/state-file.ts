/**
 * The state directory's record of the provisioned TPM key: a small JSON file written through
 * common/atomic-file.ts (temp + fsync + rename + fsync dir, mode 0600). The key store
 * checks the key in the TPM against it at every open.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readJsonState, StateFileError, writeFileAtomic } from '../common/atomic-file.js';
import { TpmError } from './errors.js';

export const TPM_STATE_FILE = 'tpm-key.json';

export interface TpmKeyRecord {
  version: 1;
  /** Persistent handle, "0x81010001". */
  handle: string;
  /** SHA-256 of the SPKI DER, lowercase hex (protocol-v1 `tpk`). */
  thumbprint: string;
  /** ISO-8601 time of provisioning. */
  provisionedAt: string;
}

/** The record's shape, checked strictly; anything else is GH_TPM_STATE. */
function validateRecord(path: string, v: unknown): TpmKeyRecord {
  const r = v as Partial<TpmKeyRecord> | null;
  if (
    typeof r !== 'object' ||
    r === null ||
    r.version !== 1 ||
    typeof r.handle !== 'string' ||
    !/^0x81[0-9a-f]{6}$/.test(r.handle) ||
    typeof r.thumbprint !== 'string' ||
    !/^[0-9a-f]{64}$/.test(r.thumbprint) ||
    typeof r.provisionedAt !== 'string'
  ) {
    throw new TpmError('GH_TPM_STATE', `${path} is not a Gatehouse TPM key record`);
  }
  return { version: 1, handle: r.handle, thumbprint: r.thumbprint, provisionedAt: r.provisionedAt };
}

/** Read the record, or `undefined` when the file does not exist. Strict: a malformed file throws GH_TPM_STATE. */
export async function readTpmKeyRecord(stateDir: string): Promise<TpmKeyRecord | undefined> {
  const path = join(stateDir, TPM_STATE_FILE);
  try {
    return await readJsonState(path, (v) => validateRecord(path, v), { maxBytes: 4096 });
  } catch (cause) {
    // readJsonState wraps a validator failure as GH_STATE_CORRUPT: surface ours as it is.
    if (cause instanceof StateFileError && cause.cause instanceof TpmError) throw cause.cause;
    if (cause instanceof StateFileError && cause.code === 'GH_STATE_CORRUPT') {
      throw new TpmError('GH_TPM_STATE', `${path} is not valid JSON`, { cause });
    }
    throw new TpmError('GH_TPM_STATE', `cannot read ${path}`, { cause });
  }
}

export async function writeTpmKeyRecord(stateDir: string, record: TpmKeyRecord): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  try {
    await writeFileAtomic(join(stateDir, TPM_STATE_FILE), `${JSON.stringify(record, null, 2)}\n`);
  } catch (cause) {
    throw new TpmError('GH_TPM_STATE', `cannot write ${join(stateDir, TPM_STATE_FILE)}`, { cause });
  }
}
