/**
 * Decision events: every challenge, welcome and reject is recorded once, handed to subscribers
 * (status socket, metrics) and kept in a bounded ring. Counters by transport/outcome/reason and
 * latency totals are kept alongside so metrics never need to scan the ring.
 */
import type { Logger } from 'winston';
import type { DecisionEvent, TransportKind } from './types.js';
import type { ReasonCode } from '../../protocol/index.js';

/** One counter row: how many decisions of this kind. */
export interface DecisionCount {
  transport: TransportKind;
  outcome: DecisionEvent['outcome'];
  reason: ReasonCode | undefined;
  offline: boolean;
  count: number;
}

/** Latency totals per outcome, plus a fixed-bucket histogram (upper bounds in ms). */
export interface LatencyStats {
  outcome: DecisionEvent['outcome'];
  count: number;
  sumMs: number;
  maxMs: number;
  /** Cumulative counts for each bound in `LATENCY_BUCKETS_MS`, then +Inf. */
  buckets: number[];
}

export const LATENCY_BUCKETS_MS: readonly number[] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

export type DecisionListener = (event: DecisionEvent) => void;

export class DecisionLog {
  readonly #ring: (DecisionEvent | undefined)[];
  #next = 0;
  #seq = 0;
  readonly #listeners = new Set<DecisionListener>();
  readonly #counts = new Map<string, DecisionCount>();
  readonly #latency = new Map<DecisionEvent['outcome'], LatencyStats>();
  readonly #logger: Logger;

  constructor(ringSize: number, logger: Logger) {
    this.#ring = new Array<DecisionEvent | undefined>(ringSize).fill(undefined);
    this.#logger = logger;
  }

  /** Records one decision and hands it to every subscriber. */
  record(fields: Omit<DecisionEvent, 'seq'>): DecisionEvent {
    this.#seq += 1;
    const event: DecisionEvent = { seq: this.#seq, ...fields };
    if (this.#ring.length > 0) {
      this.#ring[this.#next] = event;
      this.#next = (this.#next + 1) % this.#ring.length;
    }
    this.#count(event);
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        // A subscriber's fault must not break the decision path.
        this.#logger.warn('decision listener failed', { error: err instanceof Error ? err.message : String(err) });
      }
    }
    return event;
  }

  /** Subscribes to future events; returns the unsubscribe function. */
  subscribe(listener: DecisionListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** The kept events, oldest first, optionally only those after `sinceSeq`. */
  recent(sinceSeq = 0): DecisionEvent[] {
    const out: DecisionEvent[] = [];
    const n = this.#ring.length;
    for (let i = 0; i < n; i++) {
      const e = this.#ring[(this.#next + i) % n];
      if (e !== undefined && e.seq > sinceSeq) out.push(e);
    }
    return out;
  }

  /** Counters by transport, outcome, reason and offline flag. */
  counts(): DecisionCount[] {
    return [...this.#counts.values()].map((c) => ({ ...c }));
  }

  /** Latency totals per outcome. */
  latency(): LatencyStats[] {
    return [...this.#latency.values()].map((l) => ({ ...l, buckets: [...l.buckets] }));
  }

  #count(e: DecisionEvent): void {
    const key = `${e.transport}|${e.outcome}|${e.reason ?? ''}|${e.offline ? 1 : 0}`;
    const row = this.#counts.get(key);
    if (row !== undefined) row.count += 1;
    else this.#counts.set(key, { transport: e.transport, outcome: e.outcome, reason: e.reason, offline: e.offline, count: 1 });

    let lat = this.#latency.get(e.outcome);
    if (lat === undefined) {
      lat = { outcome: e.outcome, count: 0, sumMs: 0, maxMs: 0, buckets: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0) };
      this.#latency.set(e.outcome, lat);
    }
    lat.count += 1;
    lat.sumMs += e.latencyMs;
    lat.maxMs = Math.max(lat.maxMs, e.latencyMs);
    for (let i = 0; i <= LATENCY_BUCKETS_MS.length; i++) {
      const bound = LATENCY_BUCKETS_MS[i];
      if (bound === undefined || e.latencyMs <= bound) lat.buckets[i] = (lat.buckets[i] ?? 0) + 1;
    }
  }
}
