/**
 * Peripherals that are trying and failing: fed by the pipeline's decision events, one entry per
 * device id whose recent attempts were rejected, cleared by its next welcome. Bounded by device
 * count (the least recently failing entry is evicted) and by age (entries older than the window
 * are dropped); the key is a device id the pipeline already checked (1-64 id characters).
 */
import { isValidId, type ReasonCode } from '../../protocol/index.js';
import type { DecisionEvent, TransportKind } from '../pipeline/types.js';
import { adviceFor, type ReasonAdvice } from './reason-advice.js';

/** One failing device as `/v1/failing` serves it. */
export interface FailingPeripheral {
  dev: string;
  transport: TransportKind;
  /** The connection of the last attempt. */
  connection: string;
  /** The last attempt's remote address, for display; never an identity. */
  remote?: string;
  /** Rejects since its last welcome (within the window). */
  failures: number;
  /** Unix milliseconds of the first and the last of those rejects. */
  firstAt: number;
  lastAt: number;
  lastReason: ReasonCode;
  /** How many rejects of each reason. */
  reasons: Partial<Record<ReasonCode, number>>;
  /** Unix milliseconds before which another attempt is refused or not made, when known. */
  nextAttemptAt?: number;
  /** What sets `nextAttemptAt`: the reject's `retry`, or the BLE transport's back-off for the address. */
  nextAttemptBy?: 'retry' | 'ble-hold-off';
  /** What `lastReason` means and what to do. */
  advice: ReasonAdvice;
}

export interface FailingTrackerOptions {
  /** Devices tracked at most; default 1024. */
  maxDevices?: number;
  /** A device that has not failed for this long is forgotten; default one hour. */
  windowMs?: number;
}

type Entry = Omit<FailingPeripheral, 'advice'>;

export class FailingTracker {
  readonly #max: number;
  readonly #windowMs: number;
  /** Insertion order is the order of the last failure: the first entry is evicted first. */
  readonly #entries = new Map<string, Entry>();

  constructor(options: FailingTrackerOptions = {}) {
    this.#max = options.maxDevices ?? 1024;
    this.#windowMs = options.windowMs ?? 3_600_000;
    if (!Number.isSafeInteger(this.#max) || this.#max < 1) throw new RangeError('maxDevices must be a positive integer');
    if (!Number.isSafeInteger(this.#windowMs) || this.#windowMs < 1) throw new RangeError('windowMs must be a positive integer');
  }

  /** Devices tracked now (expired ones included until the next read). */
  get size(): number {
    return this.#entries.size;
  }

  /** Feed one decision event. */
  record(e: DecisionEvent): void {
    const dev = e.dev;
    // A reject naming the connection (`mqtt:7`, `ble:3`) came before a device id was known.
    if (dev === undefined || dev === e.connection || !isValidId(dev)) return;
    if (e.outcome === 'welcome') {
      this.#entries.delete(dev);
      return;
    }
    if (e.outcome !== 'reject' || e.reason === undefined) return;
    const old = this.#entries.get(dev);
    const fresh = old === undefined || e.at - old.lastAt > this.#windowMs;
    const entry: Entry = {
      dev,
      transport: e.transport,
      connection: e.connection,
      ...(e.remote === undefined ? {} : { remote: e.remote }),
      failures: fresh ? 1 : old.failures + 1,
      firstAt: fresh ? e.at : old.firstAt,
      lastAt: e.at,
      lastReason: e.reason,
      reasons: { ...(fresh ? {} : old.reasons), [e.reason]: (fresh ? 0 : (old.reasons[e.reason] ?? 0)) + 1 },
      ...(e.retry === undefined ? {} : { nextAttemptAt: e.at + e.retry * 1000, nextAttemptBy: 'retry' as const }),
    };
    this.#entries.delete(dev);
    this.#entries.set(dev, entry);
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  /** The BLE transport will not try this device's address before `untilMs` (its back-off). */
  holdOff(dev: string, untilMs: number): void {
    const entry = this.#entries.get(dev);
    if (entry === undefined) return;
    if (entry.nextAttemptAt === undefined || untilMs > entry.nextAttemptAt) {
      entry.nextAttemptAt = untilMs;
      entry.nextAttemptBy = 'ble-hold-off';
    }
  }

  /** Failing devices, the most recent failure first; forgets those outside the window. */
  list(nowMs: number): FailingPeripheral[] {
    const out: FailingPeripheral[] = [];
    for (const [dev, e] of this.#entries) {
      if (nowMs - e.lastAt > this.#windowMs) this.#entries.delete(dev);
      else out.push(withAdvice(e));
    }
    return out.reverse();
  }

  /** One device, if it is failing. */
  get(dev: string, nowMs: number): FailingPeripheral | undefined {
    const e = this.#entries.get(dev);
    return e === undefined || nowMs - e.lastAt > this.#windowMs ? undefined : withAdvice(e);
  }
}

function withAdvice(e: Entry): FailingPeripheral {
  return { ...e, reasons: { ...e.reasons }, advice: adviceFor(e.lastReason) };
}
