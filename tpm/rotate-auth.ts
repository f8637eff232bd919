/**
 * Rotation of the identity key's authValue (`gatehouse tpm rotate-auth`). TPM2_ObjectChangeAuth
 * does not change the object in the TPM: it returns the object's private area sealed with the new
 * authValue. So: re-create the storage primary (fixed template, tpm2-wire.ts), ObjectChangeAuth
 * on the persistent key with the current value, TPM2_Load the new private under the primary,
 * evict the old persistent object and persist the loaded one at the same handle, flush both
 * transients. Same key, same public key and thumbprint; the old value stops working.
 *
 * The state file holds the current value and, from before the TPM swap until after it, the next
 * one (`next`), so whichever value the TPM ends up with is on disk (the key store tries `next`
 * when the current one is refused). The new private blob only ever exists in memory.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import type { Logger } from 'winston';
import { silentLogger } from '../common/log/logger.js';
import { sha256 } from '../protocol/index.js';
import type { CheckedTss, EsysContext } from './ffi/checked.js';
import { TpmError } from './errors.js';
import { toHex } from './key-store.js';
import { readKeyAuth, writeKeyAuth } from './key-auth-file.js';
import { p256VerifyDigest } from './p256.js';
import { readTpmKeyRecord } from './state-file.js';
import { TpmConnection, type TpmConnectionOptions } from './tpm-connection.js';
import { checkPersistentHandle, DEFAULT_KEY_HANDLE, handleHex, readPersistentPublic } from './tpm-key-store.js';
import {
  authTpm2b,
  digestTpm2b,
  ecdsaSha256Scheme,
  ecdsaSignatureRaw,
  emptyPcrSelection,
  emptySensitiveCreate,
  emptyTpm2b,
  KEY_AUTH_BYTES,
  nullHashcheckTicket,
  p256SpkiDer,
  parseEccPublic,
  storageParentTemplate,
} from './tpm2-wire.js';

export interface RotateAuthOptions extends TpmConnectionOptions {
  handle?: number;
  /** Holds tpm-key.json and tpm-key-auth.json. */
  stateDir: string;
}

export interface RotateAuthResult {
  handle: number;
  /** Unchanged by the rotation. */
  thumbprint: Uint8Array;
}

/** Sign a random digest with `auth`; true if the TPM accepted the authorization and the signature verifies. */
async function signsWith(tss: CheckedTss, ctx: EsysContext, handle: number, auth: Uint8Array): Promise<boolean> {
  const { tr, publicArea } = await readPersistentPublic(tss, ctx, handle);
  try {
    tss.trSetAuth(ctx, tr, authTpm2b(auth));
    const pub = parseEccPublic(publicArea);
    const digest = sha256(randomBytes(32));
    let wire: Uint8Array;
    try {
      wire = await tss.sign(ctx, tr, digestTpm2b(digest), ecdsaSha256Scheme(), nullHashcheckTicket());
    } catch (err) {
      if (err instanceof TpmError && err.code === 'GH_TPM_AUTH_FAILED') return false;
      throw err;
    }
    const key = createPublicKey({ key: Buffer.from(p256SpkiDer(pub.x, pub.y)), format: 'der', type: 'spki' });
    if (!p256VerifyDigest(key, digest, ecdsaSignatureRaw(wire))) throw new TpmError('GH_TPM_FAILURE', `the key at ${handleHex(handle)} produced a signature that does not verify`);
    return true;
  } finally {
    tss.trClose(ctx, tr);
  }
}

export async function rotateKeyAuth(opts: RotateAuthOptions): Promise<RotateAuthResult> {
  const handle = opts.handle ?? DEFAULT_KEY_HANDLE;
  checkPersistentHandle(handle);
  const hex = handleHex(handle);
  const logger: Logger = opts.logger ?? silentLogger();
  const record = await readTpmKeyRecord(opts.stateDir);
  if (!record || record.handle !== hex) {
    throw new TpmError('GH_TPM_NOT_PROVISIONED', `no TPM key at ${hex} recorded in ${opts.stateDir}: run \`gatehouse tpm provision\``);
  }
  const saved = await readKeyAuth(opts.stateDir);
  if (!saved || saved.handle !== hex) {
    throw new TpmError('GH_TPM_NO_KEY_AUTH', `the key at ${hex} has no authorization value recorded in ${opts.stateDir}; only a new key can get one: \`gatehouse tpm provision --force\``);
  }
  const conn = new TpmConnection({ ...opts, logger, callTimeoutMs: opts.callTimeoutMs ?? 120_000 });
  try {
    // Which value does the TPM hold? After an interrupted rotation it may be `next`.
    const current = await conn.run('rotate-auth: current value', async (tss, ctx) => {
      if (await signsWith(tss, ctx, handle, saved.auth)) return saved.auth;
      if (saved.next && (await signsWith(tss, ctx, handle, saved.next))) return saved.next;
      throw new TpmError('GH_TPM_KEY_AUTH_FAILED', `the TPM refuses the authorization values in ${opts.stateDir} for the key at ${hex}`);
    });
    const next = new Uint8Array(randomBytes(KEY_AUTH_BYTES));
    await writeKeyAuth(opts.stateDir, { handle: hex, auth: current, next });
    const thumbprint = await conn.run('rotate-auth', async (tss, ctx) => {
      const flush = (h: number, what: string): Promise<void> =>
        tss.flush(ctx, h).catch((err: unknown) => {
          logger.warn(`could not flush the transient ${what}`, { error: err instanceof Error ? err.message : String(err) });
        });
      const parent = await tss.createPrimaryOwner(ctx, storageParentTemplate(), emptySensitiveCreate(), emptyTpm2b(), emptyPcrSelection());
      try {
        const { tr, publicArea } = await readPersistentPublic(tss, ctx, handle);
        const pub = parseEccPublic(publicArea);
        const tp = toHex(sha256(p256SpkiDer(pub.x, pub.y)));
        if (tp !== record.thumbprint) {
          tss.trClose(ctx, tr);
          throw new TpmError('GH_TPM_KEY_MISMATCH', `the key at ${hex} (thumbprint ${tp}) is not the key recorded in ${opts.stateDir} (${record.thumbprint})`);
        }
        tss.trSetAuth(ctx, tr, authTpm2b(current));
        let newPrivate: Uint8Array;
        try {
          newPrivate = await tss.objectChangeAuth(ctx, tr, parent.handle, authTpm2b(next));
        } catch (err) {
          tss.trClose(ctx, tr);
          throw err;
        }
        const loaded = await tss.load(ctx, parent.handle, newPrivate, publicArea);
        newPrivate.fill(0);
        try {
          await tss.evictControl(ctx, tr, handle);
          try {
            tss.trClose(ctx, tr);
          } catch {
            // ESAPI may already have dropped the evicted object's bookkeeping.
          }
          tss.trClose(ctx, await tss.evictControl(ctx, loaded, handle));
        } finally {
          await flush(loaded, 'key');
        }
        return tp;
      } finally {
        await flush(parent.handle, 'storage primary');
      }
    });
    await writeKeyAuth(opts.stateDir, { handle: hex, auth: next });
    const ok = await conn.run('rotate-auth: self-test', (tss, ctx) => signsWith(tss, ctx, handle, next));
    if (!ok) throw new TpmError('GH_TPM_KEY_AUTH_FAILED', `the key at ${hex} does not accept its new authorization value`);
    logger.info('TPM key authorization rotated', { handle: hex, thumbprint });
    return { handle, thumbprint: new Uint8Array(Buffer.from(thumbprint, 'hex')) };
  } finally {
    await conn.close();
  }
}
