/**
 * The data plane's SQLite file (`uplink.db` in the state directory): telemetry records waiting
 * for the backend, device acks waiting for the backend, and the command cursor. WAL journal,
 * `synchronous=FULL`: a committed transaction survives a power cut, which is what a receipt
 * promises (protocol-v2 "receipt": a `pub` stored durably). Created 0600 before SQLite opens it;
 * a symlink at the path is refused (the lease store's rules, lease-store.ts).
 */
import Database from 'better-sqlite3';
import type { AckRecord, TelemetryRecord } from '../../protocol/index.js';
import { StateFileError } from '../../common/atomic-file.js';
import { openDurable, storeError } from '../backend-client/lease-store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS telemetry (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dev TEXT NOT NULL,
  sid BLOB NOT NULL,
  seq INTEGER NOT NULL,
  topic TEXT NOT NULL,
  body BLOB NOT NULL,
  received_at INTEGER NOT NULL,
  mid INTEGER,
  size INTEGER NOT NULL,
  UNIQUE (dev, sid, seq)
) STRICT;
CREATE TABLE IF NOT EXISTS acks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dev TEXT NOT NULL,
  cid INTEGER NOT NULL,
  status TEXT NOT NULL,
  at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS commands (
  dev TEXT NOT NULL,
  cid INTEGER NOT NULL,
  bytes BLOB NOT NULL,
  exp INTEGER NOT NULL,
  PRIMARY KEY (dev, cid)
) STRICT;
CREATE TABLE IF NOT EXISTS meta (
  k TEXT PRIMARY KEY,
  v INTEGER NOT NULL
) STRICT;
`;

/** Bytes a record costs beyond its topic, body and dev: the row's ids, seq, times and index entry. */
export const RECORD_OVERHEAD_BYTES = 64;

export type { AckRecord, TelemetryRecord };

export interface QueuedTelemetry extends TelemetryRecord {
  id: number;
  size: number;
}

export interface QueuedAck extends AckRecord {
  id: number;
}

/** The bytes a record counts against the queue's bound. */
export function recordSize(r: TelemetryRecord): number {
  return Buffer.byteLength(r.dev) + Buffer.byteLength(r.topic) + r.sid.length + r.body.length + RECORD_OVERHEAD_BYTES;
}

type Row = { id: number; dev: string; sid: Buffer; seq: number; topic: string; body: Buffer; received_at: number; mid: number | null; size: number };

/** An open `uplink.db`. Every method is synchronous (better-sqlite3). */
export class QueueStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #insert: Database.Statement<[string, Uint8Array, number, string, Uint8Array, number, number | null, number]>;
  readonly #insertAck: Database.Statement<[string, number, string, number]>;
  readonly #oldest: Database.Statement<[number, number], Row>;
  readonly #del: Database.Statement<[number]>;
  readonly #acks: Database.Statement<[number], { id: number; dev: string; cid: number; status: string; at: number }>;
  readonly #delAck: Database.Statement<[number]>;
  readonly #totals: Database.Statement<[], { n: number; b: number; oldest: number | null }>;
  readonly #ackCount: Database.Statement<[], { n: number }>;
  readonly #expired: Database.Statement<[number], { n: number; b: number }>;
  readonly #sweep: Database.Statement<[number]>;
  readonly #putCmd: Database.Statement<[string, number, Uint8Array, number]>;
  readonly #delCmd: Database.Statement<[string, number]>;
  readonly #allCmds: Database.Statement<[], { dev: string; cid: number; bytes: Buffer; exp: number }>;
  readonly #getMeta: Database.Statement<[string], { v: number }>;
  readonly #setMeta: Database.Statement<[string, number]>;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#insert = db.prepare('INSERT OR IGNORE INTO telemetry (dev, sid, seq, topic, body, received_at, mid, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    this.#insertAck = db.prepare('INSERT INTO acks (dev, cid, status, at) VALUES (?, ?, ?, ?)');
    this.#oldest = db.prepare('SELECT id, dev, sid, seq, topic, body, received_at, mid, size FROM telemetry WHERE id > ? ORDER BY id LIMIT ?');
    this.#del = db.prepare('DELETE FROM telemetry WHERE id = ?');
    this.#acks = db.prepare('SELECT id, dev, cid, status, at FROM acks ORDER BY id LIMIT ?');
    this.#delAck = db.prepare('DELETE FROM acks WHERE id = ?');
    this.#totals = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS b, min(received_at) AS oldest FROM telemetry');
    this.#ackCount = db.prepare('SELECT count(*) AS n FROM acks');
    this.#expired = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM telemetry WHERE received_at < ?');
    this.#sweep = db.prepare('DELETE FROM telemetry WHERE received_at < ?');
    this.#putCmd = db.prepare('INSERT INTO commands (dev, cid, bytes, exp) VALUES (?, ?, ?, ?) ON CONFLICT (dev, cid) DO UPDATE SET bytes = excluded.bytes, exp = excluded.exp');
    this.#delCmd = db.prepare('DELETE FROM commands WHERE dev = ? AND cid = ?');
    this.#allCmds = db.prepare('SELECT dev, cid, bytes, exp FROM commands ORDER BY dev, cid');
    this.#getMeta = db.prepare('SELECT v FROM meta WHERE k = ?');
    this.#setMeta = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v');
  }

  /** Open (creating it 0600 if missing). Throws a StateFileError. */
  static open(path: string): QueueStore {
    return openDurable(path, SCHEMA, (db) => new QueueStore(path, db), { what: 'uplink queue' });
  }

  /**
   * Commit telemetry and acks in one transaction (all or nothing); answers the telemetry rows and
   * bytes added (a record already queued is not added again). Throws a StateFileError.
   */
  commit(telemetry: readonly TelemetryRecord[], acks: readonly AckRecord[]): { records: number; bytes: number } {
    const added = { records: 0, bytes: 0 };
    try {
      this.#db.transaction(() => {
        for (const r of telemetry) {
          const size = recordSize(r);
          if (this.#insert.run(r.dev, r.sid, r.seq, r.topic, r.body, r.receivedAt, r.mid ?? null, size).changes === 0) continue;
          added.records += 1;
          added.bytes += size;
        }
        for (const a of acks) this.#insertAck.run(a.dev, a.cid, a.status, a.at);
      })();
    } catch (err) {
      throw storeError(this.path, err, 'uplink queue');
    }
    return added;
  }

  /** The `limit` oldest telemetry records, of those after record `afterId` (default: all). */
  oldest(limit: number, afterId = 0): QueuedTelemetry[] {
    return this.#oldest.all(afterId, limit).map((r) => ({
      id: r.id,
      dev: r.dev,
      sid: new Uint8Array(r.sid),
      seq: r.seq,
      topic: r.topic,
      body: new Uint8Array(r.body),
      receivedAt: r.received_at,
      size: r.size,
      ...(r.mid === null ? {} : { mid: r.mid }),
    }));
  }

  /**
   * Remove records the backend answered for; answers the rows and bytes that left. This
   * transaction is not synced (synchronous=NORMAL): a removal that a power cut undoes only sends
   * those records again, which the backend answers as duplicates; the next commit's sync makes it
   * durable too (the WAL is one log).
   */
  remove(records: readonly { id: number; size: number }[]): { records: number; bytes: number } {
    const gone = { records: 0, bytes: 0 };
    this.#db.pragma('synchronous = NORMAL');
    try {
      this.#db.transaction(() => {
        for (const r of records) {
          if (this.#del.run(r.id).changes === 0) continue;
          gone.records += 1;
          gone.bytes += r.size;
        }
      })();
    } finally {
      this.#db.pragma('synchronous = FULL');
    }
    return gone;
  }

  oldestAcks(limit: number): QueuedAck[] {
    return this.#acks.all(limit).map((a) => ({ id: a.id, dev: a.dev, cid: a.cid, status: a.status as AckRecord['status'], at: a.at }));
  }

  removeAcks(ids: readonly number[]): void {
    this.#db.transaction(() => {
      for (const id of ids) this.#delAck.run(id);
    })();
  }

  totals(): { records: number; bytes: number; oldestAt: number | undefined; acks: number } {
    const t = this.#totals.get() ?? { n: 0, b: 0, oldest: null };
    return { records: t.n, bytes: t.b, oldestAt: t.oldest ?? undefined, acks: this.#ackCount.get()?.n ?? 0 };
  }

  /** Delete records received before `beforeMs`; returns how many and their bytes. */
  expire(beforeMs: number): { records: number; bytes: number } {
    const e = this.#expired.get(beforeMs) ?? { n: 0, b: 0 };
    if (e.n > 0) this.#sweep.run(beforeMs);
    return { records: e.n, bytes: e.b };
  }

  /** Held commands and the cursor they were polled up to, in one transaction. */
  holdCommands(puts: readonly { dev: string; cid: number; bytes: Uint8Array; exp: number }[], cursorKey: string, cursor: number): void {
    try {
      this.#db.transaction(() => {
        for (const c of puts) this.#putCmd.run(c.dev, c.cid, c.bytes, c.exp);
        this.#setMeta.run(cursorKey, cursor);
      })();
    } catch (err) {
      throw storeError(this.path, err, 'uplink queue');
    }
  }

  dropCommand(dev: string, cid: number): void {
    this.#delCmd.run(dev, cid);
  }

  commands(): { dev: string; cid: number; bytes: Uint8Array; exp: number }[] {
    return this.#allCmds.all().map((c) => ({ dev: c.dev, cid: c.cid, bytes: new Uint8Array(c.bytes), exp: c.exp }));
  }

  meta(k: string): number | undefined {
    return this.#getMeta.get(k)?.v;
  }

  setMeta(k: string, v: number): void {
    try {
      this.#setMeta.run(k, v);
    } catch (err) {
      throw storeError(this.path, err, 'uplink queue');
    }
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

export { StateFileError };
