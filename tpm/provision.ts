/**
 * Provisioning of the gateway identity key: an ECDSA P-256 signing key (fixedTPM | fixedParent |
 * sensitiveDataOrigin | userWithAuth | noDA | sign; scheme ECDSA-SHA256) made by TPM2_Create under
 * a storage primary that is re-created from a fixed template whenever needed (never persisted),
 * with a random 32-byte authValue written first to the state directory's tpm-key-auth.json
 * (0600), then loaded and persisted with TPM2_EvictControl. Its private blob exists only in
 * memory. A child key, not a primary, so that TPM2_ObjectChangeAuth can rotate the authValue
 * (tpm/rotate-auth.ts). Every run ends with a self-test signature, so a key that cannot sign (DA
 * lockout of a key without noDA, wrong authValue, broken TPM) is reported.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import type { Logger } from 'winston';
import { silentLogger } from '../common/log/logger.js';
import { sha256 } from '../protocol/index.js';
import type { CheckedTss, EsysContext } from './ffi/checked.js';
import { TpmError } from './errors.js';
import { spkiToPem, toHex } from './key-store.js';
import { p256VerifyDigest } from './p256.js';
import { readTpmKeyRecord, writeTpmKeyRecord, type TpmKeyRecord } from './state-file.js';
import { TpmConnection, type TpmConnectionOptions } from './tpm-connection.js';
import { readKeyAuth, writeKeyAuth } from './key-auth-file.js';
import { checkPersistentHandle, DEFAULT_KEY_HANDLE, handleHex, readPersistentPublic } from './tpm-key-store.js';
import {
  authTpm2b,
  checkIdentityKey,
  KEY_AUTH_BYTES,
  sensitiveCreateWithAuth,
  storageParentTemplate,
  digestTpm2b,
  eccSigningTemplate,
  ecdsaSha256Scheme,
  ecdsaSignatureRaw,
  emptyPcrSelection,
  emptySensitiveCreate,
  emptyTpm2b,
  hasNoDA,
  nullHashcheckTicket,
  p256SpkiDer,
  parseEccPublic,
} from './tpm2-wire.js';

export interface ProvisionOptions extends TpmConnectionOptions {
  /** Persistent handle. Default 0x81010001. */
  handle?: number;
  /** Where tpm-key.json is written. */
  stateDir: string;
  /**
   * Replace whatever is at the handle unless it is the recorded key with noDA: a different key,
   * or the recorded key made without noDA (older releases). The replaced key is destroyed.
   */
  force?: boolean;
  /** Clock for the record's timestamp. */
  now?: () => number;
}

export interface ProvisionResult {
  /** created: handle was free; replaced: --force evicted another key; unchanged: the recorded key is already there. */
  action: 'created' | 'replaced' | 'unchanged';
  handle: number;
  /** Whether the key at the handle has noDA; false only for an `unchanged` key from an older release. */
  noDA: boolean;
  /** Whether the key has an authValue (in tpm-key-auth.json); false only for an `unchanged` key from an older release. */
  hasAuth: boolean;
  publicKeyPem: string;
  spkiDer: Uint8Array;
  thumbprint: Uint8Array;
  /** The record this run replaced, if it named another key (re-register the gateway). */
  previous?: TpmKeyRecord;
}

interface Existing {
  thumbprint: string | undefined;
  noDA: boolean;
  problem: string | undefined;
}

async function inspectExisting(tss: CheckedTss, ctx: EsysContext, handle: number): Promise<{ tr: number; info: Existing } | undefined> {
  let found;
  try {
    found = await readPersistentPublic(tss, ctx, handle);
  } catch (err) {
    if (err instanceof TpmError && err.code === 'GH_TPM_KEY_NOT_FOUND') return undefined;
    throw err;
  }
  try {
    const pub = parseEccPublic(found.publicArea);
    checkIdentityKey(pub, handleHex(handle));
    return { tr: found.tr, info: { thumbprint: toHex(sha256(p256SpkiDer(pub.x, pub.y))), noDA: hasNoDA(pub), problem: undefined } };
  } catch (err) {
    if (err instanceof TpmError && err.code === 'GH_TPM_KEY_ATTRIBUTES') {
      return { tr: found.tr, info: { thumbprint: undefined, noDA: false, problem: err.message } };
    }
    tss.trClose(ctx, found.tr);
    throw err;
  }
}

