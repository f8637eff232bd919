/**
 * Running a backend suite against each store (backend/store.ts): SQLite (the data directory's
 * file, the default) and PostgreSQL (a private server for the suite, testkit/postgres.ts, with a
 * fresh migrated database for each backend or store the suite makes).
 */
import { PgStore } from '../backend/pg-store.js';
import type { StoreKind } from '../backend/store.js';
import { TestPostgres } from './postgres.js';

export const STORE_KINDS: readonly StoreKind[] = ['sqlite', 'postgres'];

export interface SuiteStore {
  kind: StoreKind;
  /** A fresh, migrated PostgreSQL database's URL; undefined for SQLite (the backend's default file). */
  fresh(): Promise<string | undefined>;
  /** The suite's PostgreSQL server (postgres only; after `before`). */
  readonly server: TestPostgres | undefined;
}

/** Call inside a describe: starts PostgreSQL before the suite when `kind` is postgres, stops it after. */
export function suiteStore(kind: StoreKind): SuiteStore {
  let server: TestPostgres | undefined;
  before(async function () {
    if (kind !== 'postgres') return;
    this.timeout(90_000);
    server = await TestPostgres.start();
  });
  after(async function () {
    this.timeout(30_000);
    await server?.stop();
    server = undefined;
  });
  return {
    kind,
    async fresh() {
      if (kind !== 'postgres') return undefined;
      if (server === undefined) throw new Error('suiteStore: PostgreSQL read before the suite started');
      const url = await server.createDatabase();
      await PgStore.migrate(url);
      return url;
    },
    get server() {
      return server;
    },
  };
}
