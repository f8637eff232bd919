/**
 * `gatehouse-backend migrate` and `check`: the store's schema, brought up to date or checked
 * (backend/cli.ts dispatches here).
 */
import { parseArgs } from 'node:util';
import { write, type CliIO } from '../common/cli-io.js';
import { GatehouseError } from '../common/errors.js';
import { COMMON, dataDirOf, storeOf } from './cli-options.js';
import { ensureDataDir } from './data-dir.js';
import { StoreError } from './errors.js';
import { openStore } from './open-store.js';
import { PgStore } from './pg-store.js';
import { redactUrl } from './store.js';


/** `migrate`: bring the store to this build's schema; idempotent; refuses a newer schema. */
export async function cmdMigrate(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: COMMON, strict: true, allowPositionals: false });
  const url = storeOf(values, io);
  let out: { from: number; to: number; applied: number[] };
  if (url.startsWith('sqlite:')) {
    // A SQLite file is made and upgraded when it is opened.
    ensureDataDir(dataDirOf(values, io));
    const s = await openStore(url);
    const st = await s.status();
    await s.close();
    out = { from: st.schemaVersion, to: st.schemaVersion, applied: [] };
  } else {
    out = await PgStore.migrate(url);
  }
  const where = redactUrl(url);
  if (values.json === true) write(io.stdout, JSON.stringify({ store: where, ...out }));
  else write(io.stdout, out.applied.length === 0 ? `schema ${out.to}: up to date (${where})` : `schema ${out.from} -> ${out.to}: applied ${out.applied.join(', ')} (${where})`);
  return 0;
}

/** `check`: can the store be reached, and is its schema the one this build serves? 0 yes, 1 no. */
export async function cmdCheck(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: COMMON, strict: true, allowPositionals: false });
  const url = storeOf(values, io);
  const where = redactUrl(url);
  const report = (o: { reachable: boolean; schemaVersion?: number; latestSchemaVersion?: number; problem?: string; code?: string }): number => {
    const ok = o.reachable && o.problem === undefined;
    if (values.json === true) write(io.stdout, JSON.stringify({ store: where, ok, ...o }));
    else {
      write(ok ? io.stdout : io.stderr, `store: ${where}`);
      write(ok ? io.stdout : io.stderr, `reachable: ${o.reachable ? 'yes' : 'no'}`);
      if (o.schemaVersion !== undefined) write(ok ? io.stdout : io.stderr, `schema: ${o.schemaVersion} (this backend: ${o.latestSchemaVersion ?? '?'})`);
      if (o.problem !== undefined) write(io.stderr, `problem: ${o.problem}${o.code !== undefined ? ` [${o.code}]` : ''}`);
    }
    return ok ? 0 : 1;
  };
  if (!url.startsWith('sqlite:')) {
    const probe = await PgStore.probe(url);
    if ('problem' in probe) return report({ reachable: false, problem: probe.problem, code: 'GH_STORE_UNAVAILABLE' });
    const latest = probe.latestSchemaVersion;
    const problem = probe.schemaVersion > latest ? 'the schema is newer than this backend' : probe.schemaVersion < latest ? 'the schema is older: run gatehouse-backend migrate' : undefined;
    const code = probe.schemaVersion > latest ? 'GH_STORE_SCHEMA_NEWER' : 'GH_STORE_SCHEMA_OLDER';
    return report({ reachable: true, ...probe, ...(problem !== undefined ? { problem, code } : {}) });
  }
  try {
    const s = await openStore(url);
    const st = await s.status();
    await s.close();
    return report({ reachable: true, schemaVersion: st.schemaVersion, latestSchemaVersion: st.latestSchemaVersion });
  } catch (err) {
    return report({ reachable: false, problem: err instanceof Error ? err.message : String(err), ...(err instanceof StoreError || err instanceof GatehouseError ? { code: err.code } : {}) });
  }
}