/** Create (or confirm) the gateway key at `handle` and record it in `stateDir`. */
export async function provisionTpmKey(opts: ProvisionOptions): Promise<ProvisionResult> {
  const handle = opts.handle ?? DEFAULT_KEY_HANDLE;
  checkPersistentHandle(handle);
  const logger: Logger = opts.logger ?? silentLogger();
  const hex = handleHex(handle);
  const record = await readTpmKeyRecord(opts.stateDir);
  const savedAuth = await readKeyAuth(opts.stateDir);
  let auth = savedAuth?.handle === hex ? savedAuth.auth : undefined;
  const conn = new TpmConnection({ ...opts, logger, callTimeoutMs: opts.callTimeoutMs ?? 120_000 });
  try {
    // If the connection drops after EvictControl succeeded, TpmConnection retries this job: the
    // retry must recognise the key this run just persisted instead of calling it a stranger's.
    let ours: { thumbprint: string; action: ProvisionResult['action'] } | undefined;
    const outcome = await conn.run('provision', async (tss, ctx) => {
      let action: ProvisionResult['action'] = 'created';
      const existing = await inspectExisting(tss, ctx, handle);
      if (existing) {
        const { tr, info } = existing;
        if (ours && info.thumbprint === ours.thumbprint) {
          tss.trClose(ctx, tr);
          return { action: ours.action };
        }
        const recorded = info.thumbprint !== undefined && record?.handle === hex && record.thumbprint === info.thumbprint;
        // The recorded key stays, unless it lacks noDA or an authValue and the operator asked
        // (--force) for a new one: that is the upgrade path for keys made by older releases.
        if (recorded && ((info.noDA && auth !== undefined) || !opts.force)) {
          tss.trClose(ctx, tr);
          return { action: 'unchanged' as const };
        }
        if (!recorded && !opts.force) {
          tss.trClose(ctx, tr);
          const what = info.problem ?? `a key (thumbprint ${info.thumbprint}) that ${record ? 'is not the one recorded in' : 'is not recorded in'} ${opts.stateDir}`;
          throw new TpmError('GH_TPM_HANDLE_OCCUPIED', `persistent handle ${hex} already holds ${what}; refusing to replace it without --force`);
        }
        logger.warn(recorded ? 're-creating the recorded key with noDA and an authValue (--force): the public key changes' : 'replacing the key at a persistent handle (--force)', {
          handle: hex,
          oldThumbprint: info.thumbprint,
        });
        await tss.evictControl(ctx, tr, handle);
        try {
          tss.trClose(ctx, tr);
        } catch {
          // ESAPI may already have dropped the evicted object's bookkeeping.
        }
        action = 'replaced';
      }
      // The new authValue is on disk before the key exists: a key whose authValue was lost
      // could never sign. A run that fails after this leaves a file naming no key; the next
      // provisioning replaces it.
      const newAuth = new Uint8Array(randomBytes(KEY_AUTH_BYTES));
      await writeKeyAuth(opts.stateDir, { handle: hex, auth: newAuth });
      auth = newAuth;
      // Leaking a transient would fill the TPM's object slots (0x902); a flush failure must not
      // hide the outcome.
      const flush = (h: number, what: string): Promise<void> =>
        tss.flush(ctx, h).catch((err: unknown) => {
          logger.warn(`could not flush the transient ${what}`, { error: err instanceof Error ? err.message : String(err) });
        });
      const parent = await tss.createPrimaryOwner(ctx, storageParentTemplate(), emptySensitiveCreate(), emptyTpm2b(), emptyPcrSelection());
      try {
        const child = await tss.create(ctx, parent.handle, eccSigningTemplate(new Uint8Array(0)), sensitiveCreateWithAuth(newAuth));
        const pub = parseEccPublic(child.publicWire);
        ours = { thumbprint: toHex(sha256(p256SpkiDer(pub.x, pub.y))), action };
        const loaded = await tss.load(ctx, parent.handle, child.privateWire, child.publicWire);
        try {
          const persistent = await tss.evictControl(ctx, loaded, handle);
          tss.trClose(ctx, persistent);
        } finally {
          await flush(loaded, 'key');
        }
      } finally {
        await flush(parent.handle, 'storage primary');
      }
      return { action };
    });
    // Read the key back from the handle: that is what every later open() will see.
    const { spki, noDA } = await conn.run('read provisioned key', async (tss, ctx) => {
      const { tr, publicArea } = await readPersistentPublic(tss, ctx, handle);
      tss.trClose(ctx, tr);
      const pub = parseEccPublic(publicArea);
      checkIdentityKey(pub, hex);
      return { spki: p256SpkiDer(pub.x, pub.y), noDA: hasNoDA(pub) };
    });
    const thumbprint = sha256(spki);
    const previous = record && record.thumbprint !== toHex(thumbprint) ? record : undefined;
    if (outcome.action !== 'unchanged') {
      const now = opts.now ?? Date.now;
      await writeTpmKeyRecord(opts.stateDir, {
        version: 1,
        handle: hex,
        thumbprint: toHex(thumbprint),
        provisionedAt: new Date(now()).toISOString(),
      });
      logger.info('TPM key provisioned', { handle: hex, thumbprint: toHex(thumbprint), action: outcome.action });
    }
    // Self-test: the key signs and the signature verifies. Runs after the record is written so
    // that a transient failure (e.g. DA lockout) leaves a consistent record behind.
    const testAuth = auth;
    await conn.run('self-test signature', async (tss, ctx) => {
      const { tr } = await readPersistentPublic(tss, ctx, handle);
      try {
        if (testAuth) tss.trSetAuth(ctx, tr, authTpm2b(testAuth));
        const digest = sha256(randomBytes(32));
        const sig = ecdsaSignatureRaw(await tss.sign(ctx, tr, digestTpm2b(digest), ecdsaSha256Scheme(), nullHashcheckTicket()));
        if (!p256VerifyDigest(createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }), digest, sig)) {
          throw new TpmError('GH_TPM_FAILURE', `the key at ${hex} produced a signature that does not verify`);
        }
      } finally {
        tss.trClose(ctx, tr);
      }
    });
    return {
      action: outcome.action,
      handle,
      noDA,
      hasAuth: auth !== undefined,
      publicKeyPem: spkiToPem(spki),
      spkiDer: spki,
      thumbprint,
      ...(previous ? { previous } : {}),
    };
  } finally {
    await conn.close();
  }
}
