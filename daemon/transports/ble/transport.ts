/**
 * The BLE transport (protocol-v1 "BLE transport"): the gateway is the GATT client. For every
 * peripheral advertising the Gatehouse service it connects, subscribes, sends a `challenge`
 * (no challenge-request on BLE), reassembles the notified `hello`, hands it to the pipeline,
 * writes the `welcome` or `reject`, and disconnects. The device id is the one in the hello; the
 * BLE address only throttles retries (deny-list), it is never an identity.
 *
 * Bounded everywhere: at most `maxConcurrent` links, a bounded queue of discovered peripherals
 * (a full queue drops the discovery: the peripheral advertises again), one deadline per
 * exchange, a timeout on every radio call (in the `BleCentral`).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'winston';
import { silentLogger } from '../../../common/log/logger.js';
import type { AuthPipeline, IngressConnection } from '../../pipeline/types.js';
import {
  decodeDownMessage,
  BleFrameError,
  frameMessage,
  GATEHOUSE_CHARACTERISTIC_UUID,
  GATEHOUSE_SERVICE_UUID,
  GATEHOUSE_V2_CHARACTERISTIC_UUID,
} from '../../../protocol/index.js';
import type { ReasonCode } from '../../../protocol/index.js';
import { DenyList, type DenyListOptions } from './deny-list.js';
import { BleError, type BleErrorCode } from './errors.js';
import { helloReceiver, raceAbort } from './hello-receiver.js';
import { normaliseUuid, type BleAdapterState, type BleCentral, type BleDiscovery } from './port.js';
import { ScanLog, type ScanLogOptions, type ScanPeripheral } from './scan.js';
import { runV2Link, type V2LinkResult, type V2SessionHost } from './v2-link.js';


const SERVICE = normaliseUuid(GATEHOUSE_SERVICE_UUID);
const CHARACTERISTIC = normaliseUuid(GATEHOUSE_CHARACTERISTIC_UUID);
const CHARACTERISTIC_V2 = normaliseUuid(GATEHOUSE_V2_CHARACTERISTIC_UUID);

/** Options of a `BleTransport`. */
export interface BleTransportOptions {
  central: BleCentral;
  pipeline: AuthPipeline;
  logger?: Logger;
  /** Links open at once (default 2): small BLE controllers hold few connections. */
  maxConcurrent?: number;
  /** Discovered peripherals waiting for a free link (default 16); beyond it discoveries are dropped. */
  maxQueued?: number;
  /** Deadline of one whole exchange, connect to disconnect (ms, default 30 000). */
  exchangeTimeoutMs?: number;
  /** Timeout of the final disconnect (ms, default 5 000). */
  disconnectTimeoutMs?: number;
  /** Back-off of failing peripherals, by address. */
  denyList?: DenyListOptions;
  /** First retry of a scan start that failed (ms, default 2 000), doubling up to 60 000. */
  scanRetryMs?: number;
  /**
   * Protocol versions this gateway accepts (default [1, 2]; the configuration's
   * `protocol.versions` once the schema has it). v2 is used when the peripheral's service has
   * the v2 characteristic and `v2` is given.
   */
  versions?: ReadonlyArray<1 | 2>;
  /** The gateway's v2 logic; without it every link speaks v1. */
  v2?: V2SessionHost;
  /** A v2 session ends after this long without a frame either way (ms, default 30 000). */
  idleTimeoutMs?: number;
  /** Links open at once, v2 sessions included (default 8); exchanges are bounded by `maxConcurrent`. */
  maxLiveLinks?: number;
  /** Bounds of the log of nearby peripherals (`gatehouse scan`). */
  scanLog?: ScanLogOptions;
}

/** How one exchange ended, for the status socket and metrics. */
export interface BleExchangeEvent {
  /** The pipeline connection id, `ble:<n>`. */
  connection: string;
  /** BLE address, for logs only. */
  address: string;
  outcome: 'welcome' | 'reject' | 'failed';
  /** The device id from the hello, when the pipeline decided on one. */
  dev?: string;
  reason?: ReasonCode;
  /** The BLE error code when the exchange failed. */
  error?: string;
  /** Hold-off before this address is tried again (ms). */
  holdOffMs: number;
  /** The protocol version of the exchange (2 on the v2 characteristic). */
  version?: 1 | 2;
}

