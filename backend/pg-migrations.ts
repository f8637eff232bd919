/**
 * Versioned migrations of the PostgreSQL store (backend/pg-store.ts), run by
 * `gatehouse-backend migrate`. Each migration runs in its own transaction under an advisory lock,
 * so two `migrate` runs at once apply each step once; a migration that ran is never run again
 * (its version is recorded in `gatehouse_schema`); a database whose version is newer than this
 * build knows is refused (an older backend must not write a schema it does not understand).
 *
 * To add a table: append a migration with the next version; never edit one that has shipped
 * (version 2 added the data plane's telemetry, command queue and acks).
 */
import type { PoolClient } from 'pg';
import { StoreError } from './errors.js';

export interface Migration {
  version: number;
  what: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    what: 'registry, revocation feed, session keys, verified-at, v2 devices, grants, nonce window',
    sql: `
CREATE TABLE gateways (
  id TEXT PRIMARY KEY,
  tpm_public_key_pem TEXT NOT NULL,
  tpk BYTEA NOT NULL CHECK (length(tpk) = 32),
  groups TEXT NOT NULL DEFAULT '[]',
  status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  public_key BYTEA NOT NULL CHECK (length(public_key) = 32),
  gateways TEXT NOT NULL,
  policy TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE revocations (
  cursor BIGSERIAL PRIMARY KEY,
  device_id TEXT NOT NULL,
  revoked_at BIGINT NOT NULL
);
CREATE TABLE session_keys (
  seq BIGSERIAL PRIMARY KEY,
  gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  public_key BYTEA NOT NULL CHECK (length(public_key) = 32),
  issued_at BIGINT NOT NULL,
  not_after BIGINT NOT NULL
);
CREATE INDEX session_keys_gw ON session_keys (gateway_id, seq);
CREATE TABLE device_gateways (
  device_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  first_at BIGINT NOT NULL,
  last_at BIGINT NOT NULL,
  PRIMARY KEY (device_id, gateway_id)
);
CREATE INDEX device_gateways_gw ON device_gateways (gateway_id, device_id);
CREATE TABLE device_v2 (
  device_id TEXT PRIMARY KEY,
  since BIGINT NOT NULL
);
CREATE TABLE grants (
  device_id TEXT PRIMARY KEY,
  gateway_id TEXT NOT NULL,
  hh BYTEA NOT NULL CHECK (length(hh) = 32),
  spk BYTEA NOT NULL CHECK (length(spk) = 32),
  iat BIGINT NOT NULL,
  life BIGINT NOT NULL
);
CREATE TABLE nonces (
  keyid TEXT NOT NULL,
  nonce TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (keyid, nonce)
);
CREATE INDEX nonces_keyid_exp ON nonces (keyid, expires_at);
CREATE INDEX nonces_exp ON nonces (expires_at);
`,
  },
  {
    version: 2,
    what: 'data plane: telemetry (unique per frame and per mid), command queue with cursor, acks',
    sql: `
CREATE TABLE telemetry (
  id BIGSERIAL PRIMARY KEY,
  device_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  sid BYTEA NOT NULL CHECK (length(sid) = 8),
  seq BIGINT NOT NULL,
  mid BIGINT,
  topic TEXT NOT NULL,
  body BYTEA NOT NULL,
  received_at BIGINT NOT NULL,
  stored_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX telemetry_frame ON telemetry (device_id, sid, seq);
CREATE UNIQUE INDEX telemetry_mid ON telemetry (device_id, mid) WHERE mid IS NOT NULL;
CREATE INDEX telemetry_dev ON telemetry (device_id, id);
CREATE TABLE command_counters (
  name TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
CREATE TABLE commands (
  device_id TEXT NOT NULL,
  cid BIGINT NOT NULL,
  gateway_id TEXT NOT NULL,
  hh BYTEA NOT NULL CHECK (length(hh) = 32),
  topic TEXT NOT NULL,
  body BYTEA NOT NULL,
  iat BIGINT NOT NULL,
  exp BIGINT NOT NULL,
  command BYTEA NOT NULL,
  cursor BIGINT NOT NULL UNIQUE,
  queued_at BIGINT NOT NULL,
  served_at BIGINT,
  status TEXT CHECK (status IN ('done', 'failed')),
  acked_at BIGINT,
  acked_by TEXT,
  refused_count INTEGER NOT NULL DEFAULT 0,
  last_refused_at BIGINT,
  PRIMARY KEY (device_id, cid)
);
CREATE INDEX commands_gw ON commands (gateway_id, cursor);
`,
  },
];

export const PG_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** Any number: one lock id for "gatehouse migrations" (pg_advisory_xact_lock takes a bigint). */
const MIGRATION_LOCK = 0x6761_7465;

const SCHEMA_TABLE = `CREATE TABLE IF NOT EXISTS gatehouse_schema (
  version INTEGER PRIMARY KEY,
  what TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`;

/** The schema version a database holds (0: none yet). */
export async function schemaVersion(client: Pick<PoolClient, 'query'>): Promise<number> {
  const t = await client.query<{ t: string | null }>("SELECT to_regclass('gatehouse_schema')::text AS t");
  if (t.rows[0]?.t == null) return 0;
  const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM gatehouse_schema');
  return r.rows[0]?.v ?? 0;
}

function refuseNewer(found: number): never {
  throw new StoreError('GH_STORE_SCHEMA_NEWER', `the database has schema ${found}, newer than this backend's ${PG_SCHEMA_VERSION}: upgrade the backend`);
}

/** Apply every migration the database lacks. Returns the versions applied (empty: already current). */
export async function migrate(client: PoolClient): Promise<{ from: number; to: number; applied: number[] }> {
  const applied: number[] = [];
  await client.query(SCHEMA_TABLE).catch((err: unknown) => {
    // Two first runs at once: the loser of the CREATE race finds the table made.
    if ((err as { code?: string }).code !== '23505' && (err as { code?: string }).code !== '42P07') throw err;
  });
  let from: number | undefined;
  for (const m of MIGRATIONS) {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const current = await schemaVersion(client);
      from ??= current;
      if (current > PG_SCHEMA_VERSION) refuseNewer(current);
      if (current >= m.version) {
        await client.query('COMMIT');
        continue;
      }
      await client.query(m.sql);
      await client.query('INSERT INTO gatehouse_schema (version, what) VALUES ($1, $2)', [m.version, m.what]);
      await client.query('COMMIT');
      applied.push(m.version);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
  if (from === undefined) {
    from = await schemaVersion(client);
    if (from > PG_SCHEMA_VERSION) refuseNewer(from);
  }
  return { from, to: await schemaVersion(client), applied };
}

/** Refuse to serve on a database that is not at this build's schema. */
export function schemaProblem(found: number): StoreError | undefined {
  if (found > PG_SCHEMA_VERSION) {
    return new StoreError('GH_STORE_SCHEMA_NEWER', `the database has schema ${found}, newer than this backend's ${PG_SCHEMA_VERSION}: upgrade the backend`);
  }
  if (found < PG_SCHEMA_VERSION) {
    return new StoreError('GH_STORE_SCHEMA_OLDER', `the database has schema ${found}, this backend needs ${PG_SCHEMA_VERSION}: run gatehouse-backend migrate`);
  }
  return undefined;
}
