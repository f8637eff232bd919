/**
 * The authentication pipeline, one for every transport (protocol-v1 "The exchange"): issues
 * challenges, runs the gateway checks on a hello in the order the spec gives, asks the backend
 * client, and answers a welcome or a reject signed with the session key.
 */
import { setMaxListeners } from 'node:events';
import type { Logger } from 'winston';
import winston from 'winston';
import {
  COSE_ALG_EDDSA,
  MAX_MESSAGE_BYTES,
  checkHelloV2AtGateway,
  encodeChallenge,
  encodeChallengeV2,
  generateX25519KeyPair,
  helloHash,
  isValidId,
  parseHello,
  parseHelloV2,
  signWelcome,
  ProtocolError,
} from '../../protocol/index.js';
import type { ReasonCode, Hello, HelloV2, Signed, Signer } from '../../protocol/index.js';
import { encodeRejectOf, makeWelcomeV2, WelcomeV2Refusal } from './welcome-v2.js';
import { ChallengeStore } from './challenge-store.js';
import { monotonicClock, systemClock, type Clock } from '../../common/clock.js';
import { systemRandom, type RandomSource } from './random.js';
import { DecisionLog } from './events.js';
import { PipelineError } from './errors.js';
import { CONFIG_SCHEMA } from '../config/schema.js';
import type { BucketSpec } from '../../common/token-bucket.js';
import { RateLimiter } from './rate-limit.js';
import type {
  AuthPipeline,
  GatewaySession,
  HelloOutcome,
  HelloVerifier,
  IngressConnection,
  ProtocolVersion,
  SessionProvider,
  VerifyResult,
} from './types.js';

/** protocol-v1 key 5: gn is 16 bytes. */
const GN_BYTES = 16;

export interface PipelineOptions {
  /** This gateway's id `gw` (the welcome's key 6 and the kid of welcomes and rejects). */
  gw: string;
  verifier: HelloVerifier;
  sessions: SessionProvider;
  /** Wall clock (unix ms) for event timestamps. */
  clock?: Clock;
  /** Elapsed-time clock for TTLs, rate limits and latency; default monotonic (`performance.now`), or `clock` when only that is given. */
  elapsedClock?: Clock;
  random?: RandomSource;
  logger?: Logger;
  /** protocol-v1: 30 s (default: config `pipeline.challengeTtlSec`). */
  challengeTtlMs?: number;
  /** Challenges outstanding across all connections (default: config `pipeline.maxOutstandingChallenges`); beyond it `busy`. */
  maxOutstandingChallenges?: number;
  /** Challenges outstanding per connection (default 4); beyond it the oldest is dropped. */
  maxChallengesPerConnection?: number;
  /** Hellos waiting for the backend at once (default: config `pipeline.maxPendingHellos`); beyond it `busy`. */
  maxPendingHellos?: number;
  /** Deadline of one verifier call (default: config `backend.requestTimeoutMs`). */
  verifyTimeoutMs?: number;
  /** Token buckets in requests per minute; burst equals the per-minute number (defaults: config `pipeline.rateLimits`). */
  rateLimits?: { perConnectionPerMin?: number; perDevicePerMin?: number; globalPerMin?: number };
  /** Keyed rate-limit buckets kept per table (default 10000). */
  maxRateLimitKeys?: number;
  /** Decision events kept (default: config `status.eventRingSize`). */
  eventRingSize?: number;
  /** `retry` (seconds) sent with `busy` (default 5) and `backend-unavailable` (default 30). */
  retrySec?: { busy?: number; backendUnavailable?: number };
  /** The longest session a welcome opens, seconds: a v2 `life`, and how long a v1 MQTT welcome stands (default: config `protocol.maxSessionAgeSec`). */
  maxSessionAgeSec?: number;
}

interface Resolved {
  challengeTtlMs: number;
  maxOutstandingChallenges: number;
  maxChallengesPerConnection: number;
  maxPendingHellos: number;
  verifyTimeoutMs: number;
  perConnectionPerMin: number;
  perDevicePerMin: number;
  globalPerMin: number;
  maxRateLimitKeys: number;
  eventRingSize: number;
  busyRetry: number;
  unavailableRetry: number;
  maxSessionAgeSec: number;
}

/** The schema's default of a leaf that has one (CONTRIBUTING.md §7: defaults live only in the schema). */
function schemaDefault<T>(leaf: { readonly default?: T }): T {
  if (leaf.default === undefined) throw new PipelineError('GH_PIPELINE_BAD_OPTION', 'config schema leaf has no default');
  return leaf.default;
}