/** A v2 session that ended (its welcome was an `exchange` event). */
export interface BleSessionEvent {
  connection: string;
  address: string;
  dev: string;
  /** `bye`, `idle`, `malformed`, `expired`, … or the BLE error code that ended it. */
  end: string;
  framesIn: number;
  framesOut: number;
  durationMs: number;
}

/** Why a discovery did not lead to a connection. */
export type BleSkipReason = 'not-advertising-service' | 'not-connectable' | 'held-off' | 'queue-full' | 'busy-with-it';

/** Events of a `BleTransport`. */
export interface BleTransportEvents {
  state: (state: BleAdapterState) => void;
  connected: (info: { connection: string; address: string; active: number }) => void;
  exchange: (event: BleExchangeEvent) => void;
  session: (event: BleSessionEvent) => void;
  skipped: (info: { address: string; reason: BleSkipReason; malformed: boolean }) => void;
  error: (err: BleError) => void;
}

/** Counters for the status socket. */
export interface BleTransportStats {
  state: BleAdapterState;
  scanning: boolean;
  active: number;
  queued: number;
  /** Most links observed open at once since start. */
  maxActive: number;
  /** v2 sessions live now (links kept after a welcome). */
  sessions: number;
  welcomed: number;
  rejected: number;
  failed: number;
  heldOff: number;
}

interface Active {
  controller: AbortController;
  done: Promise<void>;
  /** A v2 session after its welcome: counts against `maxLiveLinks`, not `maxConcurrent`. */
  session: boolean;
}

/** The BLE transport. Nothing happens until `start()`. */
export class BleTransport {
  readonly #central: BleCentral;
  readonly #pipeline: AuthPipeline;
  readonly #log: Logger;
  readonly #events = new EventEmitter();
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #exchangeTimeoutMs: number;
  readonly #disconnectTimeoutMs: number;
  readonly #deny: DenyList;
  readonly #scanLog: ScanLog;
  readonly #active = new Map<string, Active>();
  readonly #queue = new Map<string, BleDiscovery>();
  #detach: Array<() => void> = [];
  readonly #scanRetryMs: number;
  readonly #versions: ReadonlyArray<1 | 2>;
  readonly #v2: V2SessionHost | undefined;
  readonly #idleTimeoutMs: number;
  readonly #maxLiveLinks: number;
  #scanRetry: NodeJS.Timeout | undefined;
  #scanFailures = 0;
  #running = false;
  #starting: Promise<void> | undefined;
  #scanning = false;
  #seq = 0;
  #counts = { maxActive: 0, welcomed: 0, rejected: 0, failed: 0 };

