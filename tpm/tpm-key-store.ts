/**
 * The gateway identity key in the TPM: an ECDSA P-256 key persisted at a handle by
 * `provisionTpmKey` (tpm/provision.ts). `open()` checks it is a proper identity key and the one
 * the state directory recorded, and warns about a key made without `noDA`; `sign()` is
 * rate-limited, serialised and self-verified.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'winston';
import { silentLogger } from '../common/log/logger.js';
import { sha256 } from '../protocol/index.js';
import type { Signer } from '../protocol/index.js';
import type { CheckedTss, EsysContext, EsysTr } from './ffi/checked.js';
import { TpmError } from './errors.js';
import { checkDigest, es256Signer, spkiToPem, toHex, type KeyStore, type SignOptions } from './key-store.js';
import { systemClock, type Clock } from '../common/clock.js';
import type { BucketSpec } from '../common/token-bucket.js';
import { DEFAULT_SIGN_RATE_LIMIT, SignRateLimiter } from './rate-limiter.js';
import { p256VerifyDigest } from './p256.js';
import { readTpmKeyRecord } from './state-file.js';
import { keyAuthPath, readKeyAuth } from './key-auth-file.js';
import { TpmConnection, type TpmConnectionOptions } from './tpm-connection.js';
import {
  authTpm2b,
  checkIdentityKey,
  digestTpm2b,
  ecdsaSha256Scheme,
  ecdsaSignatureRaw,
  hasNoDA,
  nullHashcheckTicket,
  p256SpkiDer,
  parseEccPublic,
  rawEcdsaToDer,
} from './tpm2-wire.js';

/** Default persistent handle of the gateway key (owner range, TCG "Registry of reserved handles": 0x8101xxxx). */
export const DEFAULT_KEY_HANDLE = 0x81010001;

export interface TpmKeyStoreOptions extends TpmConnectionOptions {
  /** Persistent handle. Default 0x81010001. */
  handle?: number;
  /**
   * State directory holding tpm-key.json. When given (always, in the daemon), `open()` refuses a
   * key other than the recorded one. `gatehouse tpm show` omits it to show whatever is there.
   */
  stateDir?: string;
  /** Signing rate limit (TPM-FAIL mitigation). Default DEFAULT_SIGN_RATE_LIMIT: 10 back to back, then 1 per 10 s. */
  rateLimit?: BucketSpec;
  /** Clock for the rate limiter (default the system clock). */
  clock?: Clock;
  /**
   * The key's authValue. Default: read from `stateDir`'s tpm-key-auth.json at `open()`, or empty
   * without a state directory or file (keys from older releases).
   */
  authValue?: Uint8Array;
}

/** What to tell an operator whose key has no authValue (provisioned before Gatehouse set one). */
export function noAuthAdvice(handle: string): string {
  return (
    `the TPM key at ${handle} has no authorization value: any member of the tss group (anyone who can reach the TPM) can sign as this gateway. ` +
    'Fix: stop the daemon and run `gatehouse tpm provision --force` as the service user, which re-creates the key with an authValue kept in ' +
    "the state directory (tpm-key-auth.json, 0600). That is a NEW key: register the new public key (`gatehouse tpm show`) in the backend's " +
    'gateway registry before starting the daemon again'
  );
}

/**
 * What to tell an operator whose key lacks `noDA` (provisioned before Gatehouse set it). The key
 * keeps working: refusing it would take a field gateway offline after an upgrade.
 */
export function noDAAdvice(handle: string): string {
  return (
    `the TPM key at ${handle} was provisioned without the noDA attribute: while the TPM is in dictionary-attack lockout ` +
    '(which failed authorizations by any other TPM user can trigger) it cannot sign, so the gateway cannot renew its session. ' +
    'Fix: stop the daemon and run `gatehouse tpm provision --force`, which re-creates the key with noDA. That is a NEW key: ' +
    "the gateway's public key and thumbprint change, so register the new public key (`gatehouse tpm show`) in the backend's " +
    'gateway registry before starting the daemon again'
  );
}

export function handleHex(h: number): string {
  return `0x${(h >>> 0).toString(16).padStart(8, '0')}`;
}

/** Throw GH_TPM_BAD_CONFIG unless `h` is in the owner persistent range (TPM 2.0 Part 2 §7.5). */
export function checkPersistentHandle(h: number): void {
  if (!Number.isInteger(h) || h < 0x81000000 || h > 0x817fffff) {
    throw new TpmError('GH_TPM_BAD_CONFIG', `persistent handle ${Number.isInteger(h) ? handleHex(h) : String(h)} is outside the owner range 0x81000000–0x817fffff`);
  }
}

/** Parse "0x81010001" (or decimal). */
export function parseHandle(s: string): number {
  const v = /^0x[0-9a-f]{1,8}$/i.test(s) ? parseInt(s.slice(2), 16) : /^[0-9]{1,10}$/.test(s) ? Number(s) : NaN;
  checkPersistentHandle(v);
  return v;
}

