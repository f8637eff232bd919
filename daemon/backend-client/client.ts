/**
 * The backend client as the pipeline sees it (HelloVerifier, RevocationSource).
 *
 * - Hellos coalesce into `POST /v1/verify` batches signed with the session key (protocol-v1
 *   "Backend HTTP API"): a batch leaves when it holds `maxBatch` hellos or `maxWaitMs` passed.
 * - At most `maxInFlight` requests at once; at most `maxQueue` hellos waiting, beyond that a
 *   hello is answered `busy` at once.
 * - Network errors and 5xx are retried with jittered exponential backoff, within each hello's
 *   deadline; a circuit breaker stops hammering a dead backend.
 * - protocol-v1 "Offline": when the backend cannot be reached the hello is verified locally
 *   under the dpk of an unexpired lease issued to this gateway; otherwise `backend-unavailable`.
 * - Revocations are polled; revoked devices lose their leases and listeners are told. After
 *   `maxFailedRevocationPolls` failed polls in a row no offline welcome is given until one succeeds.
 * Every verify() call gets exactly one answer; it never throws.
 */
import { silentLogger } from '../../common/log/logger.js';
import type { Logger } from 'winston';
import { MAX_MESSAGE_BYTES, base64UrlEncode } from '../../protocol/index.js';
import type { HelloVerifier, RevocationSource, VerifyRequest, VerifyResult } from '../pipeline/types.js';
import { ensureStateDir } from '../../common/atomic-file.js';
import { RevocationFeed } from './revocations.js';
import { CircuitBreaker } from './breaker.js';
import { Batcher, type BatchItem } from './batcher.js';
import { backoffMs, systemClock, type TimerClock } from '../../common/clock.js';
import { BackendError, type BackendErrorKind } from './errors.js';
import { LeaseCache } from './lease-cache.js';
import { CLIENT_TUNING, type BackendClientOptions } from './options.js';
import { decideOffline } from './offline-rule.js';
import { readVerifyAnswer } from './verify-answer.js';
import { acquireSession, SessionCalls } from './session-calls.js';
import { CIRCUIT_GAUGE, ZERO_ERRORS, type BackendClientStats } from './stats.js';
import { expectJson, problemReason, signedRequest } from './wire.js';
import { BoundedSet } from '../../common/bounded-set.js';

/** Verified leases remembered (a SHA-256 digest each): a reconnect storm of this many devices verifies each lease once. */
const VERIFIED_LEASES_MAX = 16_384;

/** protocol-v1: at most 256 hellos in one verify request. */
export const MAX_VERIFY_BATCH = 256;

export type { BackendClientOptions, BackendClientSettings } from './options.js';
export type { BackendClientStats } from './stats.js';

type Item = BatchItem<VerifyRequest, VerifyResult>;