const CFG = CONFIG_SCHEMA.fields;
const PIPE = CFG.pipeline.fields;

function resolve(o: PipelineOptions): Resolved {
  // The daemon passes every configurable value from the resolved config (daemon/gateway.ts);
  // a component built directly (tests, bench) gets the config's defaults.
  const r: Resolved = {
    challengeTtlMs: o.challengeTtlMs ?? schemaDefault(PIPE.challengeTtlSec) * 1000,
    maxOutstandingChallenges: o.maxOutstandingChallenges ?? schemaDefault(PIPE.maxOutstandingChallenges),
    maxChallengesPerConnection: o.maxChallengesPerConnection ?? 4,
    maxPendingHellos: o.maxPendingHellos ?? schemaDefault(PIPE.maxPendingHellos),
    verifyTimeoutMs: o.verifyTimeoutMs ?? schemaDefault(CFG.backend.fields.requestTimeoutMs),
    perConnectionPerMin: o.rateLimits?.perConnectionPerMin ?? schemaDefault(PIPE.rateLimits.fields.perConnectionPerMin),
    perDevicePerMin: o.rateLimits?.perDevicePerMin ?? schemaDefault(PIPE.rateLimits.fields.perDevicePerMin),
    globalPerMin: o.rateLimits?.globalPerMin ?? schemaDefault(PIPE.rateLimits.fields.globalPerMin),
    maxRateLimitKeys: o.maxRateLimitKeys ?? 10_000,
    eventRingSize: o.eventRingSize ?? schemaDefault(CFG.status.fields.eventRingSize),
    busyRetry: o.retrySec?.busy ?? 5,
    unavailableRetry: o.retrySec?.backendUnavailable ?? 30,
    maxSessionAgeSec: o.maxSessionAgeSec ?? schemaDefault(CFG.protocol.fields.maxSessionAgeSec),
  };
  const bad: string[] = [];
  for (const [name, value] of Object.entries(r)) {
    const min = name === 'eventRingSize' ? 0 : 1;
    if (!Number.isSafeInteger(value) || value < min) bad.push(`${name}: expected an integer >= ${min}, got ${String(value)}`);
  }
  if (!isValidId(o.gw)) bad.push(`gw: expected an id (1-64 of [A-Za-z0-9._:-]), got ${JSON.stringify(o.gw)}`);
  if (bad.length > 0) throw new PipelineError('GH_PIPELINE_BAD_OPTION', `invalid pipeline options: ${bad.join('; ')}`);
  return r;
}

/** The reject to send, before it is encoded. */
interface RejectPlan {
  /** The version of the topic or characteristic the reject answers on (default 1). */
  version?: ProtocolVersion;
  dev: string;
  reason: ReasonCode;
  hh?: Uint8Array;
  retry?: number;
  /**
   * Sent unsigned: the message was refused before anything in it was checked (malformed, or over
   * the connection's limit). A signature costs a session-key operation that a peer must not get
   * for garbage; the peripheral could not rely on such a reject anyway.
   */
  unsigned?: boolean;
}

