/**
 * The uploader: sends the queue's telemetry to `POST /v1/gateways/{gw}/telemetry` and the
 * devices' acks to `POST /v1/gateways/{gw}/acks` (protocol-v2 "Backend HTTP API"), in batches of
 * at most 256, each request signed with the session key through BackendHttp. A record leaves the
 * queue only when the backend has answered for it (accepted or duplicate); anything else is
 * retried with jittered exponential backoff behind a circuit breaker, so a dead backend costs
 * one probe per `openMs`, not a stream of timeouts.
 *
 * A 4xx other than 401/408/429 refuses a batch for good. The backend's 403 `not-granted` names
 * the refused entries (`refused: [{index, dev, why}]`; a device without an ok verdict here, a
 * time outside its lease, a topic its policy does not grant) and stores none of the request:
 * those entries are removed — counted and logged, never silently — and the rest is sent again.
 * Any other refusal without such a list is resent one record at a time to find the bad ones.
 */
import type { Logger } from 'winston';
import { base64UrlEncode } from '../../protocol/index.js';
import { backoffMs } from '../../common/clock.js';
import { loopParts, type Doze, type UplinkLoopOptions } from './doze.js';
import type { CircuitBreaker, CircuitState } from '../backend-client/breaker.js';
import { acquireSession } from '../backend-client/session-calls.js';
import { BackendError, type RefusedEntry } from '../backend-client/errors.js';
import { badField, exactKeys, expectJson, isObject, signedRequest } from '../backend-client/wire.js';
import type { UplinkQueue } from './queue.js';
import type { QueuedAck, QueuedTelemetry } from './queue-store.js';

/** protocol-v2: at most 256 records (or acks) per request. */
export const MAX_UPLOAD_BATCH = 256;
/**
 * Telemetry requests in flight at once while there is a backlog of full batches: one request at a
 * time left the backend idle while the queue grew (the round trip, not the backend, bounded the
 * rows/s). Each request carries other records; a failed one leaves its records queued.
 */
export const UPLOADS_IN_FLIGHT = 4;

/** The backend's problem type for data-plane entries it does not believe the gateway for. */
const NOT_GRANTED = 'urn:gatehouse:problem:not-granted';

/** How often the age bound is applied while idle. */
const EXPIRE_EVERY_MS = 60_000;

export interface UploaderOptions extends UplinkLoopOptions {
  queue: UplinkQueue;
  random?: () => number;
}

export interface UploaderStats {
  requests: number;
  uploaded: number;
  duplicates: number;
  refused: number;
  acksUploaded: number;
  failures: number;
  circuit: CircuitState;
  lastSuccessAt: number | undefined;
  lastError: string | undefined;
}

/** The telemetry answer: `{accepted, duplicates}` covering the whole batch. */
export function readTelemetryAnswer(json: unknown, sent: number): { accepted: number; duplicates: number } {
  if (!isObject(json)) badField('telemetry answer is not an object');
  exactKeys(json, ['accepted', 'duplicates'], 'telemetry answer');
  const { accepted, duplicates } = json;
  if (!Number.isSafeInteger(accepted) || !Number.isSafeInteger(duplicates) || (accepted as number) < 0 || (duplicates as number) < 0) badField('telemetry answer counts are not non-negative integers');
  if ((accepted as number) + (duplicates as number) !== sent) badField(`telemetry answer covers ${String(accepted)} + ${String(duplicates)} records, ${sent} sent`);
  return { accepted: accepted as number, duplicates: duplicates as number };
}

/** The acks answer: `{accepted}`. */
export function readAcksAnswer(json: unknown, sent: number): number {
  if (!isObject(json)) badField('acks answer is not an object');
  exactKeys(json, ['accepted'], 'acks answer');
  const a = json.accepted;
  if (!Number.isSafeInteger(a) || (a as number) < 0 || (a as number) > sent) badField('acks answer count is not an integer between 0 and the acks sent');
  return a as number;
}

export class Uploader {
  readonly #o: UploaderOptions;
  readonly #log: Logger;
  readonly #breaker: CircuitBreaker;
  readonly #c = { requests: 0, uploaded: 0, duplicates: 0, refused: 0, acksUploaded: 0, failures: 0 };
  #lastSuccessAt: number | undefined;
  #lastError: string | undefined;
  #stopped = true;
  #loop: Promise<void> | undefined;
  readonly #doze: Doze;
  #unsubscribe: (() => void) | undefined;
  /** Records to send one at a time after a batch was refused. */
  #singles = 0;
  #lastExpire = Number.NEGATIVE_INFINITY;
  #abort = new AbortController();

