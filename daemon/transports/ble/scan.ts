/**
 * What the BLE transport has seen of nearby Gatehouse peripherals, for `gatehouse scan` (the
 * status socket's `/v1/scan`): each address advertising the Gatehouse service, its last RSSI,
 * the protocol versions learned at connect (the v1/v2 characteristics found or not), the last
 * exchange's outcome and the deny-list's hold-off. The transport feeds it from the scan it runs
 * anyway; nothing here opens the radio. Bounded: at most `maxEntries` addresses (the least
 * recently seen is evicted) and an entry not seen for `ttlMs` is dropped. The address is shown,
 * never used as an identity (protocol-v1).
 */
import type { BleDiscovery } from './port.js';

/** Options of a `ScanLog`. */
export interface ScanLogOptions {
  /** Addresses kept at most (LRU by last sighting); default 256. */
  maxEntries?: number;
  /** An address not seen for this long is forgotten (ms); default 300 000. */
  ttlMs?: number;
  /** Unix milliseconds; injected for tests. */
  now?: () => number;
}

/** The deny-list's state of one address. */
export interface ScanDenyState {
  /** Milliseconds before the transport tries this address again; 0 when it may now. */
  holdOffMs: number;
  /** Consecutive failed or rejected exchanges. */
  failures: number;
}

/** The last exchange with an address, as the transport reported it. */
export interface ScanOutcome {
  outcome: 'welcome' | 'reject' | 'failed';
  /** Unix milliseconds. */
  at: number;
  dev?: string;
  reason?: string;
  /** The BLE error code of a failed exchange. */
  error?: string;
  version?: 1 | 2;
}

/** One nearby peripheral as `/v1/scan` serves it. */
export interface ScanPeripheral {
  /** BLE address (`id:<noble id>` when the stack does not report one); for display only. */
  address: string;
  /** The advertised local name, when there is one. */
  name?: string;
  /** RSSI of the last advertisement (dBm), when the stack reported it. */
  rssi?: number;
  connectable: boolean;
  /** Unix milliseconds of the first and last advertisement seen. */
  firstSeenAt: number;
  lastSeenAt: number;
  /** Advertisements seen since the entry was made. */
  seen: number;
  /**
   * Protocol versions whose characteristic the transport found at connect, lowest first; empty
   * when nothing was learned beyond the advertisement (`versionsKnown: false`).
   */
  versions: Array<1 | 2>;
  /** False when the transport has not connected yet: the service is only advertised. */
  versionsKnown: boolean;
  lastOutcome?: ScanOutcome;
  deny: ScanDenyState;
}

interface Entry extends Pick<ScanPeripheral, 'address' | 'name' | 'rssi' | 'connectable' | 'firstSeenAt' | 'lastSeenAt' | 'seen' | 'lastOutcome'> {
  /** What each characteristic's discovery said: true found, false missing, absent not asked. */
  v1?: boolean;
  v2?: boolean;
}

/** The bounded log of nearby peripherals. */
export class ScanLog {
  readonly #max: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  /** Insertion order is the order of the last sighting: the first entry is evicted first. */
  readonly #entries = new Map<string, Entry>();

  constructor(options: ScanLogOptions = {}) {
    this.#max = options.maxEntries ?? 256;
    this.#ttlMs = options.ttlMs ?? 300_000;
    this.#now = options.now ?? Date.now;
    if (!Number.isSafeInteger(this.#max) || this.#max < 1) throw new RangeError(`maxEntries must be a positive integer, got ${this.#max}`);
    if (!Number.isSafeInteger(this.#ttlMs) || this.#ttlMs < 1) throw new RangeError(`ttlMs must be a positive integer, got ${this.#ttlMs}`);
  }

  get maxEntries(): number {
    return this.#max;
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** Addresses kept now (expired ones included until the next read). */
  get size(): number {
    return this.#entries.size;
  }

  /** One advertisement, keyed by `address` (the transport's throttle key). Others than ours are ignored. */
  discovered(address: string, d: BleDiscovery, service: string): void {
    if (!d.advertisement.serviceUuids.includes(service)) return;
    const now = this.#now();
    const old = this.#entries.get(address);
    const fresh = old === undefined || now - old.lastSeenAt > this.#ttlMs;
    const entry: Entry = fresh ? { address, connectable: d.connectable, firstSeenAt: now, lastSeenAt: now, seen: 0 } : old;
    entry.connectable = d.connectable;
    entry.lastSeenAt = now;
    entry.seen++;
    if (d.rssi !== undefined) entry.rssi = d.rssi;
    if (d.advertisement.localName !== undefined) entry.name = d.advertisement.localName;
    this.#entries.delete(address);
    this.#entries.set(address, entry);
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }

  /** The transport looked for a version's characteristic on `address`: found or not. */
  learned(address: string, version: 1 | 2, found: boolean): void {
    const e = this.#entries.get(address);
    if (e === undefined) return;
    if (version === 1) e.v1 = found;
    else e.v2 = found;
  }

  /** An exchange with `address` ended. */
  outcome(address: string, o: Omit<ScanOutcome, 'at'>): void {
    const e = this.#entries.get(address);
    if (e === undefined) return;
    e.lastOutcome = { ...o, at: this.#now() };
  }

  /** Nearby peripherals, the most recently seen first; forgets those past the TTL. */
  list(deny: (address: string) => ScanDenyState): ScanPeripheral[] {
    const now = this.#now();
    const out: ScanPeripheral[] = [];
    for (const [address, e] of this.#entries) {
      if (now - e.lastSeenAt > this.#ttlMs) {
        this.#entries.delete(address);
        continue;
      }
      const versions: Array<1 | 2> = [];
      if (e.v1 === true) versions.push(1);
      if (e.v2 === true) versions.push(2);
      out.push({
        address,
        ...(e.name === undefined ? {} : { name: e.name }),
        ...(e.rssi === undefined ? {} : { rssi: e.rssi }),
        connectable: e.connectable,
        firstSeenAt: e.firstSeenAt,
        lastSeenAt: e.lastSeenAt,
        seen: e.seen,
        versions,
        versionsKnown: e.v1 !== undefined || e.v2 !== undefined,
        ...(e.lastOutcome === undefined ? {} : { lastOutcome: { ...e.lastOutcome } }),
        deny: deny(address),
      });
    }
    return out.reverse();
  }
}
