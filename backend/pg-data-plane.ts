/**
 * The data plane in PostgreSQL (backend/data-plane-store.ts; tables of migration 2). A batch of
 * telemetry is one statement (`INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING`: both unique
 * keys, also between records of the same batch and between replicas at once). The command
 * cursor is a counter row bumped in the transaction that queues or moves a command: its row
 * lock makes commit order cursor order, so a reader never sees position n+1 before n and skips
 * n. Each queued command sends `NOTIFY gatehouse_commands, '<gw>'` at commit; every replica
 * LISTENs on one connection of its own while a long poll waits, so a poll at any replica wakes.
 */
import pg from 'pg';
import type { Logger } from 'winston';
import type { AckRecord, CommandRecord, NewCommand, StoredTelemetry, TelemetryRecord, VerdictWindow } from './data-plane-store.js';
import { commandFromRow, telemetryFromRow, type CommandRow, type TelemetryRow } from './sqlite-data-plane.js';

export const COMMAND_CHANNEL = 'gatehouse_commands';

/** How long a lost LISTEN connection waits before it is made again, ms. */
const RELISTEN_MS = 1000;

export const DATA_PLANE_SQL = {
  insertTelemetry: `INSERT INTO telemetry (device_id, gateway_id, sid, seq, mid, topic, body, received_at, stored_at)
    SELECT x.d, $2, x.s, x.q, x.m, x.t, x.b, x.r, $9
    FROM unnest($1::text[], $3::bytea[], $4::int8[], $5::int8[], $6::text[], $7::bytea[], $8::int8[]) WITH ORDINALITY AS x(d, s, q, m, t, b, r, o)
    ORDER BY x.o
    ON CONFLICT DO NOTHING RETURNING 1`,
  telemetryAfter: 'SELECT * FROM telemetry WHERE id > $1 AND ($2::text IS NULL OR device_id = $2) ORDER BY id LIMIT $3',
  telemetryLast: 'SELECT * FROM (SELECT * FROM telemetry WHERE ($1::text IS NULL OR device_id = $1) ORDER BY id DESC LIMIT $2) t ORDER BY id',
  verdicts: 'SELECT device_id, first_at, last_at FROM device_gateways WHERE gateway_id = $1 AND device_id = ANY($2::text[])',
  bump: 'INSERT INTO command_counters (name, value) VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET value = command_counters.value + 1 RETURNING value',
  insertCommand: `INSERT INTO commands (device_id, cid, gateway_id, hh, topic, body, iat, exp, command, cursor, queued_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
  notify: 'SELECT pg_notify($1, $2)',
  grantHh: 'SELECT hh FROM grants WHERE device_id = $1 FOR SHARE',
  replaceCommand: `UPDATE commands SET gateway_id = $1, hh = $2, iat = $3, command = $4, cursor = $5, served_at = NULL
    WHERE device_id = $6 AND cid = $7 AND status IS NULL`,
  openCommands: 'SELECT * FROM commands WHERE device_id = ANY($1::text[]) AND status IS NULL AND exp > $2 ORDER BY device_id, cid',
  // One statement, one snapshot: the page and the newest position agree.
  commandsFor: `WITH top AS (SELECT coalesce((SELECT value FROM command_counters WHERE name = 'cursor'), 0) AS m)
    SELECT top.m AS top, c.* FROM top LEFT JOIN LATERAL (
      SELECT * FROM commands
      WHERE gateway_id = $1 AND cursor > (CASE WHEN $2::int8 > top.m THEN 0 ELSE $2::int8 END) AND status IS NULL AND exp > $3
      ORDER BY cursor LIMIT $4) c ON true
    ORDER BY c.cursor`,
  markServed: `UPDATE commands c SET served_at = $1 FROM unnest($2::text[], $3::int8[]) AS x(d, i)
    WHERE c.device_id = x.d AND c.cid = x.i AND c.served_at IS NULL`,
  listCommands: 'SELECT * FROM commands WHERE device_id = $1 ORDER BY cid',
  commandExists: 'SELECT 1 FROM commands WHERE device_id = $1 AND cid = $2',
  ackFinal: 'UPDATE commands SET status = $1, acked_at = $2, acked_by = $3 WHERE device_id = $4 AND cid = $5 AND status IS NULL',
  ackRefused: 'UPDATE commands SET refused_count = refused_count + 1, last_refused_at = $1 WHERE device_id = $2 AND cid = $3',
} as const;

export type DataPlaneStatement = keyof typeof DATA_PLANE_SQL;
type Queryable = Pick<pg.PoolClient, 'query'>;

export interface PgDataPlaneDeps {
  /** Run a named statement (on `on`, else the pool), store errors mapped. */
  q<R extends pg.QueryResultRow>(name: DataPlaneStatement, values: unknown[], on?: Queryable): Promise<pg.QueryResult<R>>;
  tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T>;
  now(): number;
  /** Connection string for the LISTEN connection. */
  url: string;
  logger?: Logger;
}

export class PgDataPlane {
  readonly #d: PgDataPlaneDeps;
  readonly #listeners = new Set<(gw: string) => void>();
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;
  #ready: Promise<void> = Promise.resolve();

  constructor(deps: PgDataPlaneDeps) {
    this.#d = deps;
  }

  async storeTelemetry(gw: string, records: readonly TelemetryRecord[]): Promise<{ accepted: number; duplicates: number }> {
    if (records.length === 0) return { accepted: 0, duplicates: 0 };
    const r = await this.#d.q('insertTelemetry', [
      records.map((x) => x.dev),
      gw,
      records.map((x) => Buffer.from(x.sid)),
      records.map((x) => x.seq),
      records.map((x) => x.mid ?? null),
      records.map((x) => x.topic),
      records.map((x) => Buffer.from(x.body)),
      records.map((x) => x.receivedAt),
      this.#d.now(),
    ]);
    const accepted = r.rowCount ?? 0;
    return { accepted, duplicates: records.length - accepted };
  }

  async telemetryAfter(afterId: number, limit: number, dev?: string): Promise<StoredTelemetry[]> {
    return (await this.#d.q<TelemetryRow>('telemetryAfter', [afterId, dev ?? null, limit])).rows.map(telemetryFromRow);
  }

  async telemetryLast(n: number, dev?: string): Promise<StoredTelemetry[]> {
    return (await this.#d.q<TelemetryRow>('telemetryLast', [dev ?? null, n])).rows.map(telemetryFromRow);
  }

  async verdictWindows(gw: string, devs: readonly string[]): Promise<Map<string, VerdictWindow>> {
    const rows = (await this.#d.q<{ device_id: string; first_at: number; last_at: number }>('verdicts', [gw, [...new Set(devs)]])).rows;
    return new Map(rows.map((r) => [r.device_id, { firstAt: r.first_at, lastAt: r.last_at }]));
  }

  async nextCommandId(dev: string): Promise<number> {
    return (await this.#d.q<{ value: number }>('bump', [`cid:${dev}`])).rows[0]?.value as number;
  }

  async queueCommand(c: NewCommand): Promise<CommandRecord> {
    const row = await this.#d.tx(async (t) => {
      const cursor = (await this.#d.q<{ value: number }>('bump', ['cursor'], t)).rows[0]?.value;
      const r = await this.#d.q<CommandRow>(
        'insertCommand',
        [c.dev, c.cid, c.gw, Buffer.from(c.hh), c.topic, Buffer.from(c.body), c.iat, c.exp, Buffer.from(c.command), cursor, this.#d.now()],
        t,
      );
      await this.#d.q('notify', [COMMAND_CHANNEL, c.gw], t);
      return r.rows[0] as CommandRow;
    });
    this.#emit(c.gw);
    return commandFromRow(row);
  }

  async replaceCommand(c: NewCommand): Promise<boolean> {
    const done = await this.#d.tx(async (t) => {
      const grant = (await this.#d.q<{ hh: Buffer }>('grantHh', [c.dev], t)).rows[0];
      if (grant === undefined || !grant.hh.equals(Buffer.from(c.hh))) return false;
      const cursor = (await this.#d.q<{ value: number }>('bump', ['cursor'], t)).rows[0]?.value;
      const n = (await this.#d.q('replaceCommand', [c.gw, Buffer.from(c.hh), c.iat, Buffer.from(c.command), cursor, c.dev, c.cid], t)).rowCount ?? 0;
      if (n === 0) return false;
      await this.#d.q('notify', [COMMAND_CHANNEL, c.gw], t);
      return true;
    });
    if (done) this.#emit(c.gw);
    return done;
  }

  async openCommands(devs: readonly string[], now: number): Promise<CommandRecord[]> {
    if (devs.length === 0) return [];
    return (await this.#d.q<CommandRow>('openCommands', [[...new Set(devs)], now])).rows.map(commandFromRow);
  }

  async commandsFor(gw: string, since: number, now: number, limit: number): Promise<{ cursor: number; commands: CommandRecord[] }> {
    const rows = (await this.#d.q<CommandRow & { top: number; cursor: number | null }>('commandsFor', [gw, since, now, limit])).rows;
    const top = rows[0]?.top ?? 0;
    const page = rows.filter((r) => r.cursor !== null);
    const last = page[page.length - 1];
    const cursor = last !== undefined && page.length === limit ? last.cursor : top;
    const unserved = page.filter((r) => r.served_at === null);
    if (unserved.length > 0) await this.#d.q('markServed', [this.#d.now(), unserved.map((r) => r.device_id), unserved.map((r) => r.cid)]);
    return { cursor, commands: page.map(commandFromRow) };
  }

  async listCommands(dev: string): Promise<CommandRecord[]> {
    return (await this.#d.q<CommandRow>('listCommands', [dev])).rows.map(commandFromRow);
  }

  async recordAcks(gw: string, acks: readonly AckRecord[]): Promise<number> {
    if (acks.length === 0) return 0;
    return this.#d.tx(async (t) => {
      let n = 0;
      for (const a of acks) {
        if ((await this.#d.q('commandExists', [a.dev, a.cid], t)).rows.length === 0) continue;
        n++;
        // protocol-v2 "Commands": S keeps the first done/failed for a cid; refused does not close it.
        if (a.status === 'refused') await this.#d.q('ackRefused', [a.at, a.dev, a.cid], t);
        else await this.#d.q('ackFinal', [a.status, a.at, gw, a.dev, a.cid], t);
      }
      return n;
    });
  }

  async onCommandQueued(listener: (gw: string) => void): Promise<() => void> {
    this.#listeners.add(listener);
    if (this.#client === undefined && this.#retry === undefined) this.#ready = this.#listen();
    await this.#ready;
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * LISTEN on a connection of its own (a pooled one would lose the subscription when released).
   * Resolves once listening, or once that failed (then it is tried again after a pause).
   */
  #listen(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const client = new pg.Client({ connectionString: this.#d.url, application_name: 'gatehouse-backend-listen', connectionTimeoutMillis: 3000 });
    this.#client = client;
    const lost = (err: unknown): void => {
      if (this.#client !== client) return;
      this.#client = undefined;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.#closed) return;
      this.#d.logger?.warn('PostgreSQL LISTEN connection lost', { error: err instanceof Error ? err.message : String(err) });
      // Waiters look again: something may have been queued while no one listened.
      this.#emit('*');
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        if (this.#listeners.size > 0) this.#ready = this.#listen();
      }, RELISTEN_MS);
      this.#retry.unref();
    };
    client.on('error', lost);
    client.on('end', () => lost(new Error('connection ended')));
    client.on('notification', (m) => {
      if (m.channel === COMMAND_CHANNEL) this.#emit(m.payload ?? '*');
    });
    return client
      .connect()
      .then(async () => {
        await client.query(`LISTEN ${COMMAND_CHANNEL}`);
      })
      .catch(lost);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    const c = this.#client;
    this.#client = undefined;
    if (c !== undefined) {
      c.removeAllListeners();
      c.on('error', () => undefined);
      await c.end().catch(() => undefined);
    }
  }

  #emit(gw: string): void {
    for (const l of [...this.#listeners]) l(gw);
  }
}
