/**
 * Throttling of BLE peripherals that keep failing. Keyed by BLE address only to decide when to
 * try again: protocol-v1 "the BLE address is never an identity", so nothing here grants or
 * denies authentication, it only spares the radio. Bounded: the least recently touched entry
 * is evicted when full.
 */

/** Options of a `DenyList`. */
export interface DenyListOptions {
  /** First hold-off after a failure (ms), doubled for each further failure; default 5 000. */
  baseMs?: number;
  /** Ceiling of the hold-off (ms); default 600 000. */
  maxMs?: number;
  /** Hold-off after a welcome (ms): a welcomed peripheral is not re-authenticated sooner; default 60 000. */
  afterSuccessMs?: number;
  /** Addresses tracked at most (LRU); default 1024. */
  maxEntries?: number;
  /** Unix milliseconds; injected for tests. */
  now?: () => number;
}

interface Entry {
  failures: number;
  until: number;
}

/** Exponential back-off per BLE address. */
export class DenyList {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #afterSuccessMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(options: DenyListOptions = {}) {
    this.#baseMs = options.baseMs ?? 5_000;
    this.#maxMs = options.maxMs ?? 600_000;
    this.#afterSuccessMs = options.afterSuccessMs ?? 60_000;
    this.#maxEntries = options.maxEntries ?? 1024;
    this.#now = options.now ?? Date.now;
    for (const [name, v] of Object.entries({ baseMs: this.#baseMs, maxMs: this.#maxMs, afterSuccessMs: this.#afterSuccessMs })) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
    }
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer`);
  }

  /** Entries tracked now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Milliseconds until `address` may be tried again; 0 when it may be now. */
  holdOff(address: string): number {
    const e = this.#entries.get(address);
    return e ? Math.max(0, e.until - this.#now()) : 0;
  }

  /** Consecutive failures recorded for `address`. */
  failures(address: string): number {
    return this.#entries.get(address)?.failures ?? 0;
  }

  /**
   * Record a failed or rejected exchange. `minHoldOffMs` raises the hold-off, e.g. to a reject's
   * `retry` (protocol-v1 key 16). Returns the hold-off applied.
   */
  recordFailure(address: string, minHoldOffMs = 0): number {
    const failures = this.failures(address) + 1;
    const backoff = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(failures - 1, 30));
    const holdOff = Math.min(this.#maxMs, Math.max(backoff, minHoldOffMs));
    this.#set(address, { failures, until: this.#now() + holdOff });
    return holdOff;
  }

  /** Record a welcome: failures are forgiven, and the address rests for `afterSuccessMs`. */
  recordSuccess(address: string): void {
    if (this.#afterSuccessMs === 0) this.#entries.delete(address);
    else this.#set(address, { failures: 0, until: this.#now() + this.#afterSuccessMs });
  }

  #set(address: string, entry: Entry): void {
    this.#entries.delete(address);
    this.#entries.set(address, entry);
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }
}