/** Resolve a persistent handle and read its public area. Closes the ESYS_TR on failure. */
export async function readPersistentPublic(
  tss: CheckedTss,
  ctx: EsysContext,
  handle: number,
): Promise<{ tr: EsysTr; publicArea: Uint8Array }> {
  let tr: EsysTr;
  try {
    tr = await tss.trFromTpmPublic(ctx, handle);
  } catch (err) {
    if (err instanceof TpmError && err.code === 'GH_TPM_KEY_NOT_FOUND') {
      throw new TpmError('GH_TPM_KEY_NOT_FOUND', `no key at persistent handle ${handleHex(handle)}`, { rc: err.rc, text: err.text, cause: err });
    }
    throw err;
  }
  try {
    return { tr, publicArea: await tss.readPublic(ctx, tr) };
  } catch (err) {
    try {
      tss.trClose(ctx, tr);
    } catch {
      // The original error matters more than a bookkeeping failure.
    }
    throw err;
  }
}

/** The key's public half and attributes while the store is open. */
interface OpenTpmKey {
  spki: Uint8Array;
  thumbprint: Uint8Array;
  keyObject: KeyObject;
  noDA: boolean;
  /** The authValue in use (empty for a key without one) and, after an interrupted rotation, the other candidate. */
  auth: Uint8Array;
  nextAuth: Uint8Array | undefined;
  hasAuth: boolean;
}

export class TpmKeyStore implements KeyStore {
  readonly kind = 'tpm' as const;
  readonly handle: number;
  readonly #opts: TpmKeyStoreOptions;
  readonly #logger: Logger;
  readonly #bucket: SignRateLimiter;
  #conn: TpmConnection | undefined;
  #key: OpenTpmKey | undefined;
  #cachedTr: { tr: EsysTr; generation: number } | undefined;
  #opening: Promise<void> | undefined;

  constructor(opts: TpmKeyStoreOptions = {}) {
    this.#opts = opts;
    this.handle = opts.handle ?? DEFAULT_KEY_HANDLE;
    checkPersistentHandle(this.handle);
    this.#logger = opts.logger ?? silentLogger();
    this.#bucket = new SignRateLimiter(opts.rateLimit ?? DEFAULT_SIGN_RATE_LIMIT, opts.clock ?? systemClock);
  }

