/**
 * The authentication pipeline, one for every transport (protocol-v1 "The exchange"): issues
 * challenges, runs the gateway checks on a hello in the order the spec gives, asks the backend
 * client, and answers a welcome or a reject signed with the session key.
 */
import { silentLogger } from '../../common/log/logger.js';
import { setMaxListeners } from 'node:events';
import type { Logger } from 'winston';
import { encodeChallenge, encodeChallengeV2, generateX25519KeyPair, helloHash, isValidId, signWelcome } from '../../protocol/index.js';
import type { ReasonCode, Hello, HelloV2, Signed } from '../../protocol/index.js';
import { makeWelcomeV2, WelcomeV2Refusal } from './welcome-v2.js';
import { ChallengeStore } from './challenge-store.js';
import { monotonicClock, systemClock, type Clock } from '../../common/clock.js';
import { systemRandom, type RandomSource } from './random.js';
import { DecisionLog } from './events.js';
import { RateLimiter } from './rate-limit.js';
import { bucketSpecs, resolve, type PipelineOptions, type RateLimitsPerMin, type Resolved } from './options.js';
import { withDeadline } from './deadline.js';
import { checkHello } from './hello-check.js';
import { Replies } from './replies.js';
import type { AuthPipeline, GatewaySession, HelloOutcome, HelloVerifier, IngressConnection, ProtocolVersion, SessionProvider, VerifyResult } from './types.js';

export type { PipelineOptions } from './options.js';

/** protocol-v1 key 5: gn is 16 bytes. */
const GN_BYTES = 16;

/** The one {@link AuthPipeline} of the daemon. */
export class Pipeline implements AuthPipeline {
  readonly events: DecisionLog;
  readonly #gw: string;
  readonly #verifier: HelloVerifier;
  readonly #sessions: SessionProvider;
  readonly #clock: Clock;
  /** Elapsed time: challenge TTLs, rate limits, latency. Never stepped by NTP or an operator. */
  readonly #elapsed: Clock;
  readonly #random: RandomSource;
  readonly #log: Logger;
  readonly #o: Resolved;
  readonly #challenges: ChallengeStore;
  readonly #limits: RateLimiter;
  readonly #replies: Replies;
  #rateLimits: RateLimitsPerMin;
  readonly #closing = new AbortController();
  #pending = 0;
  #requestSeq = 0;

  constructor(options: PipelineOptions) {
    this.#o = resolve(options);
    this.#gw = options.gw;
    this.#verifier = options.verifier;
    this.#sessions = options.sessions;
    this.#clock = options.clock ?? systemClock;
    // A wall-clock step back would stretch outstanding challenges; injected clocks (tests) drive both.
    this.#elapsed = options.elapsedClock ?? options.clock ?? monotonicClock;
    // Every pending hello listens on the closing signal (removed when it settles): bounded by
    // maxPendingHellos, not a leak, so Node's 10-listener warning does not apply.
    setMaxListeners(this.#o.maxPendingHellos + 1, this.#closing.signal);
    this.#random = options.random ?? systemRandom;
    this.#log = options.logger ?? silentLogger();
    this.events = new DecisionLog(this.#o.eventRingSize, this.#log);
    this.#replies = new Replies({ gw: this.#gw, sessions: this.#sessions, events: this.events, clock: this.#clock, elapsed: this.#elapsed, log: this.#log });
    this.#challenges = new ChallengeStore({
      clock: this.#elapsed,
      ttlMs: this.#o.challengeTtlMs,
      maxTotal: this.#o.maxOutstandingChallenges,
      maxPerConnection: this.#o.maxChallengesPerConnection,
    });
    this.#limits = new RateLimiter(bucketSpecs(this.#o), this.#elapsed, this.#o.maxRateLimitKeys);
    this.#rateLimits = { perConnectionPerMin: this.#o.perConnectionPerMin, perDevicePerMin: this.#o.perDevicePerMin, globalPerMin: this.#o.globalPerMin };
  }

  /** SIGHUP: new rate limits take effect at once; connections, challenges and buckets are kept. */
  setRateLimits(limits: RateLimitsPerMin): void {
    this.#limits.setSpecs(bucketSpecs(limits));
    this.#rateLimits = { perConnectionPerMin: limits.perConnectionPerMin, perDevicePerMin: limits.perDevicePerMin, globalPerMin: limits.globalPerMin };
  }

