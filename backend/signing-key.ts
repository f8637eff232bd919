/**
 * The backend's Ed25519 signing key `sk_S` (protocol-v1 "Parties and keys"): one PKCS#8 PEM file
 * in the data directory, mode 0600, written atomically (temp + fsync + rename, by
 * common/atomic-file.ts). Its key id `kid_S` is derived from the public key, so it never
 * disagrees with it.
 */
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic-file.js';
import { Ed25519Signer } from '../protocol/index.js';
import { BackendKeyError } from './errors.js';

export const SIGNING_KEY_FILE = 'backend-signing-key.pem';

/** `kid_S`: "S-" and the first 8 bytes of SHA-256(pk_S) in hex. */
export function backendKid(publicKeyRaw: Uint8Array): string {
  return `S-${createHash('sha256').update(publicKeyRaw).digest('hex').slice(0, 16)}`;
}

/** Load the signing key from `dataDir`. Refuses a key file readable by group or others. */
export function loadSigningKey(dataDir: string): Ed25519Signer {
  const path = join(dataDir, SIGNING_KEY_FILE);
  let pem: string;
  try {
    const st = lstatSync(path);
    if (!st.isFile()) throw new BackendKeyError('GH_BACKEND_KEY_NOT_FILE', `${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) throw new BackendKeyError('GH_BACKEND_KEY_MODE', `${path} must be mode 0600 (is ${(st.mode & 0o777).toString(8)})`);
    if (st.size > 4096) throw new BackendKeyError('GH_BACKEND_KEY_INVALID', `${path} is too large for a key`);
    pem = readFileSync(path, 'utf8');
  } catch (cause) {
    if (cause instanceof BackendKeyError) throw cause;
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BackendKeyError('GH_BACKEND_KEY_MISSING', `no signing key at ${path}: run "gatehouse-backend init"`, { cause });
    }
    throw new BackendKeyError('GH_BACKEND_KEY_READ', `cannot read ${path}`, { cause });
  }
  try {
    const key = createPrivateKey(pem);
    const probe = Ed25519Signer.fromKeyObject(key, 'probe');
    return Ed25519Signer.fromKeyObject(key, backendKid(probe.publicKeyRaw));
  } catch (cause) {
    throw new BackendKeyError('GH_BACKEND_KEY_INVALID', `${path} is not an Ed25519 private key`, { cause });
  }
}

/**
 * Create the signing key in `dataDir` unless one exists; returns it and whether it is new.
 * Written atomically with mode 0600 (common/atomic-file.ts).
 */
export async function ensureSigningKey(dataDir: string): Promise<{ signer: Ed25519Signer; created: boolean }> {
  const path = join(dataDir, SIGNING_KEY_FILE);
  try {
    lstatSync(path);
    return { signer: loadSigningKey(dataDir), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  await writeFileAtomic(path, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  return { signer: loadSigningKey(dataDir), created: true };
}
