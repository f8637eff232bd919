/**
 * Provisioning of the gateway identity key: an ECDSA P-256 signing key made by TPM2_CreatePrimary
 * in the owner hierarchy (fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA |
 * sign; scheme ECDSA-SHA256) and persisted with TPM2_EvictControl. A primary key needs no parent
 * and no stored private blob; a random `unique` value makes every provisioning a new key. Every
 * run ends with a self-test signature, so a key that cannot sign (DA lockout of a key without
 * noDA, broken TPM) is reported.
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
import { checkPersistentHandle, DEFAULT_KEY_HANDLE, handleHex, readPersistentPublic } from './tpm-key-store.js';
import {
  checkIdentityKey,
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
        // The recorded key stays, unless it lacks noDA and the operator asked (--force) for a
        // new one: that is the upgrade path for keys provisioned by older releases.
        if (recorded && (info.noDA || !opts.force)) {
          tss.trClose(ctx, tr);
          return { action: 'unchanged' as const };
        }
        if (!recorded && !opts.force) {
          tss.trClose(ctx, tr);
          const what = info.problem ?? `a key (thumbprint ${info.thumbprint}) that ${record ? 'is not the one recorded in' : 'is not recorded in'} ${opts.stateDir}`;
          throw new TpmError('GH_TPM_HANDLE_OCCUPIED', `persistent handle ${hex} already holds ${what}; refusing to replace it without --force`);
        }
        logger.warn(recorded ? 're-creating the recorded key with noDA (--force): the public key changes' : 'replacing the key at a persistent handle (--force)', {
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
      const created = await tss.createPrimaryOwner(
        ctx,
        eccSigningTemplate(new Uint8Array(randomBytes(32))),
        emptySensitiveCreate(),
        emptyTpm2b(),
        emptyPcrSelection(),
      );
      const pub = parseEccPublic(created.publicArea);
      ours = { thumbprint: toHex(sha256(p256SpkiDer(pub.x, pub.y))), action };
      try {
        const persistent = await tss.evictControl(ctx, created.handle, handle);
        tss.trClose(ctx, persistent);
      } finally {
        // The transient copy is no longer needed; leaking it would fill the TPM's object slots
        // (0x902). A failure here must not hide the EvictControl outcome.
        await tss.flush(ctx, created.handle).catch((err: unknown) => {
          logger.warn('could not flush the transient primary', { error: err instanceof Error ? err.message : String(err) });
        });
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
    await conn.run('self-test signature', async (tss, ctx) => {
      const { tr } = await readPersistentPublic(tss, ctx, handle);
      try {
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
      publicKeyPem: spkiToPem(spki),
      spkiDer: spki,
      thumbprint,
      ...(previous ? { previous } : {}),
    };
  } finally {
    await conn.close();
  }
}
