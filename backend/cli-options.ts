/**
 * What every `gatehouse-backend` command shares: the common options, where the data directory
 * and the store are, opening the store for one command, and bounded integer options.
 */
import { join } from 'node:path';
import { UsageError, type CliIO } from '../common/cli-io.js';
import { DEFAULT_DATA_DIR } from './cli-help.js';
import { ensureDataDir } from './data-dir.js';
import { openStore } from './open-store.js';
import { REGISTRY_FILE } from './server.js';
import { parseStoreUrl, type BackendStore } from './store.js';

/** The options every command takes. */
export const COMMON = { 'data-dir': { type: 'string' }, store: { type: 'string' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } } as const;

/** `--data-dir`, else $GATEHOUSE_BACKEND_DATA_DIR, else the default. */
export function dataDirOf(values: { 'data-dir'?: string | undefined }, io: CliIO): string {
  return values['data-dir'] ?? io.env['GATEHOUSE_BACKEND_DATA_DIR'] ?? DEFAULT_DATA_DIR;
}

/** `--store`, else $GATEHOUSE_BACKEND_STORE, else the SQLite file in the data directory. */
export function storeOf(values: { 'data-dir'?: string | undefined; store?: string | undefined }, io: CliIO): string {
  const url = values.store ?? io.env['GATEHOUSE_BACKEND_STORE'] ?? `sqlite:${join(dataDirOf(values, io), REGISTRY_FILE)}`;
  const where = parseStoreUrl(url);
  if ('problem' in where) throw new UsageError(`--store: ${where.problem}`);
  return url;
}

/** Open the store of `values` for `fn`, and close it after. */
export async function withRegistry<T>(values: { 'data-dir'?: string | undefined; store?: string | undefined }, io: CliIO, fn: (r: BackendStore) => Promise<T>): Promise<T> {
  const url = storeOf(values, io);
  if (url.startsWith('sqlite:')) ensureDataDir(dataDirOf(values, io));
  const r = await openStore(url);
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

/** `--name` as an integer in `min`..`max`, or undefined when not given. */
export function intOption(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be an integer ${min}-${max}`);
  return Number(v);
}
