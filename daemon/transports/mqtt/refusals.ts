/**
 * Connections the transport refused, counted by why, and logged once per burst: a storm or a
 * flood refuses thousands, and one line per refusal would flood the journal too.
 */
import type { Logger } from 'winston';

/** Why a connection was refused. */
export type RefusalReason =
  /** Over `maxConnections`: CONNACK 3 (or closed at accept beyond the refusal slots). */
  | 'capacity'
  /** Over the slots for connections not yet welcomed: CONNACK 3. */
  | 'unwelcomed-slots'
  /** Over `maxConnectionsPerSource` from one address: closed at accept. */
  | 'per-source'
  /** Over `acceptsPerSourcePerSec` from one address: closed at accept. */
  | 'accept-rate'
  /** Out of file descriptors (EMFILE/ENFILE, or too close to RLIMIT_NOFILE): closed at accept. */
  | 'descriptors';

export type RefusalCounts = Record<RefusalReason, number>;

/** A burst ends after this long without a refusal of the same reason. */
const BURST_QUIET_MS = 10_000;

export class Refusals {
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #counts: RefusalCounts = { capacity: 0, 'unwelcomed-slots': 0, 'per-source': 0, 'accept-rate': 0, descriptors: 0 };
  readonly #lastAt = new Map<RefusalReason, number>();

  constructor(log: Logger, now: () => number = () => performance.now()) {
    this.#log = log;
    this.#now = now;
  }

  get counts(): RefusalCounts {
    return { ...this.#counts };
  }

  /** Counts one refusal; the first of a burst is logged (descriptors at error level, others at warn). */
  refuse(reason: RefusalReason, fields: Record<string, unknown>): void {
    this.#counts[reason] += 1;
    const now = this.#now();
    const last = this.#lastAt.get(reason);
    this.#lastAt.set(reason, now);
    if (last !== undefined && now - last < BURST_QUIET_MS) return;
    const message = `connections refused: ${reason} (logged once per burst; see the counters in status and /metrics)`;
    if (reason === 'descriptors') this.#log.error(message, { reason, ...fields });
    else this.#log.warn(message, { reason, ...fields });
  }
}
