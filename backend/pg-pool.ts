/**
 * The PostgreSQL connection handling of the store (backend/pg-store.ts): the pool, named
 * statements, transactions, and the one rule that tells an outage from a bad statement. When
 * PostgreSQL cannot be reached (down, restarting, out of connections) every call fails with
 * `GH_STORE_UNAVAILABLE`, which the server answers 503 with Retry-After: the gateway retries.
 */
import pg from 'pg';
import type { Logger } from 'winston';
import { RegistryError, StoreError } from './errors.js';

/** Pool options (part of `PgStoreOptions`). */
export interface PgPoolOptions {
  /** Pool size (connections this process holds at most). Default 10. */
  poolSize?: number;
  /** Bound on waiting for a connection, ms. Default 3000. */
  connectTimeoutMs?: number;
  /** Bound on one statement, ms (server-side statement_timeout). Default 5000. */
  statementTimeoutMs?: number;
  logger?: Logger;
}

/** The pool or one of its clients (inside a transaction). */
export type Queryable = Pick<pg.PoolClient, 'query'>;

const INT8_OID = 20;
/** BIGINT columns hold unix seconds and cursors: well inside 2^53, so numbers, not strings. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** SQL states that mean "the server is not there right now", not "this statement is wrong". */
function isUnavailable(err: unknown): boolean {
  if (err instanceof pg.DatabaseError) {
    const code = err.code ?? '';
    return code.startsWith('08') || code.startsWith('53') || code.startsWith('57P');
  }
  // Not a server answer at all: refused, reset, timed out, socket gone, pool shut.
  return err instanceof Error;
}

function unavailable(cause: unknown): StoreError {
  return new StoreError('GH_STORE_UNAVAILABLE', 'the PostgreSQL store is unavailable', { cause });
}

/** A pool for `url` with bounded connects and statements. */
export function makePool(url: string, opts: PgPoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 3000,
    idleTimeoutMillis: 30_000,
    statement_timeout: opts.statementTimeoutMs ?? 5000,
    query_timeout: (opts.statementTimeoutMs ?? 5000) + 1000,
    application_name: 'gatehouse-backend',
    types: TYPES,
  });
  // An idle connection cut by a server restart: the pool drops it; the next query reconnects.
  pool.on('error', (err) => opts.logger?.warn('PostgreSQL connection lost', { error: err.message }));
  return pool;
}

/** Run `fn` on the pool; an outage becomes `GH_STORE_UNAVAILABLE`, store errors pass unchanged. */
export async function runOn<T>(pool: pg.Pool, fn: (c: Queryable) => Promise<T>): Promise<T> {
  try {
    return await fn(pool);
  } catch (err) {
    if (err instanceof StoreError || err instanceof RegistryError) throw err;
    if (isUnavailable(err)) throw unavailable(err);
    throw err;
  }
}

/** Run the named prepared statement `name` (`text`) on `on`; an outage becomes `GH_STORE_UNAVAILABLE`. */
export async function namedQuery<R extends pg.QueryResultRow>(on: Queryable, name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return await on.query<R>({ name, text, values });
  } catch (err) {
    if (isUnavailable(err)) throw unavailable(err);
    throw err;
  }
}

/** Run `fn` in a transaction on one client of `pool`: committed if it returns, rolled back if it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw unavailable(err);
  }
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: unknown) => (broken = e instanceof Error ? e : new Error(String(e))));
    if (err instanceof StoreError || err instanceof RegistryError) throw err;
    if (isUnavailable(err)) throw unavailable(err);
    throw err;
  } finally {
    // A connection that could not even roll back is discarded, not returned to the pool.
    client.release(broken);
  }
}