  constructor(options: BleTransportOptions) {
    this.#central = options.central;
    this.#pipeline = options.pipeline;
    this.#log = options.logger ?? silentLogger();
    this.#maxConcurrent = options.maxConcurrent ?? 2;
    this.#maxQueued = options.maxQueued ?? 16;
    this.#exchangeTimeoutMs = options.exchangeTimeoutMs ?? 30_000;
    this.#disconnectTimeoutMs = options.disconnectTimeoutMs ?? 5_000;
    this.#scanRetryMs = options.scanRetryMs ?? 2_000;
    this.#versions = options.versions ?? [1, 2];
    this.#v2 = options.v2;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.#maxLiveLinks = options.maxLiveLinks ?? 8;
    if (this.#versions.length === 0 || this.#versions.some((v) => v !== 1 && v !== 2)) throw new RangeError('versions must list 1, 2 or both');
    for (const [name, v] of Object.entries({
      idleTimeoutMs: this.#idleTimeoutMs,
      maxLiveLinks: this.#maxLiveLinks,
      maxConcurrent: this.#maxConcurrent,
      maxQueued: this.#maxQueued,
      exchangeTimeoutMs: this.#exchangeTimeoutMs,
      disconnectTimeoutMs: this.#disconnectTimeoutMs,
      scanRetryMs: this.#scanRetryMs,
    })) {
      if (!Number.isSafeInteger(v) || v < (name === 'maxQueued' ? 0 : 1)) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    this.#deny = new DenyList(options.denyList);
    this.#scanLog = new ScanLog(options.scanLog);
  }

  /** Nearby peripherals advertising the Gatehouse service (scan.ts), with their deny-list state. */
  nearby(): { limits: { maxEntries: number; ttlSec: number }; peripherals: ScanPeripheral[] } {
    const limits = { maxEntries: this.#scanLog.maxEntries, ttlSec: Math.round(this.#scanLog.ttlMs / 1000) };
    return { limits, peripherals: this.#scanLog.list((a) => ({ holdOffMs: this.#deny.holdOff(a), failures: this.#deny.failures(a) })) };
  }

  /** Listen to an event; returns the unsubscribe function. */
  on<E extends keyof BleTransportEvents>(event: E, listener: BleTransportEvents[E]): () => void {
    this.#events.on(event, listener);
    return () => this.#events.off(event, listener);
  }

  stats(): BleTransportStats {
    return {
      state: this.#central.state,
      scanning: this.#scanning,
      active: this.#active.size,
      sessions: this.#sessionCount(),
      queued: this.#queue.size,
      heldOff: this.#deny.size,
      ...this.#counts,
    };
  }

  /**
   * Start the radio and scan while the adapter is `poweredOn`. Rejects with `GH_BLE_UNAVAILABLE`
   * ("BLE unavailable: <reason>") when there is no usable Bluetooth; the daemon carries on without it.
   */
  start(): Promise<void> {
    this.#starting ??= this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#running) return;
    try {
      await this.#central.start();
    } catch (err) {
      const e = err instanceof BleError ? err : new BleError('GH_BLE_UNAVAILABLE', `BLE unavailable: ${String(err)}`, { cause: err });
      this.#log.warn(e.message, { code: e.code });
      throw e;
    }
    this.#running = true;
    this.#detach = [
      this.#central.on('state', (s) => this.#onState(s)),
      this.#central.on('discover', (d) => this.#onDiscover(d)),
    ];
    if (this.#central.state === 'poweredOn') await this.#startScanning();
    else this.#log.info('BLE adapter not powered on; waiting', { state: this.#central.state });
  }

  /** Abort every exchange, stop scanning and release the radio. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#cancelScanRetry();
    for (const d of this.#detach) d();
    this.#detach = [];
    this.#queue.clear();
    const pending = [...this.#active.values()];
    for (const a of pending) a.controller.abort(new BleError('GH_BLE_ABORTED', 'BLE transport stopping'));
    await Promise.all(pending.map((a) => a.done));
    this.#scanning = false;
    await this.#central.stop();
  }

  async #startScanning(): Promise<void> {
    this.#cancelScanRetry();
    try {
      await this.#central.startScanning([SERVICE]);
      this.#scanning = true;
      this.#scanFailures = 0;
      this.#log.info('BLE scanning', { service: GATEHOUSE_SERVICE_UUID });
    } catch (err) {
      this.#scanning = false;
      const e = err instanceof BleError ? err : new BleError('GH_BLE_OPERATION_FAILED', 'startScanning failed', { cause: err });
      this.#log.error('BLE scan could not start', { code: e.code, error: e.message });
      this.#events.emit('error', e);
      // Try again while the adapter stays on (a later poweredOn also restarts the scan).
      if (this.#running && this.#central.state === 'poweredOn') {
        const delay = Math.min(60_000, this.#scanRetryMs * 2 ** Math.min(this.#scanFailures++, 10));
        this.#scanRetry = setTimeout(() => {
          this.#scanRetry = undefined;
          if (this.#running && !this.#scanning && this.#central.state === 'poweredOn') void this.#startScanning();
        }, delay);
      }
    }
  }

  #cancelScanRetry(): void {
    if (this.#scanRetry) clearTimeout(this.#scanRetry);
    this.#scanRetry = undefined;
  }

  #onState(state: BleAdapterState): void {
    this.#events.emit('state', state);
    if (!this.#running) return;
    if (state === 'poweredOn') {
      if (!this.#scanning) void this.#startScanning();
      return;
    }
    // The adapter went away: scanning stopped with it, links are gone, queued peripherals stale.
    this.#scanning = false;
    this.#cancelScanRetry();
    this.#queue.clear();
    for (const a of this.#active.values()) a.controller.abort(new BleError('GH_BLE_ADAPTER_OFF', `adapter is ${state}`));
  }

  #onDiscover(d: BleDiscovery): void {
    if (!this.#running || this.#central.state !== 'poweredOn') return;
    const address = throttleKey(d);
    this.#scanLog.discovered(address, d, SERVICE);
    const skip = (reason: BleSkipReason): void => {
      this.#events.emit('skipped', { address, reason, malformed: d.malformed });
    };
    // Malformed fields were dropped by the central; what is left must still name our service.
    if (!d.advertisement.serviceUuids.includes(SERVICE)) return skip('not-advertising-service');
    if (!d.connectable) return skip('not-connectable');
    if (this.#active.has(d.id) || this.#queue.has(d.id)) return skip('busy-with-it');
    if (this.#deny.holdOff(address) > 0) return skip('held-off');
    if (this.#hasRoom()) {
      this.#begin(d);
      return;
    }
    if (this.#queue.size >= this.#maxQueued) return skip('queue-full');
    this.#queue.set(d.id, d);
  }

  #pump(): void {
    while (this.#running && this.#hasRoom() && this.#queue.size > 0) {
      const next = this.#queue.values().next();
      if (next.done) return;
      this.#queue.delete(next.value.id);
      // Re-check: the hold-off may have started while it waited.
      if (this.#deny.holdOff(throttleKey(next.value)) > 0) continue;
      this.#begin(next.value);
    }
  }

  #sessionCount(): number {
    let n = 0;
    for (const a of this.#active.values()) if (a.session) n++;
    return n;
  }

  /** Room for one more exchange: under `maxConcurrent` exchanges and `maxLiveLinks` links. */
  #hasRoom(): boolean {
    return this.#active.size - this.#sessionCount() < this.#maxConcurrent && this.#active.size < this.#maxLiveLinks;
  }

  #begin(d: BleDiscovery): void {
    const controller = new AbortController();
    const entry: Active = { controller, done: Promise.resolve(), session: false };
    this.#active.set(d.id, entry);
    this.#counts.maxActive = Math.max(this.#counts.maxActive, this.#active.size);
    entry.done = this.#exchange(d, controller, entry).finally(() => {
      this.#active.delete(d.id);
      this.#pump();
    });
  }