/** Every wait has a deadline: resolves with the verifier's result or fails at `ms`. */
async function withDeadline(
  run: (signal: AbortSignal) => Promise<VerifyResult>,
  ms: number,
  outer: AbortSignal,
): Promise<VerifyResult> {
  const controller = new AbortController();
  const onOuter = (): void => controller.abort(new PipelineError('GH_PIPELINE_CLOSED', 'pipeline closed'));
  outer.addEventListener('abort', onOuter, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    const fail = (): void => reject(controller.signal.reason);
    timer = setTimeout(() => {
      controller.abort(new PipelineError('GH_PIPELINE_VERIFY_TIMEOUT', `verifier gave no answer within ${ms} ms`));
    }, ms);
    controller.signal.addEventListener('abort', fail, { once: true });
  });
  try {
    return await Promise.race([run(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
    outer.removeEventListener('abort', onOuter);
    // Settles the deadline promise's listener without an unhandled rejection.
    deadline.catch(() => undefined);
  }
}

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
  #rateLimits: { perConnectionPerMin: number; perDevicePerMin: number; globalPerMin: number };
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
    this.#log = options.logger ?? winston.createLogger({ silent: true });
    this.events = new DecisionLog(this.#o.eventRingSize, this.#log);
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
  setRateLimits(limits: { perConnectionPerMin: number; perDevicePerMin: number; globalPerMin: number }): void {
    this.#limits.setSpecs(bucketSpecs(limits));
    this.#rateLimits = { perConnectionPerMin: limits.perConnectionPerMin, perDevicePerMin: limits.perDevicePerMin, globalPerMin: limits.globalPerMin };
  }

  /** The rate limits in force (requests per minute), for the status report. */
  rateLimits(): { perConnectionPerMin: number; perDevicePerMin: number; globalPerMin: number } {
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
    if (wait > 0) return this.#rejectBytes(conn, started, { version, dev: replyDev, reason: 'rate-limited', retry: wait, unsigned: true });
    return this.#rejectBytes(conn, started, { version, dev: replyDev, reason });
  }

  async connectionChallenge(conn: IngressConnection): Promise<Uint8Array> {
    return this.#issue(conn, undefined, 1);
  }

  async hello(conn: IngressConnection, helloBytes: Uint8Array, expectedDev?: string, version: ProtocolVersion = 1): Promise<HelloOutcome> {
    const started = this.#elapsed.now();
    const fallbackDev = expectedDev ?? conn.id;
    try {
      // Metered before it is parsed: each message costs the connection a token.
      const wait = this.#limits.takeConnection(conn.id);
      if (wait > 0) return await this.#reject(conn, started, { version, dev: fallbackDev, reason: 'rate-limited', retry: wait, unsigned: true });
      const checked = this.#check(conn, helloBytes, expectedDev, version);
      if ('reject' in checked) return await this.#reject(conn, started, { ...checked.reject, version });
      return await this.#decide(conn, started, checked.signed, checked.z);
    } catch (err) {
      this.#log.error('hello failed inside the pipeline', { conn: conn.id, error: err instanceof Error ? err.message : String(err) });
      this.#log.debug('hello failure stack', { stack: err instanceof Error ? err.stack : undefined });
      return this.#reject(conn, started, { version, dev: fallbackDev, reason: 'internal' });
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
      if (wait > 0) return await this.#rejectBytes(conn, started, { version, dev: isValidId(replyDev) ? replyDev : conn.id, reason: 'rate-limited', retry: wait, unsigned: true });
      if (!isValidId(replyDev)) {
        // The dev cannot be echoed in a reject: name the connection's binding instead.
        return await this.#rejectBytes(conn, started, { version, dev: conn.id, reason: 'malformed', unsigned: true });
      }
      const global = this.#limits.takeGlobal();
      if (global > 0) return await this.#rejectBytes(conn, started, { version, dev: replyDev, reason: 'rate-limited', retry: global });
      if (this.#closing.signal.aborted) return await this.#rejectBytes(conn, started, { version, dev: replyDev, reason: 'busy', retry: this.#o.busyRetry });
      const gn = this.#random(GN_BYTES);
      // protocol-v2: ge is fresh for every challenge; its private key lives with the challenge.
      const ge = version === 2 ? generateX25519KeyPair() : undefined;
      if (this.#challenges.issue(conn.id, dev, gn, ge === undefined ? undefined : { ge }) === 'full') {
        return await this.#rejectBytes(conn, started, { version, dev: replyDev, reason: 'busy', retry: this.#o.busyRetry });
      }
      const bytes =
        ge === undefined
          ? encodeChallenge({ type: 'challenge', version: 1, dev: replyDev, gn, gw: this.#gw })
          : encodeChallengeV2({ type: 'challenge', version: 2, dev: replyDev, gn, gw: this.#gw, ge: ge.publicKey });
      this.#record(conn, started, { dev, outcome: 'challenge', offline: false });
      return bytes;
    } catch (err) {
      this.#log.error('challenge failed inside the pipeline', { conn: conn.id, error: err instanceof Error ? err.message : String(err) });
      return this.#rejectBytes(conn, started, { version, dev: isValidId(replyDev) ? replyDev : conn.id, reason: 'internal' });
    }
  }

  /**
   * protocol-v1 "Gateway checks on a hello", in the spec's order: size, strict CBOR and COSE
   * structure, type and version, dev syntax and binding, gn outstanding for this connection,
   * rate limits. Synchronous: nothing here waits. protocol-v2 adds, once the gn is consumed:
   * hello.gw is this gateway, hello.ge the ge issued with that gn, pe 32 bytes and Z not all
   * zero (else `malformed`, and nothing goes to the backend).
   */
  #check(
    conn: IngressConnection,
    bytes: Uint8Array,
    expectedDev: string | undefined,
    version: ProtocolVersion,
  ): { signed: Signed<Hello> | Signed<HelloV2>; z: Uint8Array | undefined } | { reject: RejectPlan } {
    const fallbackDev = expectedDev ?? conn.id;
    if (bytes.length > MAX_MESSAGE_BYTES) return { reject: { dev: fallbackDev, reason: 'malformed', unsigned: true } };
    let signed: Signed<Hello> | Signed<HelloV2>;
    try {
      signed = version === 2 ? parseHelloV2(bytes) : parseHello(bytes);
    } catch (err) {
      if (err instanceof ProtocolError) return { reject: { dev: fallbackDev, reason: err.reason, unsigned: err.reason === 'malformed' } };
      throw err;
    }
    const hh = helloHash(bytes);
    const dev = signed.payload.dev;
    // protocol-v1 "Encoding": peripherals sign with alg -8 and kid = dev.
    if (!isValidId(dev) || signed.alg !== COSE_ALG_EDDSA || signed.kid !== dev) {
      return { reject: { dev: fallbackDev, reason: 'malformed', hh, unsigned: true } };
    }
    // protocol-v1: dev "matches the topic or BLE connection".
    if (expectedDev !== undefined && dev !== expectedDev) return { reject: { dev: expectedDev, reason: 'malformed', hh, unsigned: true } };
    // protocol-v1: "gn outstanding for this connection (consumed on first use, whatever the outcome)".
    const consumed = this.#challenges.consume(conn.id, signed.payload.gn, dev, version);
    if (!consumed.ok) return { reject: { dev, reason: 'stale-challenge', hh } };
    let z: Uint8Array | undefined;
    if (version === 2) {
      const ge = consumed.ge;
      if (ge === undefined) return { reject: { dev, reason: 'stale-challenge', hh } };
      try {
        z = checkHelloV2AtGateway(signed.payload as HelloV2, { gw: this.#gw, issuedGe: ge.publicKey, gePrivateKey: ge.privateKey }).z;
      } catch (err) {
        if (err instanceof ProtocolError) {
          this.#log.info('v2 hello refused at the gateway', { conn: conn.id, dev, code: err.code });
          return { reject: { dev, reason: 'malformed', hh } };
        }
        throw err;
      }
    }
    // The per-connection token was taken before parsing; the device's is taken once the
    // signature has verified (#decideInner).
    const wait = this.#limits.takeGlobal();
    if (wait > 0) {
      z?.fill(0);
      return { reject: { dev, reason: 'rate-limited', hh, retry: wait } };
    }
    return { signed, z };
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
      return this.#reject(conn, started, { version, dev, reason: 'busy', hh, retry: this.#o.busyRetry });
    }
    if (this.#sessions.current() === undefined) {
      // No session key yet: the backend cannot be asked (requests are signed with it).
      return this.#reject(conn, started, { version, dev, reason: 'backend-unavailable', hh, retry: this.#o.unavailableRetry });
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
      return this.#reject(conn, started, { version, dev, reason: result.reason, hh, ...(retry === undefined ? {} : { retry }) });
    }
    if (result.dev !== dev) {
      this.#log.error('backend verdict names another device', { conn: conn.id, dev, verdictDev: result.dev });
      return this.#reject(conn, started, { version, dev, reason: 'internal', hh });
    }
    // The signature verified (backend or cached lease): only now is the device's allowance spent.
    const deviceWait = this.#limits.takeDevice(dev);
    if (deviceWait > 0) return this.#reject(conn, started, { version, dev, reason: 'rate-limited', hh, retry: deviceWait });
    const session = this.#sessions.current();
    if (session === undefined) {
      return this.#reject(conn, started, { version, dev, reason: 'backend-unavailable', hh, retry: this.#o.unavailableRetry });
    }
    if (z !== undefined) return this.#welcomeV2(conn, started, { dev, hh, z, result, session });
    const reply = await signWelcome(
      { type: 'welcome', version: 1, dev, gw: this.#gw, hh, cred: session.credential },
      this.#signerOf(session),
    );
    // A v1 welcome stands until the lease expires, and never longer than the longest session.
    const lifeSeconds = Math.max(0, Math.min(this.#o.maxSessionAgeSec, result.lease.exp - Math.floor(this.#clock.now() / 1000)));
    this.#record(conn, started, { dev, outcome: 'welcome', offline: result.offline, leaseExp: result.lease.exp });
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
        signer: this.#signerOf(v.session),
      });
    } catch (err) {
      if (!(err instanceof WelcomeV2Refusal)) throw err;
      this.#log.error('v2 welcome not made', { conn: conn.id, dev, why: err.message });
      return this.#reject(conn, started, { version: 2, dev, reason: 'internal', hh });
    }
    this.#record(conn, started, { dev, outcome: 'welcome', offline: result.offline, version: 2 });
    this.#log.info('peripheral welcomed', { conn: conn.id, transport: conn.transport, dev, offline: result.offline, version: 2, life: made.session.lifeSeconds });
    return { reply: made.reply, welcomed: { dev, policy: result.lease.policy, offline: result.offline }, session: made.session };
  }

  #retryFor(reason: ReasonCode): number | undefined {
    if (reason === 'busy' || reason === 'rate-limited') return this.#o.busyRetry;
    if (reason === 'backend-unavailable') return this.#o.unavailableRetry;
    return undefined;
  }

  /** protocol-v1: welcomes and rejects carry kid = gw, whatever kid the session signer has. */
  #signerOf(session: GatewaySession): Signer {
    const inner = session.signer;
    return { alg: inner.alg, kid: this.#gw, sign: (tbs) => inner.sign(tbs) };
  }

  async #reject(conn: IngressConnection, started: number, plan: RejectPlan): Promise<HelloOutcome> {
    const reply = await this.#rejectBytes(conn, started, plan);
    return { reply, rejected: { dev: plan.dev, reason: plan.reason, ...(plan.retry === undefined ? {} : { retry: plan.retry }) } };
  }

  /** Encodes a reject: signed with the session key, unsigned only when there is none. */
  async #rejectBytes(conn: IngressConnection, started: number, plan: RejectPlan): Promise<Uint8Array> {
    const input = {
      version: plan.version ?? 1,
      dev: plan.dev,
      reason: plan.reason,
      ...(plan.hh === undefined ? {} : { hh: plan.hh }),
      ...(plan.retry === undefined ? {} : { retry: plan.retry }),
    };
    const session = plan.unsigned === true ? undefined : this.#sessions.current();
    let bytes: Uint8Array;
    if (session === undefined) {
      bytes = await encodeRejectOf(input, undefined);
    } else {
      try {
        bytes = await encodeRejectOf(input, this.#signerOf(session));
      } catch (err) {
        this.#log.error('signing a reject failed; sending it unsigned', { conn: conn.id, error: err instanceof Error ? err.message : String(err) });
        bytes = await encodeRejectOf(input, undefined);
      }
    }
    this.#record(conn, started, { dev: plan.dev, outcome: 'reject', reason: plan.reason, offline: false, version: plan.version ?? 1, ...(plan.retry === undefined ? {} : { retry: plan.retry }) });
    this.#log.info('peripheral rejected', { conn: conn.id, transport: conn.transport, dev: plan.dev, reason: plan.reason });
    return bytes;
  }

  #record(
    conn: IngressConnection,
    started: number,
    fields: { dev: string | undefined; outcome: 'welcome' | 'reject' | 'challenge'; reason?: ReasonCode; offline: boolean; version?: ProtocolVersion; retry?: number; leaseExp?: number },
  ): void {
    this.events.record({
      at: this.#clock.now(),
      transport: conn.transport,
      connection: conn.id,
      ...(fields.dev === undefined ? {} : { dev: fields.dev }),
      outcome: fields.outcome,
      ...(fields.reason === undefined ? {} : { reason: fields.reason }),
      latencyMs: Math.max(0, this.#elapsed.now() - started),
      offline: fields.offline,
      ...(fields.version === 2 ? { version: 2 as const } : {}),
      remote: conn.remote,
      ...(fields.retry === undefined ? {} : { retry: fields.retry }),
      ...(fields.leaseExp === undefined ? {} : { leaseExp: fields.leaseExp }),
    });
  }
}

/** Token buckets from per-minute limits; the burst equals the per-minute number. */
function bucketSpecs(l: { perConnectionPerMin: number; perDevicePerMin: number; globalPerMin: number }): { perConnection: BucketSpec; perDevice: BucketSpec; global: BucketSpec } {
  const perMin = (n: number): BucketSpec => ({ burst: n, perSecond: n / 60 });
  return { perConnection: perMin(l.perConnectionPerMin), perDevice: perMin(l.perDevicePerMin), global: perMin(l.globalPerMin) };
}
