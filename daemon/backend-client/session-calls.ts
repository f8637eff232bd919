/**
 * The backend client's calls signed with the session key: the signing parameters, the breaker
 * fed by every outcome, and the renewal a 401 for our session key forces (rate-limited).
 */
import type { Logger } from 'winston';
import type { TimerClock } from '../../common/clock.js';
import type { CircuitBreaker } from './breaker.js';
import { BackendError, type BackendErrorKind } from './errors.js';
import type { BackendClientOptions } from './options.js';
import { expectJson, signedRequest } from './wire.js';

/**
 * Takes a breaker slot and the current session for a session-signed call; throws `circuit-open`,
 * or `no-session` (slot released: without a session key the request cannot be signed).
 */
export function acquireSession<S>(breaker: CircuitBreaker, sessions: { current(): S | undefined }): S {
  if (!breaker.tryAcquire()) throw new BackendError('circuit-open', 'backend circuit is open');
  const session = sessions.current();
  if (session === undefined) {
    breaker.release();
    throw new BackendError('no-session', 'no gateway session yet');
  }
  return session;
}

export interface SessionCallsDeps {
  o: Pick<BackendClientOptions, 'gw' | 'http' | 'session' | 'nonce' | 'requestTimeoutMs'>;
  breaker: CircuitBreaker;
  clock: TimerClock;
  log: Logger;
  forcedRenewalMinMs: number;
  /** One HTTP request sent. */
  onRequest: () => void;
  /** A GET failed with this kind. */
  onError: (kind: BackendErrorKind) => void;
}

/** Signing, breaker accounting and forced renewal of session-signed requests. */
export class SessionCalls {
  readonly #d: SessionCallsDeps;
  #lastForcedRenewal = Number.NEGATIVE_INFINITY;

  constructor(deps: SessionCallsDeps) {
    this.#d = deps;
  }

  /** The signing parameters of a request signed by `signer` (the session key). */
  signing(signer: { sign(b: Uint8Array): Promise<Uint8Array> }): Parameters<typeof signedRequest>[4] {
    const o = this.#d.o;
    return {
      keyid: `session:${o.gw}`,
      alg: 'ed25519',
      nowMs: this.#d.clock.now(),
      sign: (base) => signer.sign(base),
      ...(o.nonce !== undefined ? { nonce: o.nonce } : {}),
    };
  }

  /** Feed the breaker; on a 401 for our session key, renew it. */
  noteOutcome(err: BackendError): void {
    this.#d.breaker.failed(err);
    // The backend keeps only the two newest session keys: a 401 for our key means it no longer
    // knows it. Renew, but at most once per `forcedRenewalMinMs` so a persistent fault cannot
    // turn into a stream of TPM signatures.
    const type = err.problem?.type ?? '';
    const session = this.#d.o.session;
    if (err.kind === 'client' && err.status === 401 && /:(unknown-key|bad-signature)$/.test(type) && session.renewNow !== undefined) {
      const now = this.#d.clock.now();
      if (now - this.#lastForcedRenewal >= this.#d.forcedRenewalMinMs) {
        this.#lastForcedRenewal = now;
        this.#d.log.warn('backend does not accept our session key; renewing the session', { type });
        void session.renewNow();
      }
    }
  }

  /** A session-signed GET through the breaker; undefined when no request could be made. */
  async get<T>(path: string, parse: (body: unknown) => T): Promise<T | undefined> {
    const { o, breaker } = this.#d;
    const session = o.session.current();
    if (session === undefined || !breaker.tryAcquire()) return undefined;
    let value: T;
    try {
      const req = await signedRequest(o.http, 'GET', path, undefined, this.signing(session.signer));
      this.#d.onRequest();
      const res = await o.http.request({ ...req, signal: AbortSignal.timeout(o.requestTimeoutMs) });
      value = parse(expectJson(res, 200));
    } catch (e) {
      const err = e instanceof BackendError ? e : new BackendError('response', 'backend GET failed', { cause: e });
      this.#d.onError(err.kind);
      this.noteOutcome(err);
      throw err;
    }
    breaker.success();
    return value;
  }
}
