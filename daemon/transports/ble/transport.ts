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
 *
 * This file holds the lifecycle, the scan, discovery handling (`#onDiscover`) and the
 * concurrency; one link's exchange (v1 or v2) is exchange.ts, the events are events.ts.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'winston';
import { silentLogger } from '../../../common/log/logger.js';
import type { AuthPipeline, IngressConnection } from '../../pipeline/types.js';
import { GATEHOUSE_SERVICE_UUID } from '../../../protocol/index.js';
import { DenyList, type DenyListOptions } from './deny-list.js';
import { BleError } from './errors.js';
import type { BleExchangeEvent, BleSessionEvent, BleSkipReason, BleTransportEvents, BleTransportStats } from './events.js';
import { runExchange, SERVICE, type ExchangeHost, type ExchangeResult } from './exchange.js';
import type { BleAdapterState, BleCentral, BleDiscovery } from './port.js';
import { ScanLog, type ScanLogOptions, type ScanPeripheral } from './scan.js';
import type { V2SessionHost } from './v2-link.js';

export type { BleExchangeEvent, BleSessionEvent, BleSkipReason, BleTransportEvents, BleTransportStats } from './events.js';

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
  readonly #scanLog: ScanLog;

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

  /** Nearby peripherals advertising the Gatehouse service, with their deny-list state (`gatehouse scan`). */
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
    const conn: IngressConnection = { id: `ble:${++this.#seq}`, transport: 'ble', remote: d.address };
    entry.done = runExchange(this.#exchangeHost(), d, conn, controller, entry).finally(() => {
      this.#active.delete(d.id);
      this.#pump();
    });
  }

  /** What `runExchange` (exchange.ts) needs from this transport. */
  #exchangeHost(): ExchangeHost {
    return {
      central: this.#central,
      pipeline: this.#pipeline,
      log: this.#log,
      versions: this.#versions,
      v2: this.#v2,
      exchangeTimeoutMs: this.#exchangeTimeoutMs,
      disconnectTimeoutMs: this.#disconnectTimeoutMs,
      idleTimeoutMs: this.#idleTimeoutMs,
      connected: (conn, d) => {
        this.#events.emit('connected', { connection: conn.id, address: d.address, active: this.#active.size });
      },
      finish: (conn, d, result) => this.#finish(conn, d, throttleKey(d), result),
      becameSession: () => this.#pump(),
      learned: (d, version, found) => this.#scanLog.learned(throttleKey(d), version, found),
      sessionEnded: (event: BleSessionEvent) => {
        this.#log.info('BLE v2 session ended', event);
        this.#events.emit('session', event);
      },
    };
  }

  #finish(conn: IngressConnection, d: BleDiscovery, address: string, result: ExchangeResult): void {
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

}

function throttleKey(d: BleDiscovery): string {
  return d.address === 'unknown' ? `id:${d.id}` : d.address;
}