  constructor(options: UploaderOptions) {
    ({ o: this.#o, log: this.#log, breaker: this.#breaker, doze: this.#doze } = loopParts(options));
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#unsubscribe = this.#o.queue.onCommit(() => this.#poke());
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe?.();
    this.#abort.abort();
    this.#poke();
    await this.#loop;
  }

  stats(): UploaderStats {
    return { ...this.#c, circuit: this.#breaker.current, lastSuccessAt: this.#lastSuccessAt, lastError: this.#lastError };
  }

  #poke(): void {
    this.#doze.wake();
  }

  /**
   * The telemetry to send this round: one batch of the oldest records; while they fill whole
   * batches, up to UPLOADS_IN_FLIGHT batches of successive records; one record while a refused
   * batch is resent record by record.
   */
  #telemetryBatches(): QueuedTelemetry[][] {
    if (this.#singles > 0) {
      const one = this.#o.queue.oldest(1);
      return one.length > 0 ? [one] : [];
    }
    const batches: QueuedTelemetry[][] = [];
    let after = 0;
    // Several at once only through a closed circuit: a half-open one lets one probe through, and
    // the others failing would count as a failed round (the backoff) just as the backend is back.
    const width = this.#breaker.current === 'closed' ? UPLOADS_IN_FLIGHT : 1;
    while (batches.length < width) {
      const records = this.#o.queue.oldest(MAX_UPLOAD_BATCH, after);
      if (records.length === 0) break;
      batches.push(records);
      if (records.length < MAX_UPLOAD_BATCH) break;
      after = (records[records.length - 1] as QueuedTelemetry).id;
    }
    return batches;
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return this.#doze.sleep(ms);
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped) {
      const now = this.#o.clock.now();
      if (now - this.#lastExpire >= EXPIRE_EVERY_MS) {
        this.#lastExpire = now;
        this.#o.queue.expire();
      }
      const acks = this.#o.queue.oldestAcks(MAX_UPLOAD_BATCH);
      const batches = this.#telemetryBatches();
      if (acks.length === 0 && batches.length === 0) {
        this.#singles = 0;
        await this.#sleep(EXPIRE_EVERY_MS);
        continue;
      }
      try {
        if (acks.length > 0) await this.#sendAcks(acks);
        // Every batch is answered (or fails) before the next round reads the queue again, so a
        // failed batch's records are the oldest of the next round.
        const outcomes = await Promise.allSettled(batches.map((b) => this.#sendTelemetry(b)));
        const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
        attempt = 0;
      } catch (e) {
        if (this.#stopped) return;
        const err = e instanceof BackendError ? e : new BackendError('response', 'unexpected upload failure', { cause: e });
        this.#c.failures += 1;
        this.#lastError = `${err.kind}${err.status !== undefined ? ` ${err.status}` : ''}: ${err.message}`;
        const delay = Math.max(backoffMs(attempt, this.#o.retryBaseMs, this.#o.retryMaxMs, this.#o.random), this.#breaker.retryInMs);
        attempt += 1;
        this.#log.debug('upload failed; retrying', { kind: err.kind, status: err.status, attempt, delayMs: delay });
        await this.#sleep(delay);
      }
    }
  }

  /** A session-signed POST through the breaker; returns the JSON of a 200. */
  async #post(path: string, body: unknown): Promise<unknown> {
    const session = acquireSession(this.#breaker, this.#o.session);
    try {
      const req = await signedRequest(this.#o.http, 'POST', path, body, {
        keyid: `session:${this.#o.gw}`,
        alg: 'ed25519',
        nowMs: this.#o.clock.now(),
        sign: (base) => session.signer.sign(base),
      });
      this.#c.requests += 1;
      const res = await this.#o.http.request({ ...req, signal: AbortSignal.any([AbortSignal.timeout(this.#o.requestTimeoutMs), this.#abort.signal]) });
      const json = expectJson(res, 200);
      this.#breaker.success();
      this.#lastSuccessAt = this.#o.clock.now();
      return json;
    } catch (e) {
      const err = e instanceof BackendError ? e : new BackendError('response', 'cannot upload', { cause: e });
      this.#breaker.failed(err);
      throw err;
    }
  }

  async #sendTelemetry(records: QueuedTelemetry[]): Promise<void> {
    const body = {
      records: records.map((r) => ({
        dev: r.dev,
        sid: base64UrlEncode(r.sid),
        seq: r.seq,
        topic: r.topic,
        body: base64UrlEncode(r.body),
        receivedAt: r.receivedAt,
        ...(r.mid === undefined ? {} : { mid: r.mid }),
      })),
    };
    let json: unknown;
    try {
      json = await this.#post(`/v1/gateways/${encodeURIComponent(this.#o.gw)}/telemetry`, body);
    } catch (e) {
      if (!refusedForGood(e)) throw e;
      const named = namedRefusals(e, records.length);
      if (named !== undefined) {
        // 403 not-granted names the refused records (nothing was stored): drop those, resend the rest.
        const drop = named.map((x) => records[x.index] as QueuedTelemetry);
        this.#c.refused += drop.length;
        for (const x of named) {
          const r = records[x.index] as QueuedTelemetry;
          this.#log.warn('backend refused a telemetry record for good; it leaves the queue', { dev: r.dev, seq: r.seq, topic: r.topic, why: x.why });
        }
        this.#o.queue.remove(drop);
        return;
      }
      if (records.length > 1) {
        // Find the records refused: resend this batch one by one.
        this.#singles = records.length;
        this.#log.warn('backend refused a telemetry batch; resending it record by record', { records: records.length, status: e.status, type: e.problem?.type });
        return;
      }
      const r = records[0] as QueuedTelemetry;
      this.#c.refused += 1;
      this.#log.warn('backend refused a telemetry record for good; it leaves the queue', { dev: r.dev, seq: r.seq, topic: r.topic, status: e.status, type: e.problem?.type });
      this.#o.queue.remove(records);
      this.#singles = Math.max(0, this.#singles - 1);
      return;
    }
    const a = readTelemetryAnswer(json, records.length);
    this.#o.queue.remove(records);
    this.#c.uploaded += a.accepted;
    this.#c.duplicates += a.duplicates;
    if (this.#singles > 0) this.#singles -= 1;
  }

  async #sendAcks(acks: QueuedAck[]): Promise<void> {
    const body = { acks: acks.map((a) => ({ dev: a.dev, cid: a.cid, status: a.status, at: a.at })) };
    let json: unknown;
    try {
      json = await this.#post(`/v1/gateways/${encodeURIComponent(this.#o.gw)}/acks`, body);
    } catch (e) {
      if (!refusedForGood(e)) throw e;
      const named = namedRefusals(e, acks.length);
      const drop = named === undefined ? acks : named.map((x) => acks[x.index] as QueuedAck);
      this.#c.refused += drop.length;
      this.#log.warn('backend refused acks for good; they leave the queue', { acks: drop.length, of: acks.length, status: e.status, type: e.problem?.type, why: named?.[0]?.why });
      this.#o.queue.removeAcks(drop);
      return;
    }
    readAcksAnswer(json, acks.length);
    this.#o.queue.removeAcks(acks);
    this.#c.acksUploaded += acks.length;
  }
}

/**
 * The entries a 403 `not-granted` names as refused (the backend stored none of the request), when
 * it names a valid, duplicate-free set of indexes of the `sent` entries; else undefined.
 */
export function namedRefusals(e: BackendError, sent: number): RefusedEntry[] | undefined {
  if (e.status !== 403 || e.problem?.type !== NOT_GRANTED) return undefined;
  const r = e.problem.refused;
  if (r === undefined) return undefined;
  const seen = new Set<number>();
  for (const x of r) {
    if (x.index >= sent || seen.has(x.index)) return undefined;
    seen.add(x.index);
  }
  return r;
}

/** A 4xx that retrying cannot change: not 401 (our session key, renewed) nor 408/429 (later). */
function refusedForGood(e: unknown): e is BackendError {
  return e instanceof BackendError && e.kind === 'client' && e.status !== undefined && e.status !== 401 && e.status !== 408 && e.status !== 429;
}