export class BackendClient implements HelloVerifier, RevocationSource {
  readonly #o: BackendClientOptions;
  readonly #t: Record<keyof typeof CLIENT_TUNING, number>;
  readonly #clock: TimerClock;
  readonly #log: Logger;
  readonly #breaker: CircuitBreaker;
  readonly leases: LeaseCache;
  readonly #batcher: Batcher<VerifyRequest, VerifyResult>;
  readonly #feed: RevocationFeed;
  readonly #c = {
    requests: 0, batches: 0, hellos: 0, verdictsOk: 0, verdictsRejected: 0, busy: 0, retries: 0,
    offlineWelcomes: 0, offlineRejects: 0, unavailable: 0, offlineRefusedStale: 0,
  };
  readonly #errors = ZERO_ERRORS();
  readonly #calls: SessionCalls;
  /** Leases already verified under pk_S, by their text (verify-answer.ts): at most one per device of a large fleet. */
  readonly #verifiedLeases = new BoundedSet(VERIFIED_LEASES_MAX);
  #stopped = false;

  constructor(options: BackendClientOptions) {
    this.#o = options;
    this.#t = {
      verifyTimeoutMs: options.verifyTimeoutMs ?? CLIENT_TUNING.verifyTimeoutMs,
      maxAttempts: options.maxAttempts ?? CLIENT_TUNING.maxAttempts,
      retryBaseMs: options.retryBaseMs ?? CLIENT_TUNING.retryBaseMs,
      retryMaxMs: options.retryMaxMs ?? CLIENT_TUNING.retryMaxMs,
      unavailableRetrySeconds: options.unavailableRetrySeconds ?? CLIENT_TUNING.unavailableRetrySeconds,
      forcedRenewalMinMs: options.forcedRenewalMinMs ?? CLIENT_TUNING.forcedRenewalMinMs,
    };
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger();
    this.#breaker = new CircuitBreaker(this.#clock, options.breaker);
    this.#calls = new SessionCalls({
      o: options,
      breaker: this.#breaker,
      clock: this.#clock,
      log: this.#log,
      forcedRenewalMinMs: this.#t.forcedRenewalMinMs,
      onRequest: () => {
        this.#c.requests += 1;
      },
      onError: (kind) => {
        this.#errors[kind] += 1;
      },
    });
    this.leases = new LeaseCache({
      gw: options.gw,
      backendKeys: options.backendKeys,
      stateDir: options.stateDir,
      clock: this.#clock,
      logger: this.#log,
      maxLeases: options.maxLeases,
      ...options.leases,
    });
    this.#batcher = new Batcher<VerifyRequest, VerifyResult>({
      clock: this.#clock,
      maxBatch: Math.min(MAX_VERIFY_BATCH, Math.max(1, options.maxBatch)),
      maxWaitMs: options.maxWaitMs,
      flushWhenIdle: options.flushWhenIdle,
      maxInFlight: options.maxInFlight,
      maxQueue: options.maxQueue,
      run: (items) => this.#runBatch(items),
      // The caller's deadline: answer by the offline rule (a timeout is "cannot be reached");
      // a late backend answer is then ignored.
      onDeadline: (item) => {
        this.#errors.timeout += 1;
        return this.#offline(item, 'timeout');
      },
      onAbort: () => this.#unavailable(),
      onSettled: (r) => this.#count(r),
    });
    this.#feed = new RevocationFeed({
      gw: options.gw,
      stateDir: options.stateDir,
      leases: this.leases,
      clock: this.#clock,
      logger: this.#log,
      pollMs: options.revocationPollMs,
      maxFailedPolls: options.maxFailedRevocationPolls,
      get: (path, parse) => this.#calls.get(path, parse),
    });
  }

  /** Load leases and the revocation cursor, then start polling revocations. */
  async start(): Promise<void> {
    await ensureStateDir(this.#o.stateDir);
    await this.leases.load();
    await this.#feed.start();
  }

  /** Stop timers, answer everything still queued, persist leases. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#feed.stop();
    this.#batcher.drain(() => this.#unavailable());
    await this.leases.flush();
    this.leases.close();
  }

  onRevoked(listener: (devices: string[]) => void): () => void {
    return this.#feed.onRevoked(listener);
  }

  stats(): BackendClientStats {
    const tpm = (this.#o.session as { stats?: () => { tpmSignatures: number } }).stats?.().tpmSignatures ?? 0;
    return {
      ...this.#c,
      errors: { ...this.#errors },
      circuit: this.#breaker.current,
      circuitState: CIRCUIT_GAUGE[this.#breaker.current],
      circuitOpens: this.#breaker.opens,
      inFlight: this.#batcher.inFlight,
      queued: this.#batcher.queued,
      leases: this.leases.size,
      leaseBytes: this.leases.totalBytes,
      revocationPolls: this.#feed.counters.polls,
      revokedDevices: this.#feed.counters.revokedDevices,
      revocationCursor: this.#feed.position,
      revocationFailedPolls: this.#feed.counters.failedPolls,
      revocationFailedInARow: this.#feed.counters.failedInARow,
      revocationsStale: this.#feed.stale,
      tpmSignatures: tpm,
    };
  }

  // ------------------------------------------------------------------ verify and batching

  verify(request: VerifyRequest, signal?: AbortSignal): Promise<VerifyResult> {
    this.#c.hellos += 1;
    if (this.#stopped) return Promise.resolve(this.#count(this.#unavailable()));
    if (request.hello.length > MAX_MESSAGE_BYTES) return Promise.resolve(this.#count(this.#reject('malformed')));
    if (signal?.aborted === true) return Promise.resolve(this.#count(this.#unavailable()));
    const answer = this.#batcher.submit(request, this.#t.verifyTimeoutMs, signal);
    if (answer === undefined) {
      // Backpressure: a bounded queue answers busy instead of growing.
      this.#c.busy += 1;
      return Promise.resolve(this.#count({ ok: false, reason: 'busy', retry: 1 }));
    }
    return answer;
  }

  #count(result: VerifyResult): VerifyResult {
    if (result.ok) this.#c.verdictsOk += 1;
    else this.#c.verdictsRejected += 1;
    return result;
  }

  #settle(item: Item, result: VerifyResult): void {
    this.#batcher.settle(item, result);
  }

  async #runBatch(items: Item[]): Promise<void> {
    for (let attempt = 0; ; attempt += 1) {
      const live = items.filter((i) => !i.settled);
      if (live.length === 0) return;
      let err: BackendError;
      try {
        await this.#sendBatch(live);
        return;
      } catch (e) {
        err = e instanceof BackendError ? e : new BackendError('response', 'unexpected failure', { cause: e });
      }
      this.#errors[err.kind] += 1;
      const latest = Math.max(...live.map((i) => i.deadline));
      const delay = backoffMs(attempt, this.#t.retryBaseMs, this.#t.retryMaxMs, this.#o.random);
      const canRetry = err.retryable && this.#breaker.current === 'closed' && attempt + 1 < this.#t.maxAttempts && this.#clock.now() + delay < latest;
      if (canRetry) {
        this.#c.retries += 1;
        this.#log.debug('verify batch failed; retrying', { kind: err.kind, attempt, delayMs: delay });
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, delay));
        continue;
      }
      this.#failBatch(live, err);
      return;
    }
  }

  /** Answer a whole batch after a request-level failure. */
  #failBatch(items: Item[], err: BackendError): void {
    if (err.unreachable) {
      this.#log.warn('backend unreachable; applying the offline rule', { kind: err.kind, code: err.code, hellos: items.length });
      for (const i of items) this.#settle(i, this.#offline(i, err.kind));
      return;
    }
    if (err.kind === 'no-session') {
      this.#log.warn('no gateway session: cannot ask the backend', { hellos: items.length });
      for (const i of items) this.#settle(i, this.#unavailable());
      return;
    }
    const reason = err.kind === 'client' ? problemReason(err) : undefined;
    this.#log.error('backend refused a verify request', { kind: err.kind, code: err.code, status: err.status, reason, title: err.problem?.title });
    for (const i of items) this.#settle(i, reason !== undefined ? this.#reject(reason) : this.#unavailable());
  }

  async #sendBatch(items: Item[]): Promise<void> {
    // No session key: the request cannot be signed (and no welcome could be either).
    const session = acquireSession(this.#breaker, this.#o.session);
    const body = { hellos: items.map((i) => ({ id: i.wireId, transport: i.req.transport, hello: base64UrlEncode(i.req.hello) })) };
    const latest = Math.max(...items.map((i) => i.deadline));
    const timeout = Math.max(1, Math.min(this.#o.requestTimeoutMs, latest - this.#clock.now()));
    let json: unknown;
    try {
      const req = await signedRequest(this.#o.http, 'POST', '/v1/verify', body, this.#calls.signing(session.signer));
      this.#c.requests += 1;
      this.#c.batches += 1;
      const res = await this.#o.http.request({ ...req, signal: AbortSignal.timeout(timeout) });
      json = expectJson(res, 200);
    } catch (e) {
      const err = e instanceof BackendError ? e : new BackendError('response', 'cannot build the verify request', { cause: e });
      this.#calls.noteOutcome(err);
      throw err;
    }
    this.#breaker.success();
    this.#applyAnswer(items, json);
  }

  /** Answers each item of the batch exactly once from the verify answer (verify-answer.ts). */
  #applyAnswer(items: Item[], json: unknown): void {
    const answer = readVerifyAnswer(json, new Map(items.map((i) => [i.wireId, i.req.dev])), {
      gw: this.#o.gw,
      backendKeys: this.#o.backendKeys,
      nowS: Math.floor(this.#clock.now() / 1000),
      verified: this.#verifiedLeases,
    });
    const byId = new Map(items.map((i) => [i.wireId, i]));
    for (const [id, v] of answer.verdicts) {
      const item = byId.get(id) as Item;
      if (v.kind === 'welcome') {
        this.leases.put(v.lease, v.leaseBytes);
        this.#settle(item, { ok: true, dev: v.lease.dev, lease: v.lease, leaseBytes: v.leaseBytes, offline: false, ...(v.grant === undefined ? {} : { grant: v.grant }) });
      } else if (v.kind === 'reject') {
        this.#settle(item, this.#reject(v.reason));
      } else {
        if (v.fault === 'lease' || v.fault === 'grant') {
          this.#errors.lease += 1;
          this.#log.error(`backend ${v.fault} rejected`, { dev: item.req.dev, why: v.why });
        } else {
          this.#errors.response += 1;
          if (v.fault === 'result') this.#log.error('backend verify result malformed', { dev: item.req.dev });
        }
        this.#settle(item, this.#unavailable());
      }
    }
    if (answer.refused !== undefined) {
      this.#errors.response += 1;
      this.#log.error('backend verify answer rejected', { error: answer.refused });
    }
    // Anything the answer did not cover still gets an answer.
    for (const item of items) if (!answer.verdicts.has(item.wireId)) this.#settle(item, this.#unavailable());
  }

  // ------------------------------------------------------------------ offline rule

  /** protocol-v1 "Offline" (offline-rule.ts): a cached lease's dpk, or backend-unavailable. */
  #offline(item: Item, cause: BackendErrorKind): VerifyResult {
    const v = decideOffline(item.req.hello, item.req.dev, (dev) => this.leases.get(dev), Math.floor(this.#clock.now() / 1000));
    switch (v.kind) {
      case 'malformed':
        return this.#reject('malformed');
      case 'no-lease':
        this.#log.info('offline: no lease, rejecting', { dev: v.dev, cause });
        return this.#unavailable();
      case 'bad-signature':
        this.#c.offlineRejects += 1;
        this.#log.warn('offline decision: hello does not verify under the leased key', { dev: v.dev, cause, offline: true });
        return this.#reject('bad-signature');
      case 'welcome':
        if (this.#feed.stale) {
          // Revocation polls keep failing (an attacker who blocks the backend blocks them too):
          // the cached lease may belong to a device revoked since, so it vouches for nothing.
          this.#c.offlineRefusedStale += 1;
          this.#log.warn('offline welcome refused: revocation polls failing', { dev: v.dev, cause, failedInARow: this.#feed.counters.failedInARow });
          return this.#unavailable();
        }
        this.#c.offlineWelcomes += 1;
        this.#log.warn('offline decision: welcomed under a cached lease', { dev: v.dev, cause, leaseExp: v.lease.exp, offline: true });
        return { ok: true, dev: v.dev, lease: v.lease, leaseBytes: v.leaseBytes, offline: true };
    }
  }

  #reject(reason: Exclude<VerifyResult, { ok: true }>['reason']): VerifyResult {
    return { ok: false, reason };
  }

  #unavailable(): VerifyResult {
    this.#c.unavailable += 1;
    const fromBreaker = Math.ceil(this.#breaker.retryInMs / 1000);
    return { ok: false, reason: 'backend-unavailable', retry: fromBreaker > 0 ? fromBreaker : this.#t.unavailableRetrySeconds };
  }

  // ------------------------------------------------------------------ revocations

  /**
   * One revocation poll now (the timer also calls it). Returns the devices newly revoked, or
   * undefined when the poll could not be made or failed.
   */
  pollRevocations(): Promise<string[] | undefined> {
    return this.#feed.poll();
  }
}
