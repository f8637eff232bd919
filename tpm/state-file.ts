/**
 * The state directory's record of the provisioned TPM key: a small JSON file written
 * atomically (temp file, fsync, rename, fsync of the directory) with mode 0600. The
 * key store checks the key in the TPM against it at every open.
 */
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
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

/** Write `data` to `path` atomically with mode 0600. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = join(path, '..');
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  // Make the rename itself durable.
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Read the record, or `undefined` when the file does not exist. Strict: a malformed file throws GH_TPM_STATE. */
export async function readTpmKeyRecord(stateDir: string): Promise<TpmKeyRecord | undefined> {
  const path = join(stateDir, TPM_STATE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TpmError('GH_TPM_STATE', `cannot read ${path}`, { cause: err });
  }
  if (text.length > 4096) throw new TpmError('GH_TPM_STATE', `${path} is too large`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw new TpmError('GH_TPM_STATE', `${path} is not valid JSON`, { cause });
  }
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

export async function writeTpmKeyRecord(stateDir: string, record: TpmKeyRecord): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(stateDir, TPM_STATE_FILE), `${JSON.stringify(record, null, 2)}\n`);
}