  /** The rate limits in force (requests per minute), for the status report. */
  rateLimits(): RateLimitsPerMin {
    return { ...this.#rateLimits };
  }

  /** Sizes of the bounded state, for metrics and tests. */
  stats(): { outstandingChallenges: number; pendingHellos: number; rateLimitKeys: { connections: number; devices: number } } {
    return { outstandingChallenges: this.#challenges.size, pendingHellos: this.#pending, rateLimitKeys: this.#limits.tracked };
  }

  async challenge(conn: IngressConnection, dev: string, version: ProtocolVersion = 1): Promise<Uint8Array> {
    return this.#issue(conn, dev, version);
  }

  async reject(conn: IngressConnection, dev: string, reason: ReasonCode, version: ProtocolVersion): Promise<Uint8Array> {
    const started = this.#elapsed.now();
    const replyDev = isValidId(dev) ? dev : conn.id;
    const wait = this.#limits.takeConnection(conn.id);
    if (wait > 0) return this.#replies.rejectBytes(conn, started, { version, dev: replyDev, reason: 'rate-limited', retry: wait, unsigned: true });
    return this.#replies.rejectBytes(conn, started, { version, dev: replyDev, reason });
  }

  async connectionChallenge(conn: IngressConnection, version: ProtocolVersion = 1): Promise<Uint8Array> {
    return this.#issue(conn, undefined, version);
  }

  async hello(conn: IngressConnection, helloBytes: Uint8Array, expectedDev?: string, version: ProtocolVersion = 1): Promise<HelloOutcome> {
    const started = this.#elapsed.now();
    const fallbackDev = expectedDev ?? conn.id;
    try {
      // Metered before it is parsed: each message costs the connection a token.
      const wait = this.#limits.takeConnection(conn.id);
      if (wait > 0) return await this.#replies.reject(conn, started, { version, dev: fallbackDev, reason: 'rate-limited', retry: wait, unsigned: true });
      const checked = checkHello({ gw: this.#gw, challenges: this.#challenges, limits: this.#limits, log: this.#log }, conn, helloBytes, expectedDev, version);
      if ('reject' in checked) return await this.#replies.reject(conn, started, { ...checked.reject, version });
      return await this.#decide(conn, started, checked.signed, checked.z);
    } catch (err) {
      this.#log.error('hello failed inside the pipeline', { conn: conn.id, error: err instanceof Error ? err.message : String(err) });
      this.#log.debug('hello failure stack', { stack: err instanceof Error ? err.stack : undefined });
      return this.#replies.reject(conn, started, { version, dev: fallbackDev, reason: 'internal' });
    }
  }

  connectionClosed(conn: IngressConnection): void {
    this.#challenges.dropConnection(conn.id);
    this.#limits.connectionClosed(conn.id);
  }

  /** Aborts every pending verifier call; later hellos answer `busy`. */
  close(): void {
    this.#closing.abort();
  }

  async #issue(conn: IngressConnection, dev: string | undefined, version: ProtocolVersion): Promise<Uint8Array> {
    const started = this.#elapsed.now();
    const replyDev = dev ?? conn.id;
    try {
      // Metered before anything else; a challenge-request is unauthenticated, so it never
      // charges the device's bucket (a peer naming another device would spend its allowance).
      const wait = this.#limits.takeConnection(conn.id);
      if (wait > 0) return await this.#replies.rejectBytes(conn, started, { version, dev: isValidId(replyDev) ? replyDev : conn.id, reason: 'rate-limited', retry: wait, unsigned: true });
      if (!isValidId(replyDev)) {
        // The dev cannot be echoed in a reject: name the connection's binding instead.
        return await this.#replies.rejectBytes(conn, started, { version, dev: conn.id, reason: 'malformed', unsigned: true });
      }
      const global = this.#limits.takeGlobal();
      if (global > 0) return await this.#replies.rejectBytes(conn, started, { version, dev: replyDev, reason: 'rate-limited', retry: global });
      if (this.#closing.signal.aborted) return await this.#replies.rejectBytes(conn, started, { version, dev: replyDev, reason: 'busy', retry: this.#o.busyRetry });
      const gn = this.#random(GN_BYTES);
      // protocol-v2: ge is fresh for every challenge; its private key lives with the challenge.
      const ge = version === 2 ? generateX25519KeyPair() : undefined;
      if (this.#challenges.issue(conn.id, dev, gn, ge === undefined ? undefined : { ge }) === 'full') {
        return await this.#replies.rejectBytes(conn, started, { version, dev: replyDev, reason: 'busy', retry: this.#o.busyRetry });
      }
      const bytes =
        ge === undefined
          ? encodeChallenge({ type: 'challenge', version: 1, dev: replyDev, gn, gw: this.#gw })
          : encodeChallengeV2({ type: 'challenge', version: 2, dev: replyDev, gn, gw: this.#gw, ge: ge.publicKey });
      this.#replies.record(conn, started, { dev, outcome: 'challenge', offline: false });
      return bytes;
    } catch (err) {
      this.#log.error('challenge failed inside the pipeline', { conn: conn.id, error: err instanceof Error ? err.message : String(err) });
      return this.#replies.rejectBytes(conn, started, { version, dev: isValidId(replyDev) ? replyDev : conn.id, reason: 'internal' });
    }
  }

  async #decide(conn: IngressConnection, started: number, signed: Signed<Hello> | Signed<HelloV2>, z: Uint8Array | undefined): Promise<HelloOutcome> {
    try {
      return await this.#decideInner(conn, started, signed, z);
    } finally {
      // Z lives only until the keys are derived (or the exchange fails).
      z?.fill(0);
    }
  }

  async #decideInner(conn: IngressConnection, started: number, signed: Signed<Hello> | Signed<HelloV2>, z: Uint8Array | undefined): Promise<HelloOutcome> {
    const version: ProtocolVersion = z === undefined ? 1 : 2;
    const dev = signed.payload.dev;
    const hh = helloHash(signed.bytes);
    if (this.#closing.signal.aborted || this.#pending >= this.#o.maxPendingHellos) {
      return this.#replies.reject(conn, started, { version, dev, reason: 'busy', hh, retry: this.#o.busyRetry });
    }
    if (this.#sessions.current() === undefined) {
      // No session key yet: the backend cannot be asked (requests are signed with it).
      return this.#replies.reject(conn, started, { version, dev, reason: 'backend-unavailable', hh, retry: this.#o.unavailableRetry });
    }
    this.#pending += 1;
    let result: VerifyResult;
    try {
      this.#requestSeq += 1;
      const request = { id: `h${this.#requestSeq}`, transport: conn.transport, dev, hello: signed.bytes };
      result = await withDeadline((signal) => this.#verifier.verify(request, signal), this.#o.verifyTimeoutMs, this.#closing.signal);
    } catch (err) {
      this.#log.warn('backend verdict not available', { conn: conn.id, dev, error: err instanceof Error ? err.message : String(err) });
      result = { ok: false, reason: 'backend-unavailable' };
    } finally {
      this.#pending -= 1;
    }
    if (!result.ok) {
      const retry = result.retry ?? this.#retryFor(result.reason);
      return this.#replies.reject(conn, started, { version, dev, reason: result.reason, hh, ...(retry === undefined ? {} : { retry }) });
    }
    if (result.dev !== dev) {
      this.#log.error('backend verdict names another device', { conn: conn.id, dev, verdictDev: result.dev });
      return this.#replies.reject(conn, started, { version, dev, reason: 'internal', hh });
    }
    // The signature verified (backend or cached lease): only now is the device's allowance spent.
    const deviceWait = this.#limits.takeDevice(dev);
    if (deviceWait > 0) return this.#replies.reject(conn, started, { version, dev, reason: 'rate-limited', hh, retry: deviceWait });
    const session = this.#sessions.current();
    if (session === undefined) {
      return this.#replies.reject(conn, started, { version, dev, reason: 'backend-unavailable', hh, retry: this.#o.unavailableRetry });
    }
    if (z !== undefined) return this.#welcomeV2(conn, started, { dev, hh, z, result, session });
    const reply = await signWelcome(
      { type: 'welcome', version: 1, dev, gw: this.#gw, hh, cred: session.credential },
      this.#replies.signerOf(session),
    );
    // A v1 welcome stands until the lease expires, and never longer than the longest session.
    const lifeSeconds = Math.max(0, Math.min(this.#o.maxSessionAgeSec, result.lease.exp - Math.floor(this.#clock.now() / 1000)));
    this.#replies.record(conn, started, { dev, outcome: 'welcome', offline: result.offline, leaseExp: result.lease.exp });
    this.#log.info('peripheral welcomed', { conn: conn.id, transport: conn.transport, dev, offline: result.offline, life: lifeSeconds });
    return { reply, welcomed: { dev, policy: result.lease.policy, offline: result.offline, lifeSeconds } };
  }

  /** protocol-v2 "Welcome": the grant relayed unchanged, or the offline welcome; then the keys. */
  async #welcomeV2(
    conn: IngressConnection,
    started: number,
    v: { dev: string; hh: Uint8Array; z: Uint8Array; result: Extract<VerifyResult, { ok: true }>; session: GatewaySession },
  ): Promise<HelloOutcome> {
    const { dev, hh, result } = v;
    let made;
    try {
      made = await makeWelcomeV2({
        gw: this.#gw,
        dev,
        hh,
        z: v.z,
        lease: result.lease,
        leaseBytes: result.leaseBytes,
        grant: result.grant,
        offline: result.offline,
        credential: v.session.credential,
        maxSessionAgeSec: this.#o.maxSessionAgeSec,
        nowS: Math.floor(this.#clock.now() / 1000),
        signer: this.#replies.signerOf(v.session),
      });
    } catch (err) {
      if (!(err instanceof WelcomeV2Refusal)) throw err;
      this.#log.error('v2 welcome not made', { conn: conn.id, dev, why: err.message });
      return this.#replies.reject(conn, started, { version: 2, dev, reason: 'internal', hh });
    }
    this.#replies.record(conn, started, { dev, outcome: 'welcome', offline: result.offline, version: 2 });
    // One line per v2 welcome, with the session's sid (the transport logs the session's opening at debug).
    this.#log.info('peripheral welcomed', { conn: conn.id, transport: conn.transport, dev, offline: result.offline, version: 2, life: made.session.lifeSeconds, sid: Buffer.from(made.session.sid).toString('hex') });
    return { reply: made.reply, welcomed: { dev, policy: result.lease.policy, offline: result.offline }, session: made.session };
  }

  #retryFor(reason: ReasonCode): number | undefined {
    if (reason === 'busy' || reason === 'rate-limited') return this.#o.busyRetry;
    if (reason === 'backend-unavailable') return this.#o.unavailableRetry;
    return undefined;
  }
}
