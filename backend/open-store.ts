/** Open the store a `--store` URL names: `sqlite:PATH` or `postgres://…` (backend/store.ts). */
import type { Logger } from 'winston';
import { StoreError } from './errors.js';
import { PgStore } from './pg-store.js';
import type { NowSeconds } from './registry.js';
import { SqliteStore } from './sqlite-store.js';
import { parseStoreUrl, type BackendStore } from './store.js';

export interface OpenStoreOptions {
  now?: NowSeconds;
  noncesPerKeyid?: number;
  /** PostgreSQL pool size. */
  poolSize?: number;
  logger?: Logger;
}

/** Open `url`; a SQLite file is created 0600 and upgraded, a PostgreSQL database must be migrated already. */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<BackendStore> {
  const where = parseStoreUrl(url);
  if ('problem' in where) throw new StoreError('GH_STORE_URL', where.problem);
  const common = { ...(opts.now ? { now: opts.now } : {}), ...(opts.noncesPerKeyid !== undefined ? { noncesPerKeyid: opts.noncesPerKeyid } : {}) };
  if (where.kind === 'sqlite') {
    return SqliteStore.open(where.path, common);
  }
  return PgStore.open(where.url, { ...common, ...(opts.poolSize !== undefined ? { poolSize: opts.poolSize } : {}), ...(opts.logger ? { logger: opts.logger } : {}) });
}
