/**
 * Who gets a socket and who gets a slot: the capacity at accept (connections, refusal slots,
 * descriptors left, per-source caps and accept rate) and at CONNECT (admitted and unwelcomed
 * slots). Every refusal is counted and logged once by reason (refusals.ts).
 */
import type net from 'node:net';
import type { Logger } from 'winston';
import { isDescriptorExhaustion, openDescriptorCount, openFileLimit } from '../../../common/descriptors.js';
import { TokenBucket } from '../../../common/token-bucket.js';
import type { MqttConnection } from './connection.js';
import type { ResolvedOptions } from './options.js';
import { Refusals, type RefusalCounts } from './refusals.js';

/** The limits admission reads. */
export type AdmissionLimits = Pick<
  ResolvedOptions,
  | 'maxConnections'
  | 'refusalSlots'
  | 'maxUnwelcomed'
  | 'maxConnectionsPerSource'
  | 'acceptsPerSourcePerSec'
  | 'maxTrackedSources'
  | 'descriptorReserve'
>;

/** Capacity and per-source accounting of the MQTT listeners. */
export class MqttAdmission {
  readonly #o: AdmissionLimits;
  readonly #log: Logger;
  readonly #refusals: Refusals;
  /** Open sockets per source address (pre-CONNECT included). */
  readonly #openBySource = new Map<string, number>();
  /** Accept-rate buckets per source address, least recently seen first (bounded). */
  readonly #acceptBySource = new Map<string, TokenBucket>();
  /** Connections the descriptor limit leaves room for (set at start). */
  #descriptorCapacity: number | undefined;
  #refusedAtAccept = 0;

  constructor(limits: AdmissionLimits, log: Logger) {
    this.#o = limits;
    this.#log = log;
    this.#refusals = new Refusals(log);
  }

  /** Sockets closed at accept. */
  get refusedAtAccept(): number {
    return this.#refusedAtAccept;
  }

  /** Connections refused, by why. */
  get refused(): RefusalCounts {
    return this.#refusals.counts;
  }

  /** Connections this process can hold before it runs out of descriptors (undefined without /proc). */
  get descriptorCapacity(): number | undefined {
    return this.#descriptorCapacity;
  }

  /**
   * How many connections the descriptor limit leaves room for: RLIMIT_NOFILE less what is open
   * now (listeners, backend link, SQLite, logs) less a reserve. Past it the kernel's EMFILE makes
   * libuv accept and close connections silently, so the transport refuses first, and says so.
   */
  measureDescriptors(): void {
    const limit = openFileLimit();
    const open = openDescriptorCount();
    if (limit === undefined || open === undefined || limit.soft === Infinity) return;
    this.#descriptorCapacity = Math.max(0, limit.soft - open - this.#o.descriptorReserve);
    const wanted = this.#o.maxConnections + this.#o.refusalSlots;
    if (this.#descriptorCapacity < wanted) {
      this.#log.error('descriptor limit below the configured capacity: connections beyond it will be refused', {
        limitNofile: limit.soft,
        openNow: open,
        reserve: this.#o.descriptorReserve,
        connectionsPossible: this.#descriptorCapacity,
        maxConnections: this.#o.maxConnections,
        refusalSlots: this.#o.refusalSlots,
      });
    }
  }

  /** Why `conn` gets CONNACK 3 instead of a slot, if it does. */
  noSlot(conn: MqttConnection, slots: { admitted: number; unwelcomed: number }): string | undefined {
    if (slots.admitted >= this.#o.maxConnections) {
      this.#refusals.refuse('capacity', { conn: conn.id, max: this.#o.maxConnections });
      return 'server at capacity';
    }
    if (slots.unwelcomed >= Math.min(this.#o.maxUnwelcomed, this.#o.maxConnections)) {
      this.#refusals.refuse('unwelcomed-slots', { conn: conn.id, max: this.#o.maxUnwelcomed });
      return 'too many connections waiting to be welcomed';
    }
    return undefined;
  }

  /**
   * At accept: true when `socket` may go on to the broker (then counted against its source until
   * it closes); false when it was refused (counted, logged; the caller destroys it).
   */
  accept(socket: net.Socket, open: number, brokerUp: boolean): boolean {
    const source = socket.remoteAddress ?? '?';
    const refusal =
      !brokerUp || open >= this.#o.maxConnections + this.#o.refusalSlots
        ? ('capacity' as const)
        : this.#descriptorCapacity !== undefined && open >= this.#descriptorCapacity
          ? ('descriptors' as const)
          : (this.#openBySource.get(source) ?? 0) >= this.#o.maxConnectionsPerSource
            ? ('per-source' as const)
            : !this.#acceptAllowed(source)
              ? ('accept-rate' as const)
              : undefined;
    if (!brokerUp || refusal !== undefined) {
      this.#refusedAtAccept += 1;
      this.#refusals.refuse(refusal ?? 'capacity', { source, open, max: this.#o.maxConnections });
      return false;
    }
    this.#openBySource.set(source, (this.#openBySource.get(source) ?? 0) + 1);
    socket.once('close', () => {
      const n = (this.#openBySource.get(source) ?? 1) - 1;
      if (n <= 0) this.#openBySource.delete(source);
      else this.#openBySource.set(source, n);
    });
    return true;
  }

  /** A listener error: descriptor exhaustion is a refusal; anything else is logged. */
  listenerError(err: Error): void {
    if (isDescriptorExhaustion(err)) this.#refusals.refuse('descriptors', { error: err.message });
    else this.#log.error('MQTT listener error', { error: err.message });
  }

  /** Takes an accept token of `source`; false when it has none. */
  #acceptAllowed(source: string): boolean {
    let bucket = this.#acceptBySource.get(source);
    if (bucket === undefined) {
      if (this.#acceptBySource.size >= this.#o.maxTrackedSources) {
        const oldest = this.#acceptBySource.keys().next();
        if (!oldest.done) this.#acceptBySource.delete(oldest.value);
      }
      const n = this.#o.acceptsPerSourcePerSec;
      bucket = new TokenBucket({ burst: n, perSecond: n }, { now: () => performance.now() });
    } else {
      this.#acceptBySource.delete(source);
    }
    this.#acceptBySource.set(source, bucket);
    return bucket.take() === 0;
  }
}