  async #exchange(d: BleDiscovery, controller: AbortController, entry: Active): Promise<void> {
    const conn: IngressConnection = { id: `ble:${++this.#seq}`, transport: 'ble', remote: d.address };
    const address = throttleKey(d);
    const signal = controller.signal;
    const timer = setTimeout(
      () => controller.abort(new BleError('GH_BLE_TIMEOUT', `exchange not done within ${this.#exchangeTimeoutMs} ms`)),
      this.#exchangeTimeoutMs,
    );
    const offDisconnect = this.#central.on('disconnect', (e) => {
      if (e.id === d.id) controller.abort(new BleError('GH_BLE_DISCONNECTED', `peripheral disconnected (reason ${e.reason ?? 'unknown'})`));
    });
    const log = this.#log.child({ connection: conn.id, address: d.address });
    let connected = false;
    let bound = false;
    let inFlight: Promise<unknown> | undefined;
    let result: Omit<BleExchangeEvent, 'connection' | 'address' | 'holdOffMs'> & { retry?: number } = { outcome: 'failed' };
    try {
      const opts = { signal };
      await this.#central.connect(d.id, opts);
      connected = true;
      this.#events.emit('connected', { connection: conn.id, address: d.address, active: this.#active.size });
      const version = await this.#pickVersion(d.id, opts, address);
      if (version === 2) {
        const r = await this.#exchangeV2(d, conn, controller, entry, () => clearTimeout(timer));
        result = r.welcomed ? { outcome: 'welcome', dev: r.welcomed } : r.result;
        return;
      }
      const info = await this.#central.discover(d.id, SERVICE, CHARACTERISTIC, opts);
      this.#scanLog.learned(address, 1, true);
      if (!info.properties.includes('write') || !info.properties.includes('notify')) {
        throw new BleError('GH_BLE_GATT_MISMATCH', `characteristic lacks write+notify: ${info.properties.join(',')}`);
      }
      const mtu = this.#central.mtu(d.id);
      const hello = helloReceiver(mtu, signal);
      await this.#central.subscribe(d.id, SERVICE, CHARACTERISTIC, hello.push, opts);
      bound = true;
      // protocol-v1 "BLE transport": no challenge-request; gn is bound to this connection alone.
      const challenge = await raceAbort((inFlight = this.#pipeline.connectionChallenge(conn)), signal);
      const challengeReject = rejectIn(challenge);
      await this.#send(d.id, challenge, mtu, signal);
      if (challengeReject) {
        result = { outcome: 'reject', reason: challengeReject.reason, ...(challengeReject.retry === undefined ? {} : { retry: challengeReject.retry }) };
        return;
      }
      const helloBytes = await hello.message;
      const outcome = await raceAbort((inFlight = this.#pipeline.hello(conn, helloBytes)), signal);
      await this.#send(d.id, outcome.reply, mtu, signal);
      if (outcome.welcomed) result = { outcome: 'welcome', dev: outcome.welcomed.dev };
      else {
        result = { outcome: 'reject', reason: outcome.rejected?.reason ?? 'internal' };
        if (outcome.rejected?.dev !== undefined) result.dev = outcome.rejected.dev;
        if (outcome.rejected?.retry !== undefined) result.retry = outcome.rejected.retry;
      }
    } catch (err) {
      const e = toBleError(signal.aborted ? signal.reason : err, err);
      result = { outcome: 'failed', error: e.code };
      log.info('BLE exchange failed', { code: e.code, error: e.message });
    } finally {
      clearTimeout(timer);
      offDisconnect();
      if (connected) {
        // protocol-v1: G disconnects after the welcome or reject (and after any failure).
        await this.#central.disconnect(d.id, { timeoutMs: this.#disconnectTimeoutMs }).catch((err: unknown) => {
          log.warn('BLE disconnect failed', { error: err instanceof Error ? err.message : String(err) });
        });
      }
      if (bound) {
        this.#pipeline.connectionClosed(conn);
        // An aborted exchange may leave a pipeline call running; whatever it binds to this
        // connection (a challenge) is dropped once it settles, not left to expire.
        const close = (): void => this.#pipeline.connectionClosed(conn);
        inFlight?.then(close, close);
      }
      if (!entry.session) this.#finish(conn, d, address, result);
    }
  }

  /** 2 when v2 is allowed, a host is given and the service has the v2 characteristic; else 1. */
  async #pickVersion(id: string, opts: { signal: AbortSignal }, address: string): Promise<1 | 2> {
    if (!this.#versions.includes(2) || this.#v2 === undefined) return 1;
    try {
      const info = await this.#central.discover(id, SERVICE, CHARACTERISTIC_V2, opts);
      this.#scanLog.learned(address, 2, true);
      if (!info.properties.includes('write') || !info.properties.includes('notify')) {
        throw new BleError('GH_BLE_GATT_MISMATCH', `v2 characteristic lacks write+notify: ${info.properties.join(',')}`);
      }
      return 2;
    } catch (err) {
      if (err instanceof BleError && err.code === 'GH_BLE_GATT_MISMATCH') this.#scanLog.learned(address, 2, false);
      if (err instanceof BleError && err.code === 'GH_BLE_GATT_MISMATCH' && this.#versions.includes(1)) return 1;
      throw err;
    }
  }

  /**
   * One v2 exchange and its session (v2-link.ts). The welcome is reported as an `exchange` event
   * when it is written; the session's end as a `session` event.
   */
  async #exchangeV2(
    d: BleDiscovery,
    conn: IngressConnection,
    controller: AbortController,
    entry: Active,
    stopDeadline: () => void,
  ): Promise<{ welcomed?: string; result: Omit<BleExchangeEvent, 'connection' | 'address' | 'holdOffMs'> & { retry?: number } }> {
    const host = this.#v2;
    if (host === undefined) throw new BleError('GH_BLE_GATT_MISMATCH', 'no v2 host');
    const signal = controller.signal;
    const mtu = this.#central.mtu(d.id);
    let welcomedAt = 0;
    let dev: string | undefined;
    let r: V2LinkResult | undefined;
    let end: string | undefined;
    try {
      r = await runV2Link({
        connection: conn,
        host,
        mtu,
        signal,
        idleTimeoutMs: this.#idleTimeoutMs,
        writeChunk: (chunk, s) => this.#central.write(d.id, SERVICE, CHARACTERISTIC_V2, chunk, { signal: s }),
        subscribe: (onValue) => this.#central.subscribe(d.id, SERVICE, CHARACTERISTIC_V2, onValue, { signal }),
        onWelcomed: (who) => {
          stopDeadline();
          dev = who;
          welcomedAt = performance.now();
          this.#finish(conn, d, throttleKey(d), { outcome: 'welcome', dev: who, version: 2 });
          entry.session = true;
          this.#pump();
        },
      });
      end = r.sessionEnd;
    } catch (err) {
      if (dev === undefined) throw err;
      end = err instanceof BleError ? err.code : signal.aborted ? String((signal.reason as { code?: string }).code) : 'GH_BLE_OPERATION_FAILED';
    }
    if (dev !== undefined) {
      const event: BleSessionEvent = {
        connection: conn.id,
        address: d.address,
        dev,
        end: end ?? 'unknown',
        framesIn: r?.framesIn ?? 0,
        framesOut: r?.framesOut ?? 0,
        durationMs: Math.round(performance.now() - welcomedAt),
      };
      this.#log.info('BLE v2 session ended', event);
      this.#events.emit('session', event);
      return { welcomed: dev, result: { outcome: 'welcome', dev, version: 2 } };
    }
    const result: Omit<BleExchangeEvent, 'connection' | 'address' | 'holdOffMs'> & { retry?: number } = { outcome: 'reject', version: 2 };
    if (r?.reason !== undefined) result.reason = r.reason;
    if (r?.dev !== undefined) result.dev = r.dev;
    if (r?.retry !== undefined) result.retry = r.retry;
    return { result };
  }

  #finish(
    conn: IngressConnection,
    d: BleDiscovery,
    address: string,
    result: Omit<BleExchangeEvent, 'connection' | 'address' | 'holdOffMs'> & { retry?: number },
  ): void {
    let holdOffMs: number;
    if (result.outcome === 'welcome') {
      this.#counts.welcomed++;
      this.#deny.recordSuccess(address);
      holdOffMs = this.#deny.holdOff(address);
    } else {
      if (result.outcome === 'reject') this.#counts.rejected++;
      else this.#counts.failed++;
      // protocol-v1 key 16: the peripheral waits `retry` seconds; so does the gateway.
      holdOffMs = this.#deny.recordFailure(address, (result.retry ?? 0) * 1000);
    }
    const { retry: _retry, ...rest } = result;
    const event: BleExchangeEvent = { connection: conn.id, address: d.address, ...rest, holdOffMs };
    this.#scanLog.outcome(address, rest);
    this.#log.info('BLE exchange', event);
    this.#events.emit('exchange', event);
  }

  async #send(id: string, message: Uint8Array, mtu: number, signal: AbortSignal): Promise<void> {
    for (const chunk of frameMessage(message, mtu)) await this.#central.write(id, SERVICE, CHARACTERISTIC, chunk, { signal });
  }
}

function throttleKey(d: BleDiscovery): string {
  return d.address === 'unknown' ? `id:${d.id}` : d.address;
}

/** The reject inside a pipeline's challenge answer, if it is one. */
function rejectIn(bytes: Uint8Array): { reason: ReasonCode; retry?: number } | undefined {
  const m = decodeDownMessage(bytes);
  if (m.type !== 'reject') return undefined;
  const payload = m.message;
  return payload.retry === undefined ? { reason: payload.reason } : { reason: payload.reason, retry: payload.retry };
}

function toBleError(preferred: unknown, original: unknown): BleError {
  if (preferred instanceof BleError) return preferred;
  if (original instanceof BleError) return original;
  // A framing failure keeps its code (GH_BLE_FRAME_*), as a transport error.
  const frame = preferred instanceof BleFrameError ? preferred : original instanceof BleFrameError ? original : undefined;
  if (frame !== undefined) return new BleError(frame.code, frame.message, { cause: frame });
  const code: BleErrorCode = 'GH_BLE_OPERATION_FAILED';
  return new BleError(code, original instanceof Error ? original.message : String(original), { cause: original });
}