  /** Concurrent callers share one opening attempt. */
  open(): Promise<void> {
    if (this.#conn) return Promise.resolve();
    this.#opening ??= this.#doOpen().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #doOpen(): Promise<void> {
    const conn = new TpmConnection({ ...this.#opts, logger: this.#logger });
    try {
      const saved = this.#opts.authValue === undefined && this.#opts.stateDir !== undefined ? await readKeyAuth(this.#opts.stateDir) : undefined;
      if (saved && saved.handle !== handleHex(this.handle)) {
        throw new TpmError('GH_TPM_KEY_MISMATCH', `${keyAuthPath(this.#opts.stateDir ?? '')} belongs to the key at ${saved.handle}, not ${handleHex(this.handle)}`);
      }
      const auth = this.#opts.authValue ?? saved?.auth ?? new Uint8Array(0);
      const { spki, noDA } = await conn.run('open key', async (tss, ctx, generation) => {
        const { tr, publicArea } = await readPersistentPublic(tss, ctx, this.handle);
        this.#cachedTr = { tr, generation };
        tss.trSetAuth(ctx, tr, authTpm2b(auth));
        const pub = parseEccPublic(publicArea);
        checkIdentityKey(pub, handleHex(this.handle));
        return { spki: p256SpkiDer(pub.x, pub.y), noDA: hasNoDA(pub) };
      });
      const thumbprint = sha256(spki);
      if (this.#opts.stateDir !== undefined) {
        const record = await readTpmKeyRecord(this.#opts.stateDir);
        if (!record) {
          throw new TpmError('GH_TPM_NOT_PROVISIONED', `no TPM key recorded in ${this.#opts.stateDir}: run \`gatehouse tpm provision\``);
        }
        if (record.thumbprint !== toHex(thumbprint) || record.handle !== handleHex(this.handle)) {
          throw new TpmError(
            'GH_TPM_KEY_MISMATCH',
            `the key at ${handleHex(this.handle)} (thumbprint ${toHex(thumbprint)}) is not the key recorded in ${this.#opts.stateDir} (${record.handle}, ${record.thumbprint})`,
          );
        }
      }
      const hasAuth = auth.length > 0;
      this.#key = {
        spki,
        thumbprint,
        keyObject: createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }),
        noDA,
        auth,
        nextAuth: saved?.next,
        hasAuth,
      };
      this.#conn = conn;
      // Never the authValue itself: only whether there is one.
      this.#logger.info('TPM key opened', { handle: handleHex(this.handle), thumbprint: toHex(thumbprint), tcti: conn.tcti, noDA, authValue: hasAuth });
      if (!noDA) {
        this.#logger.warn(noDAAdvice(handleHex(this.handle)), { handle: handleHex(this.handle), thumbprint: toHex(thumbprint), fix: 'gatehouse tpm provision --force' });
      }
      if (!hasAuth && this.#opts.stateDir !== undefined) {
        this.#logger.warn(noAuthAdvice(handleHex(this.handle)), { handle: handleHex(this.handle), thumbprint: toHex(thumbprint), fix: 'gatehouse tpm provision --force' });
      }
    } catch (err) {
      this.#cachedTr = undefined;
      await conn.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    this.#key = undefined;
    this.#cachedTr = undefined;
    await conn?.close();
  }

  #opened(): { conn: TpmConnection; key: OpenTpmKey } {
    if (!this.#conn || !this.#key) throw new TpmError('GH_TPM_CLOSED', 'the TPM key store is not open');
    return { conn: this.#conn, key: this.#key };
  }

  publicKeySpkiDer(): Uint8Array {
    return this.#opened().key.spki.slice();
  }

  publicKeyPem(): string {
    return spkiToPem(this.#opened().key.spki);
  }

  thumbprint(): Uint8Array {
    return this.#opened().key.thumbprint.slice();
  }

  /** Whether the key has `noDA`, i.e. keeps signing while the TPM is in dictionary-attack lockout. */
  noDA(): boolean {
    return this.#opened().key.noDA;
  }

  /** Whether the key is used with an authValue (false: a key from an older release, see noAuthAdvice). */
  hasAuth(): boolean {
    return this.#opened().key.hasAuth;
  }

  /** The key's ESYS_TR in this context generation; after a reconnect, re-resolved and re-checked. */
  async #keyTr(tss: CheckedTss, ctx: EsysContext, generation: number, key: OpenTpmKey): Promise<EsysTr> {
    const spki = key.spki;
    if (this.#cachedTr?.generation === generation) return this.#cachedTr.tr;
    const { tr, publicArea } = await readPersistentPublic(tss, ctx, this.handle);
    const pub = parseEccPublic(publicArea);
    if (!Buffer.from(p256SpkiDer(pub.x, pub.y)).equals(Buffer.from(spki))) {
      tss.trClose(ctx, tr);
      throw new TpmError('GH_TPM_KEY_MISMATCH', `the key at ${handleHex(this.handle)} changed while the TPM was disconnected`);
    }
    tss.trSetAuth(ctx, tr, authTpm2b(key.auth));
    this.#cachedTr = { tr, generation };
    return tr;
  }

  async sign(digest32: Uint8Array, opts?: SignOptions): Promise<Uint8Array> {
    checkDigest(digest32);
    const { conn, key } = this.#opened();
    this.#bucket.take();
    const wire = await conn.run('sign', async (tss, ctx, generation) => {
      const tr = await this.#keyTr(tss, ctx, generation, key);
      const once = (): Promise<Uint8Array> => tss.sign(ctx, tr, digestTpm2b(digest32), ecdsaSha256Scheme(), nullHashcheckTicket());
      try {
        return await once();
      } catch (err) {
        if (!(err instanceof TpmError && err.code === 'GH_TPM_AUTH_FAILED')) throw err;
        // A rotation that stopped between the TPM swap and its last file write leaves the new
        // value as `next`: the key has noDA, so trying it costs no lockout.
        const next = key.nextAuth;
        if (next) {
          key.nextAuth = undefined;
          tss.trSetAuth(ctx, tr, authTpm2b(next));
          try {
            const sig = await once();
            key.auth = next;
            this.#logger.warn('the TPM key answers to the authorization of an interrupted rotation: run `gatehouse tpm rotate-auth` to finish it', { handle: handleHex(this.handle) });
            return sig;
          } catch {
            tss.trSetAuth(ctx, tr, authTpm2b(key.auth));
          }
        }
        throw new TpmError(
          'GH_TPM_KEY_AUTH_FAILED',
          `the TPM refused the authorization for the key at ${handleHex(this.handle)}: ` +
            (key.hasAuth ? `the authValue in ${this.#opts.stateDir === undefined ? 'use' : keyAuthPath(this.#opts.stateDir)} is not the key's` : 'the key needs an authValue and none was given (run as the service user with --state-dir)'),
          { rc: err.rc, text: err.text, cause: err },
        );
      }
    });
    const raw = ecdsaSignatureRaw(wire);
    // Check before release: a faulty signature can leak the key (fault attacks on ECDSA).
    if (!p256VerifyDigest(key.keyObject, digest32, raw)) {
      throw new TpmError('GH_TPM_FAILURE', 'the TPM returned a signature that does not verify');
    }
    return opts?.format === 'der' ? rawEcdsaToDer(raw) : raw;
  }

  signer(kid: string): Signer {
    return es256Signer(this, kid);
  }
}
