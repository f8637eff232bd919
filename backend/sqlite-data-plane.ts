/**
 * The data plane in the registry's SQLite file (backend/data-plane-store.ts): telemetry with its
 * two uniqueness keys, the command queue, the acks. Synchronous (better-sqlite3); each write is
 * one transaction. Long polls in this process are woken directly; a command queued by another
 * process on the same file (the admin CLI) is noticed by `PRAGMA data_version`, checked once a
 * second while someone waits.
 */
import type Database from 'better-sqlite3';
import type { AckRecord, CommandRecord, NewCommand, StoredTelemetry, TelemetryRecord, VerdictWindow } from './data-plane-store.js';

export const DATA_PLANE_SCHEMA = `
CREATE TABLE IF NOT EXISTS telemetry (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  sid BLOB NOT NULL CHECK (length(sid) = 8),
  seq INTEGER NOT NULL,
  mid INTEGER,
  topic TEXT NOT NULL,
  body BLOB NOT NULL,
  received_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS telemetry_frame ON telemetry (device_id, sid, seq);
CREATE UNIQUE INDEX IF NOT EXISTS telemetry_mid ON telemetry (device_id, mid) WHERE mid IS NOT NULL;
CREATE INDEX IF NOT EXISTS telemetry_dev ON telemetry (device_id, id);
CREATE TABLE IF NOT EXISTS command_counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS commands (
  device_id TEXT NOT NULL,
  cid INTEGER NOT NULL,
  gateway_id TEXT NOT NULL,
  hh BLOB NOT NULL CHECK (length(hh) = 32),
  topic TEXT NOT NULL,
  body BLOB NOT NULL,
  iat INTEGER NOT NULL,
  exp INTEGER NOT NULL,
  command BLOB NOT NULL,
  cursor INTEGER NOT NULL UNIQUE,
  queued_at INTEGER NOT NULL,
  served_at INTEGER,
  status TEXT CHECK (status IN ('done', 'failed')),
  acked_at INTEGER,
  acked_by TEXT,
  refused_count INTEGER NOT NULL DEFAULT 0,
  last_refused_at INTEGER,
  PRIMARY KEY (device_id, cid)
) STRICT;
CREATE INDEX IF NOT EXISTS commands_gw ON commands (gateway_id, cursor);
`;

export interface CommandRow {
  device_id: string;
  cid: number;
  gateway_id: string;
  hh: Buffer | Uint8Array;
  topic: string;
  body: Buffer | Uint8Array;
  iat: number;
  exp: number;
  command: Buffer | Uint8Array;
  cursor: number;
  queued_at: number;
  served_at: number | null;
  status: 'done' | 'failed' | null;
  acked_at: number | null;
  acked_by: string | null;
  refused_count: number;
  last_refused_at: number | null;
}

export interface TelemetryRow {
  id: number;
  device_id: string;
  gateway_id: string;
  sid: Buffer | Uint8Array;
  seq: number;
  mid: number | null;
  topic: string;
  body: Buffer | Uint8Array;
  received_at: number;
  stored_at: number;
}

export function commandFromRow(r: CommandRow): CommandRecord {
  return {
    dev: r.device_id,
    cid: r.cid,
    gw: r.gateway_id,
    hh: new Uint8Array(r.hh),
    topic: r.topic,
    body: new Uint8Array(r.body),
    iat: r.iat,
    exp: r.exp,
    command: new Uint8Array(r.command),
    cursor: r.cursor,
    queuedAt: r.queued_at,
    ...(r.served_at !== null ? { servedAt: r.served_at } : {}),
    ...(r.status !== null ? { status: r.status } : {}),
    ...(r.acked_at !== null ? { ackedAt: r.acked_at } : {}),
    ...(r.acked_by !== null ? { ackedBy: r.acked_by } : {}),
    refusedCount: r.refused_count,
    ...(r.last_refused_at !== null ? { lastRefusedAt: r.last_refused_at } : {}),
  };
}

export function telemetryFromRow(r: TelemetryRow): StoredTelemetry {
  return {
    id: r.id,
    dev: r.device_id,
    gw: r.gateway_id,
    sid: new Uint8Array(r.sid),
    seq: r.seq,
    topic: r.topic,
    body: new Uint8Array(r.body),
    receivedAt: r.received_at,
    storedAt: r.stored_at,
    ...(r.mid !== null ? { mid: r.mid } : {}),
  };
}

/** How often another process's writes are looked for while a long poll waits, ms. */
const EXTERNAL_CHECK_MS = 1000;

