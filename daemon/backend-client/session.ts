/**
 * The gateway session (protocol-v1 "session key"): an Ed25519 key pair made in memory,
 * authorised once by the TPM key with `POST /v1/gateways/{gw}/sessions`, which answers a
 * gw-cred signed by `sk_S`. Everything on the hot path signs with the session key, so the TPM
 * signs about once a day. Renewed at half-life; a failed renewal is retried with jittered
 * backoff while the old session is still valid.
 */
import { silentLogger } from '../../common/log/logger.js';
import { join } from 'node:path';
import type { Logger } from 'winston';
import { bytesEqual, Ed25519Signer, parseGatewayCredential, sha256, verifySign1, type GatewayCredential, type Signer, base64UrlDecode, base64UrlEncode } from '../../protocol/index.js';
import type { GatewaySession, SessionProvider } from '../pipeline/types.js';
import { ensureStateDir, readJsonState, writeJsonAtomic } from '../../common/atomic-file.js';
import { backoffMs, systemClock, type TimerClock, type TimerHandle } from '../../common/clock.js';
import type { BackendHttp } from './dispatcher.js';
import { BackendError, SessionError } from './errors.js';
import { badField, expectJson, isObject, signedRequest } from './wire.js';

/** protocol-v1: default session lifetime 24 h. */
export const DEFAULT_SESSION_LIFETIME_S = 24 * 3600;

export interface SessionManagerOptions {
  gw: string;
  http: BackendHttp;
  /** The TPM key as an ES256 signer (`sign` returns r||s over SHA-256 of its input). */
  tpmSigner: Signer;
  /** DER SubjectPublicKeyInfo of the TPM key: the credential's `tpk` must be its SHA-256. */
  tpmPublicKeySpki?: Uint8Array;
  /** The backend's pinned Ed25519 keys, kid → raw 32-byte public key (`pk_S`). */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Directory for `session.json`. */
  stateDir: string;
  /** Requested lifetime in seconds (default 86400). */
  lifetimeSeconds?: number;
  /** Renewal retry backoff: base and cap in ms (defaults 1000 and 300000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Per-request deadline (default 15000 ms). */
  requestTimeoutMs?: number;
  clock?: TimerClock;
  random?: () => number;
  nonce?: () => string;
  logger?: Logger;
}

/** What `session.json` holds: for status and diagnostics; the private key is never stored. */
export interface SessionRecord {
  version: 1;
  gw: string;
  /** The gw-cred, base64url. */
  credential: string;
  spk: string;
  iat: number;
  notAfter: number;
}

function validateRecord(v: unknown): SessionRecord {
  if (!isObject(v) || v.version !== 1) throw new Error('not a version 1 session record');
  const { gw, credential, spk, iat, notAfter } = v;
  if (typeof gw !== 'string' || typeof credential !== 'string' || typeof spk !== 'string') throw new Error('bad string field');
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(notAfter)) throw new Error('bad time field');
  return { version: 1, gw, credential, spk, iat: iat as number, notAfter: notAfter as number };
}

export interface SessionStats {
  tpmSignatures: number;
  renewals: number;
  renewalFailures: number;
  /** Unix seconds the current session expires, 0 when none. */
  notAfter: number;
}

/** Implements SessionProvider: holds the current session and keeps it renewed. */
export class SessionManager implements SessionProvider {
  readonly #o: SessionManagerOptions;
  readonly #clock: TimerClock;
  readonly #log: Logger;
  readonly #file: string;
  #session: (GatewaySession & { iat: number }) | undefined;
  #timer: TimerHandle | undefined;
  #attempt = 0;
  #stopped = true;
  #inFlight: Promise<boolean> | undefined;
  readonly #listeners = new Set<(s: GatewaySession) => void>();
  readonly #counters = { tpmSignatures: 0, renewals: 0, renewalFailures: 0 };

  constructor(options: SessionManagerOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger();
    this.#file = join(options.stateDir, 'session.json');
  }

