/**
 * The durable upstream queue: `pub` records and device `ack`s offered by the v2 sessions are
 * committed to `uplink.db` in one transaction per event-loop turn (group commit: one fsync for
 * everything a turn received), and each offer resolves only after its commit, so a receipt is
 * never sent for a frame that is not on disk.
 *
 * Bounded in bytes and age. When a pub does not fit, or the disk is full (ENOSPC), the offer
 * answers `busy` and every pub offered until `retry` has passed is busy too (protocol-v2: "While G
 * is out of room it lists every pub it receives in busy … until retry has passed"); acks are
 * always taken. Records older than the age bound are deleted, counted and logged: they are the
 * only records that ever leave the queue without the backend's answer.
 */
import { silentLogger } from '../../common/log/logger.js';
import { join } from 'node:path';
import type { Logger } from 'winston';
import type { StateFileError } from '../../common/atomic-file.js';
import { QueueStore, recordSize, type AckRecord, type QueuedAck, type QueuedTelemetry, type TelemetryRecord } from './queue-store.js';

/** The queue's file in the state directory. */
export const QUEUE_FILE = 'uplink.db';

/** `dataPlane.queue.*` from the config (the schema holds the defaults). */
export interface QueueSettings {
  maxBytes: number;
  maxAgeSec: number;
  /** `retry` (s) of a busy receipt. */
  busyRetrySec: number;
}

export interface QueueOptions extends QueueSettings {
  stateDir: string;
  /** Wall clock, unix ms (records' receivedAt, the age bound). */
  now(): number;
  logger?: Logger;
}

export type OfferResult = { stored: true } | { stored: false; retry: number };

export interface QueueStats {
  records: number;
  bytes: number;
  /** Age of the oldest record, seconds (0 when empty). */
  oldestAgeSec: number;
  acks: number;
  committed: number;
  commits: number;
  busy: number;
  expired: number;
  diskFull: number;
}

interface Waiter<T> {
  item: T;
  resolve: (r: OfferResult) => void;
}

export class UplinkQueue {
  readonly #o: QueueOptions;
  readonly #log: Logger;
  #store: QueueStore | undefined;
  #pubs: Waiter<TelemetryRecord>[] = [];
  #acks: Waiter<AckRecord>[] = [];
  #pendingBytes = 0;
  #scheduled = false;
  #busyUntil = 0;
  #records = 0;
  #bytes = 0;
  readonly #c = { committed: 0, commits: 0, busy: 0, expired: 0, diskFull: 0 };
  readonly #listeners = new Set<() => void>();