export class SqliteDataPlane {
  readonly #db: Database.Database;
  readonly #now: () => number;
  readonly #s;
  readonly #listeners = new Set<(gw: string) => void>();
  #timer: NodeJS.Timeout | undefined;
  #dataVersion = 0;

  constructor(db: Database.Database, now: () => number) {
    this.#db = db;
    this.#now = now;
    this.#s = {
      insertTelemetry: db.prepare(
        `INSERT INTO telemetry (device_id, gateway_id, sid, seq, mid, topic, body, received_at, stored_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      telemetryAfter: db.prepare<[number, number], TelemetryRow>('SELECT * FROM telemetry WHERE id > ? ORDER BY id LIMIT ?'),
      telemetryAfterDev: db.prepare<[number, string, number], TelemetryRow>('SELECT * FROM telemetry WHERE id > ? AND device_id = ? ORDER BY id LIMIT ?'),
      telemetryLast: db.prepare<[number], TelemetryRow>('SELECT * FROM (SELECT * FROM telemetry ORDER BY id DESC LIMIT ?) ORDER BY id'),
      telemetryLastDev: db.prepare<[string, number], TelemetryRow>('SELECT * FROM (SELECT * FROM telemetry WHERE device_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id'),
      verdict: db.prepare<[string, string], { first_at: number; last_at: number }>('SELECT first_at, last_at FROM device_gateways WHERE device_id = ? AND gateway_id = ?'),
      bump: db.prepare<[string], { value: number }>(
        'INSERT INTO command_counters (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value',
      ),
      insertCommand: db.prepare(
        `INSERT INTO commands (device_id, cid, gateway_id, hh, topic, body, iat, exp, command, cursor, queued_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      grantHh: db.prepare<[string], { hh: Buffer }>('SELECT hh FROM grants WHERE device_id = ?'),
      replaceCommand: db.prepare(
        `UPDATE commands SET gateway_id = ?, hh = ?, iat = ?, command = ?, cursor = ?, served_at = NULL
         WHERE device_id = ? AND cid = ? AND status IS NULL`,
      ),
      getCommand: db.prepare<[string, number], CommandRow>('SELECT * FROM commands WHERE device_id = ? AND cid = ?'),
      openCommands: db.prepare<[string, number], CommandRow>('SELECT * FROM commands WHERE device_id = ? AND status IS NULL AND exp > ? ORDER BY cid'),
      commandsFor: db.prepare<[string, number, number, number], CommandRow>(
        'SELECT * FROM commands WHERE gateway_id = ? AND cursor > ? AND status IS NULL AND exp > ? ORDER BY cursor LIMIT ?',
      ),
      topCursor: db.prepare<[], { c: number | null }>("SELECT value AS c FROM command_counters WHERE name = 'cursor'"),
      markServed: db.prepare('UPDATE commands SET served_at = ? WHERE device_id = ? AND cid = ? AND served_at IS NULL'),
      listCommands: db.prepare<[string], CommandRow>('SELECT * FROM commands WHERE device_id = ? ORDER BY cid'),
      ackFinal: db.prepare("UPDATE commands SET status = ?, acked_at = ?, acked_by = ? WHERE device_id = ? AND cid = ? AND status IS NULL"),
      ackRefused: db.prepare('UPDATE commands SET refused_count = refused_count + 1, last_refused_at = ? WHERE device_id = ? AND cid = ?'),
      commandExists: db.prepare<[string, number], { one: number }>('SELECT 1 AS one FROM commands WHERE device_id = ? AND cid = ?'),
    };
  }

  storeTelemetry(gw: string, records: readonly TelemetryRecord[]): { accepted: number; duplicates: number } {
    const storedAt = this.#now();
    return this.#db.transaction(() => {
      let accepted = 0;
      for (const r of records) {
        // ON CONFLICT DO NOTHING covers both unique keys: (dev, sid, seq) and (dev, mid).
        const changes = this.#s.insertTelemetry.run(r.dev, gw, Buffer.from(r.sid), r.seq, r.mid ?? null, r.topic, Buffer.from(r.body), r.receivedAt, storedAt).changes;
        accepted += changes;
      }
      return { accepted, duplicates: records.length - accepted };
    }).immediate();
  }

  telemetryAfter(afterId: number, limit: number, dev?: string): StoredTelemetry[] {
    const rows = dev === undefined ? this.#s.telemetryAfter.all(afterId, limit) : this.#s.telemetryAfterDev.all(afterId, dev, limit);
    return rows.map(telemetryFromRow);
  }

  telemetryLast(n: number, dev?: string): StoredTelemetry[] {
    const rows = dev === undefined ? this.#s.telemetryLast.all(n) : this.#s.telemetryLastDev.all(dev, n);
    return rows.map(telemetryFromRow);
  }

  verdictWindows(gw: string, devs: readonly string[]): Map<string, VerdictWindow> {
    const out = new Map<string, VerdictWindow>();
    for (const dev of new Set(devs)) {
      const r = this.#s.verdict.get(dev, gw);
      if (r !== undefined) out.set(dev, { firstAt: r.first_at, lastAt: r.last_at });
    }
    return out;
  }

  nextCommandId(dev: string): number {
    return (this.#s.bump.get(`cid:${dev}`) as { value: number }).value;
  }

  queueCommand(c: NewCommand): CommandRecord {
    const row = this.#db.transaction(() => {
      const cursor = (this.#s.bump.get('cursor') as { value: number }).value;
      this.#s.insertCommand.run(c.dev, c.cid, c.gw, Buffer.from(c.hh), c.topic, Buffer.from(c.body), c.iat, c.exp, Buffer.from(c.command), cursor, this.#now());
      return this.#s.getCommand.get(c.dev, c.cid) as CommandRow;
    }).immediate();
    this.#emit(c.gw);
    return commandFromRow(row);
  }

  replaceCommand(c: NewCommand): boolean {
    const done = this.#db.transaction(() => {
      const grant = this.#s.grantHh.get(c.dev);
      if (grant === undefined || !Buffer.from(grant.hh).equals(Buffer.from(c.hh))) return false;
      const cursor = (this.#s.bump.get('cursor') as { value: number }).value;
      return this.#s.replaceCommand.run(c.gw, Buffer.from(c.hh), c.iat, Buffer.from(c.command), cursor, c.dev, c.cid).changes > 0;
    }).immediate();
    if (done) this.#emit(c.gw);
    return done;
  }

  openCommands(devs: readonly string[], now: number): CommandRecord[] {
    return [...new Set(devs)].sort().flatMap((d) => this.#s.openCommands.all(d, now).map(commandFromRow));
  }

  commandsFor(gw: string, since: number, now: number, limit: number): { cursor: number; commands: CommandRecord[] } {
    return this.#db.transaction(() => {
      const top = this.#s.topCursor.get()?.c ?? 0;
      // A cursor from beyond this queue (a store reset under the gateway) is read from the start.
      const from = since > top ? 0 : since;
      const rows = this.#s.commandsFor.all(gw, from, now, limit);
      const last = rows[rows.length - 1];
      // A full page: continue after its last row. Otherwise every position up to the newest was seen.
      const cursor = last !== undefined && rows.length === limit ? last.cursor : top;
      const at = this.#now();
      for (const r of rows) if (r.served_at === null) this.#s.markServed.run(at, r.device_id, r.cid);
      return { cursor, commands: rows.map(commandFromRow) };
    }).immediate();
  }

  listCommands(dev: string): CommandRecord[] {
    return this.#s.listCommands.all(dev).map(commandFromRow);
  }

  recordAcks(gw: string, acks: readonly AckRecord[]): number {
    return this.#db.transaction(() => {
      let n = 0;
      for (const a of acks) {
        if (this.#s.commandExists.get(a.dev, a.cid) === undefined) continue;
        n++;
        // protocol-v2 "Commands": S keeps the first done/failed for a cid; refused does not close it.
        if (a.status === 'refused') this.#s.ackRefused.run(a.at, a.dev, a.cid);
        else this.#s.ackFinal.run(a.status, a.at, gw, a.dev, a.cid);
      }
      return n;
    }).immediate();
  }

  onCommandQueued(listener: (gw: string) => void): () => void {
    this.#listeners.add(listener);
    if (this.#timer === undefined) {
      this.#dataVersion = this.#version();
      this.#timer = setInterval(() => {
        if (!this.#db.open) return;
        const v = this.#version();
        if (v !== this.#dataVersion) {
          this.#dataVersion = v;
          this.#emit('*');
        }
      }, EXTERNAL_CHECK_MS);
      this.#timer.unref();
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.close();
    };
  }

  /** Stop looking for other processes' writes. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #version(): number {
    // Changes when another connection commits to the file; this connection's own writes do not.
    return this.#db.pragma('data_version', { simple: true }) as number;
  }

  #emit(gw: string): void {
    for (const l of [...this.#listeners]) l(gw);
  }
}