  /**
   * Start: obtain the first session. Resolves true once held, false if the first attempt
   * failed (retries then continue in the background). Never throws for backend failures.
   */
  async start(): Promise<boolean> {
    this.#stopped = false;
    await ensureStateDir(this.#o.stateDir);
    return this.renewNow();
  }

  /** Stop renewing. The current session stays readable until it expires. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  current(): GatewaySession | undefined {
    const s = this.#session;
    if (s === undefined || this.#clock.now() >= s.notAfter * 1000) return undefined;
    return { signer: s.signer, credential: s.credential, notAfter: s.notAfter };
  }

  /** Called with every new session (for the client, status, metrics). Returns an unsubscribe. */
  onRenewed(listener: (s: GatewaySession) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  stats(): SessionStats {
    return { ...this.#counters, notAfter: this.current()?.notAfter ?? 0 };
  }

  /** The persisted record of the last session, if any (for status / check). */
  async persisted(): Promise<SessionRecord | undefined> {
    return readJsonState(this.#file, validateRecord, { maxBytes: 16 * 1024 });
  }

  /**
   * Renew now (also used when the backend no longer knows the current key). Concurrent calls
   * share one attempt. Resolves true on success.
   */
  renewNow(): Promise<boolean> {
    if (this.#inFlight === undefined) {
      if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#inFlight = this.#attemptRenewal().finally(() => {
        this.#inFlight = undefined;
      });
    }
    return this.#inFlight;
  }

  async #attemptRenewal(): Promise<boolean> {
    try {
      const fresh = await this.#obtain();
      this.#session = fresh;
      this.#attempt = 0;
      this.#counters.renewals += 1;
      await this.#persist(fresh).catch((err: unknown) => {
        // The session works without its record; say so and carry on.
        this.#log.warn('cannot persist session record', { error: (err as Error).message });
      });
      this.#log.info('gateway session renewed', { notAfter: fresh.notAfter });
      const view = { signer: fresh.signer, credential: fresh.credential, notAfter: fresh.notAfter };
      for (const l of this.#listeners) l(view);
      // protocol-v1: renewed at half-life.
      const halfLifeMs = ((fresh.notAfter - fresh.iat) * 1000) / 2;
      this.#schedule(fresh.iat * 1000 + halfLifeMs - this.#clock.now());
      return true;
    } catch (err) {
      this.#counters.renewalFailures += 1;
      const delay = backoffMs(this.#attempt, this.#o.retryBaseMs ?? 1000, this.#o.retryMaxMs ?? 300_000, this.#o.random);
      this.#attempt += 1;
      this.#log.warn('gateway session renewal failed; retrying', {
        error: (err as Error).message,
        code: (err as { code?: string }).code,
        retryInMs: delay,
        validUntil: this.current()?.notAfter,
      });
      this.#log.debug('session renewal failure', { stack: (err as Error).stack });
      this.#schedule(delay);
      return false;
    }
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      void this.renewNow();
    }, Math.max(0, ms));
  }

  async #obtain(): Promise<GatewaySession & { iat: number }> {
    const { gw, http } = this.#o;
    const nowS = Math.floor(this.#clock.now() / 1000);
    const signer = Ed25519Signer.generate(gw); // protocol-v1: welcomes carry kid=gw
    const notAfter = nowS + (this.#o.lifetimeSeconds ?? DEFAULT_SESSION_LIFETIME_S);
    const path = `/v1/gateways/${encodeURIComponent(gw)}/sessions`;
    const req = await signedRequest(http, 'POST', path, { sessionPublicKey: base64UrlEncode(signer.publicKeyRaw), notAfter }, {
      keyid: `tpm:${gw}`,
      alg: 'ecdsa-p256-sha256',
      nowMs: this.#clock.now(),
      ...(this.#o.nonce !== undefined ? { nonce: this.#o.nonce } : {}),
      sign: async (base) => {
        this.#counters.tpmSignatures += 1;
        return this.#o.tpmSigner.sign(base);
      },
    });
    const res = await http.request({ ...req, signal: AbortSignal.timeout(this.#o.requestTimeoutMs ?? 15000) });
    const body = expectJson(res, 201);
    if (!isObject(body)) badField('session answer is not an object');
    const credB64 = body.credential;
    if (typeof credB64 !== 'string') badField('credential is not a string');
    const credBytes = base64UrlDecode(credB64, 1024);
    if (credBytes === undefined) badField('credential is not base64url');
    const cred = this.#checkCredential(credBytes, signer.publicKeyRaw, nowS);
    if (body.notAfter !== cred.exp) badField('notAfter does not match the credential exp');
    return { signer, credential: credBytes, notAfter: cred.exp, iat: cred.iat };
  }

  /** protocol-v1 "Gateway credential": what a peripheral will check, checked here first. */
  #checkCredential(bytes: Uint8Array, spk: Uint8Array, nowS: number): GatewayCredential {
    let signed;
    try {
      signed = parseGatewayCredential(bytes);
    } catch (cause) {
      throw new BackendError('response', 'credential does not parse', { cause });
    }
    const key = this.#o.backendKeys.get(signed.kid);
    if (key === undefined || !verifySign1(signed, key)) {
      throw new SessionError('GH_SESSION_CRED_SIGNATURE', `credential does not verify under a pinned backend key (kid ${signed.kid})`);
    }
    const c = signed.payload;
    if (c.gw !== this.#o.gw) throw new SessionError('GH_SESSION_CRED_GW', `credential is for gateway ${c.gw}`);
    if (!bytesEqual(c.spk, spk)) throw new SessionError('GH_SESSION_CRED_SPK', 'credential names another session key');
    if (this.#o.tpmPublicKeySpki !== undefined && !bytesEqual(c.tpk, sha256(this.#o.tpmPublicKeySpki))) {
      throw new SessionError('GH_SESSION_CRED_TPK', 'credential names another TPM key');
    }
    if (c.exp <= nowS || c.exp <= c.iat) throw new SessionError('GH_SESSION_CRED_EXPIRED', 'credential is already expired');
    return c;
  }

  async #persist(s: GatewaySession & { iat: number }): Promise<void> {
    const signer = s.signer as Ed25519Signer;
    const record: SessionRecord = {
      version: 1,
      gw: this.#o.gw,
      credential: base64UrlEncode(s.credential),
      spk: base64UrlEncode(signer.publicKeyRaw),
      iat: s.iat,
      notAfter: s.notAfter,
    };
    await writeJsonAtomic(this.#file, record, { maxBytes: 16 * 1024 });
  }
}