  constructor(options: QueueOptions) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger();
  }

  /** Opens `uplink.db` (throws a StateFileError). */
  open(): void {
    this.#store = QueueStore.open(join(this.#o.stateDir, QUEUE_FILE));
    const t = this.#store.totals();
    this.#records = t.records;
    this.#bytes = t.bytes;
    if (t.records > 0 || t.acks > 0) this.#log.info('uplink queue holds records from before the start', { records: t.records, bytes: t.bytes, acks: t.acks });
  }

  get store(): QueueStore {
    if (this.#store === undefined) throw new Error('uplink queue is not open');
    return this.#store;
  }

  /** Told after every commit that added something (the uploader wakes). */
  onCommit(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Offer a pub; resolves once it is committed, or busy. Never rejects. */
  offerPub(r: TelemetryRecord): Promise<OfferResult> {
    const size = recordSize(r);
    const now = this.#o.now();
    if (this.#store === undefined || now < this.#busyUntil) return Promise.resolve(this.#busy(false));
    if (this.#bytes + this.#pendingBytes + size > this.#o.maxBytes) {
      this.#log.warn('uplink queue full: pubs are answered busy', { bytes: this.#bytes, maxBytes: this.#o.maxBytes, retry: this.#o.busyRetrySec });
      return Promise.resolve(this.#busy(true));
    }
    this.#pendingBytes += size;
    return new Promise((resolve) => {
      this.#pubs.push({ item: r, resolve });
      this.#schedule();
    });
  }

  /** Offer an ack (always taken unless the disk refuses it); resolves once committed. */
  offerAck(a: AckRecord): Promise<OfferResult> {
    if (this.#store === undefined) return Promise.resolve({ stored: false, retry: this.#o.busyRetrySec });
    return new Promise((resolve) => {
      this.#acks.push({ item: a, resolve });
      this.#schedule();
    });
  }

  #busy(start: boolean): OfferResult {
    this.#c.busy += 1;
    if (start) this.#busyUntil = this.#o.now() + this.#o.busyRetrySec * 1000;
    return { stored: false, retry: this.#o.busyRetrySec };
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // Group commit: everything offered in this turn goes in one transaction.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    const pubs = this.#pubs;
    const acks = this.#acks;
    this.#pubs = [];
    this.#acks = [];
    this.#pendingBytes = 0;
    if (pubs.length === 0 && acks.length === 0) return;
    const store = this.#store;
    let added: { records: number; bytes: number };
    try {
      if (store === undefined) throw new Error('uplink queue closed');
      added = store.commit(
        pubs.map((w) => w.item),
        acks.map((w) => w.item),
      );
    } catch (err) {
      const code = (err as Partial<StateFileError>).code;
      if (code === 'GH_STATE_NO_SPACE') this.#c.diskFull += 1;
      this.#log.error('uplink queue commit failed: the frames are answered busy', { code, message: (err as Error).message, pubs: pubs.length, acks: acks.length });
      for (const w of pubs) w.resolve(this.#busy(true));
      for (const w of acks) w.resolve({ stored: false, retry: this.#o.busyRetrySec });
      return;
    }
    this.#c.commits += 1;
    this.#c.committed += pubs.length;
    this.#records += added.records;
    this.#bytes += added.bytes;
    for (const w of pubs) w.resolve({ stored: true });
    for (const w of acks) w.resolve({ stored: true });
    for (const l of this.#listeners) l();
  }

  /** The `limit` oldest telemetry records after record `afterId` (default: all), for the uploader. */
  oldest(limit: number, afterId = 0): QueuedTelemetry[] {
    return this.#store?.oldest(limit, afterId) ?? [];
  }

  /** The backend answered for these: they leave the queue. */
  remove(records: readonly QueuedTelemetry[]): void {
    if (this.#store === undefined || records.length === 0) return;
    // What left, not a recount: counting the whole table per batch made a backlog's drain quadratic.
    const gone = this.#store.remove(records);
    this.#records -= gone.records;
    this.#bytes -= gone.bytes;
  }

  oldestAcks(limit: number): QueuedAck[] {
    return this.#store?.oldestAcks(limit) ?? [];
  }

  removeAcks(acks: readonly QueuedAck[]): void {
    this.#store?.removeAcks(acks.map((a) => a.id));
  }

  /** Delete records older than the age bound (counted and logged). */
  expire(): number {
    const store = this.#store;
    if (store === undefined) return 0;
    const e = store.expire(this.#o.now() - this.#o.maxAgeSec * 1000);
    if (e.records > 0) {
      this.#c.expired += e.records;
      this.#log.warn('uplink records older than the age bound deleted unsent', { records: e.records, bytes: e.bytes, maxAgeSec: this.#o.maxAgeSec });
      this.#recount();
    }
    return e.records;
  }

  #recount(): void {
    const t = this.#store?.totals();
    this.#records = t?.records ?? 0;
    this.#bytes = t?.bytes ?? 0;
  }

  stats(): QueueStats {
    const t = this.#store?.totals();
    const oldestAgeSec = t?.oldestAt === undefined ? 0 : Math.max(0, (this.#o.now() - t.oldestAt) / 1000);
    return { records: this.#records, bytes: this.#bytes, oldestAgeSec, acks: t?.acks ?? 0, ...this.#c };
  }

  /** Commits what is offered, then closes the file. */
  close(): void {
    this.#flush();
    this.#store?.close();
    this.#store = undefined;
  }
}
