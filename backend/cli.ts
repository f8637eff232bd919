#!/usr/bin/env node
/**
 * `gatehouse-backend`: the reference backend's admin CLI and server.
 *
 *   gatehouse-backend init | serve | gateway add|revoke|list | device add|revoke|list | import | pki
 *
 * Exports `run(args, io)`; the process entry at the bottom runs only when this file is executed.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import winston from 'winston';
import { UsageError, write, type CliIO } from '../common/cli-io.js';
import { GatehouseError } from '../common/errors.js';
import { DEFAULT_DATA_DIR, HELP, HELPS } from './cli-help.js';
import { ensureDataDir } from './data-dir.js';
import { importDevices, parseDevicePublicKey, splitGateways, type ImportFormat } from './import.js';
import { createTestPki } from './pki.js';
import type { DeviceRecord, GatewayRecord } from './registry.js';
import { openStore } from './open-store.js';
import { PgStore } from './pg-store.js';
import { parseStoreUrl, redactUrl, type BackendStore } from './store.js';
import { StoreError } from './errors.js';
import { cmdCommand, cmdTelemetry, type DataPlaneCliDeps } from './cli-data-plane.js';
import { REGISTRY_FILE, publicOriginProblem, startBackend } from './server.js';
import { ensureSigningKey } from './signing-key.js';
import type { Policy } from '../protocol/index.js';

function dataDirOf(values: { 'data-dir'?: string | undefined }, io: CliIO): string {
  return values['data-dir'] ?? io.env['GATEHOUSE_BACKEND_DATA_DIR'] ?? DEFAULT_DATA_DIR;
}

/** `--store`, else $GATEHOUSE_BACKEND_STORE, else the SQLite file in the data directory. */
function storeOf(values: { 'data-dir'?: string | undefined; store?: string | undefined }, io: CliIO): string {
  const url = values.store ?? io.env['GATEHOUSE_BACKEND_STORE'] ?? `sqlite:${join(dataDirOf(values, io), REGISTRY_FILE)}`;
  const where = parseStoreUrl(url);
  if ('problem' in where) throw new UsageError(`--store: ${where.problem}`);
  return url;
}

async function withRegistry<T>(values: { 'data-dir'?: string | undefined; store?: string | undefined }, io: CliIO, fn: (r: BackendStore) => Promise<T>): Promise<T> {
  const url = storeOf(values, io);
  if (url.startsWith('sqlite:')) ensureDataDir(dataDirOf(values, io));
  const r = await openStore(url);
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

function intOption(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be an integer ${min}-${max}`);
  return Number(v);
}

/** The PEM of a TPM key from `gatehouse tpm show` output (text or --json) or a PEM file. */
function tpmPemFrom(text: string): string {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)['publicKeyPem'] === 'string') {
      return (v as Record<string, string>)['publicKeyPem'] as string;
    }
  } catch {
    // not JSON: the text output or a bare PEM
  }
  return text;
}

function gatewayLine(g: GatewayRecord): string {
  return `${g.id}\t${g.status}\ttpk=${Buffer.from(g.tpk).toString('hex')}\tgroups=${g.groups.join(',') || '-'}`;
}

function deviceLine(d: DeviceRecord): string {
  return `${d.id}\t${d.status}\tpk=${Buffer.from(d.publicKey).toString('hex')}\tgateways=${d.gateways.join(',')}\tpolicy=${JSON.stringify(d.policy)}`;
}

function gatewayJson(g: GatewayRecord): Record<string, unknown> {
  return { id: g.id, status: g.status, tpk: Buffer.from(g.tpk).toString('hex'), groups: g.groups, createdAt: g.createdAt, revokedAt: g.revokedAt };
}

function deviceJson(d: DeviceRecord): Record<string, unknown> {
  return {
    id: d.id,
    status: d.status,
    publicKey: Buffer.from(d.publicKey).toString('hex'),
    gateways: d.gateways,
    policy: d.policy,
    createdAt: d.createdAt,
    revokedAt: d.revokedAt,
  };
}

const COMMON = { 'data-dir': { type: 'string' }, store: { type: 'string' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } } as const;

async function cmdInit(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: COMMON, strict: true, allowPositionals: false });
  const dataDir = dataDirOf(values, io);
  ensureDataDir(dataDir);
  const { signer, created } = await ensureSigningKey(dataDir);
  await withRegistry(values, io, async () => undefined);
  const pk = Buffer.from(signer.publicKeyRaw);
  if (values.json === true) {
    write(io.stdout, JSON.stringify({ kid: signer.kid, publicKeyHex: pk.toString('hex'), publicKeyBase64: pk.toString('base64'), created }));
  } else {
    write(io.stdout, `${created ? 'created' : 'already initialised'}: ${dataDir}`);
    write(io.stdout, `kid_S: ${signer.kid}`);
    write(io.stdout, `pk_S (hex): ${pk.toString('hex')}`);
    write(io.stdout, `pk_S (base64): ${pk.toString('base64')}`);
  }
  return 0;
}

async function cmdServe(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...COMMON,
      cert: { type: 'string' },
      key: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'lease-seconds': { type: 'string' },
      'max-session-seconds': { type: 'string' },
      'public-origin': { type: 'string' },
      'grant-life-seconds': { type: 'string' },
      'nonces-per-key': { type: 'string' },
      'log-level': { type: 'string' },
      'store-pool': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.cert === undefined || values.key === undefined) throw new UsageError('--cert and --key are required');
  const origin = values['public-origin'];
  if (origin === undefined) throw new UsageError('--public-origin is required (the https://host[:port] gateways are configured with)');
  const originProblem = publicOriginProblem(origin);
  if (originProblem !== undefined) throw new UsageError(`--public-origin: ${originProblem}`);
  const level = values['log-level'] ?? 'info';
  if (!['error', 'warn', 'info', 'debug'].includes(level)) throw new UsageError('--log-level must be error, warn, info or debug');
  const logger = winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream: io.stderr })],
  });
  const leaseSeconds = intOption(values['lease-seconds'], 'lease-seconds', 60, 30 * 86_400);
  const maxSessionSeconds = intOption(values['max-session-seconds'], 'max-session-seconds', 60, 30 * 86_400);
  const grantLifeSeconds = intOption(values['grant-life-seconds'], 'grant-life-seconds', 60, 30 * 86_400);
  const noncesPerKeyid = intOption(values['nonces-per-key'], 'nonces-per-key', 100, 10_000_000);
  const storePoolSize = intOption(values['store-pool'], 'store-pool', 1, 1000);
  const store = storeOf(values, io);
  const backend = await startBackend({
    dataDir: dataDirOf(values, io),
    tls: { certPem: readFileSync(values.cert, 'utf8'), keyPem: readFileSync(values.key, 'utf8') },
    host: values.host ?? '127.0.0.1',
    port: intOption(values.port, 'port', 0, 65_535) ?? 8443,
    logger,
    ...(leaseSeconds !== undefined ? { leaseSeconds } : {}),
    ...(maxSessionSeconds !== undefined ? { maxSessionSeconds } : {}),
    ...(grantLifeSeconds !== undefined ? { grantLifeSeconds } : {}),
    ...(noncesPerKeyid !== undefined ? { noncesPerKeyid } : {}),
    ...(storePoolSize !== undefined ? { storePoolSize } : {}),
    store,
    publicOrigin: origin,
  });
  write(io.stdout, `listening on ${backend.url} for ${backend.origin} (kid_S ${backend.kid})`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await backend.close();
  return 0;
}

async function cmdGateway(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { ...COMMON, gw: { type: 'string' }, 'tpm-public-key': { type: 'string' }, groups: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  switch (sub) {
    case 'add': {
      if (values.gw === undefined || values['tpm-public-key'] === undefined) throw new UsageError('--gw and --tpm-public-key are required');
      const pem = tpmPemFrom(readFileSync(values['tpm-public-key'], 'utf8'));
      const gw = await withRegistry(values, io, async (r) =>
        r.addGateway({ id: values.gw as string, tpmPublicKeyPem: pem, groups: values.groups !== undefined ? splitGateways(values.groups) : [] }),
      );
      write(io.stdout, values.json === true ? JSON.stringify(gatewayJson(gw)) : `added ${gatewayLine(gw)}`);
      return 0;
    }
    case 'revoke': {
      if (values.gw === undefined) throw new UsageError('--gw is required');
      const ok = await withRegistry(values, io, async (r) => r.revokeGateway(values.gw as string));
      if (!ok) {
        write(io.stderr, `gatehouse-backend: no active gateway "${values.gw}"`);
        return 1;
      }
      write(io.stdout, `revoked gateway ${values.gw}`);
      return 0;
    }
    case 'list': {
      const all = await withRegistry(values, io, async (r) => r.listGateways());
      write(io.stdout, values.json === true ? JSON.stringify(all.map(gatewayJson)) : all.map(gatewayLine).join('\n') || '(no gateways)');
      return 0;
    }
    default:
      throw new UsageError(`unknown gateway command "${sub ?? ''}"`);
  }
}

async function cmdDevice(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { ...COMMON, dev: { type: 'string' }, 'public-key': { type: 'string' }, gateways: { type: 'string' }, policy: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  switch (sub) {
    case 'add': {
      if (values.dev === undefined || values['public-key'] === undefined || values.gateways === undefined) {
        throw new UsageError('--dev, --public-key and --gateways are required');
      }
      const keyArg = values['public-key'];
      const keyText = /^[0-9a-fA-F]{64}$|^[A-Za-z0-9+/_-]{43}=?$/.test(keyArg) ? keyArg : readFileSync(keyArg, 'utf8');
      let policy: Policy | undefined;
      if (values.policy !== undefined) {
        try {
          policy = JSON.parse(values.policy) as Policy;
        } catch {
          throw new UsageError('--policy is not valid JSON');
        }
      }
      const d = await withRegistry(values, io, async (r) =>
        r.addDevice({ id: values.dev as string, publicKey: parseDevicePublicKey(keyText), gateways: splitGateways(values.gateways as string), ...(policy ? { policy } : {}) }),
      );
      write(io.stdout, values.json === true ? JSON.stringify(deviceJson(d)) : `added ${deviceLine(d)}`);
      return 0;
    }
    case 'revoke': {
      if (values.dev === undefined) throw new UsageError('--dev is required');
      const cursor = await withRegistry(values, io, async (r) => r.revokeDevice(values.dev as string));
      if (cursor === undefined) {
        write(io.stderr, `gatehouse-backend: no active device "${values.dev}"`);
        return 1;
      }
      write(io.stdout, `revoked device ${values.dev} (revocation cursor ${cursor})`);
      return 0;
    }
    case 'list': {
      const all = await withRegistry(values, io, async (r) => r.listDevices());
      write(io.stdout, values.json === true ? JSON.stringify(all.map(deviceJson)) : all.map(deviceLine).join('\n') || '(no devices)');
      return 0;
    }
    default:
      throw new UsageError(`unknown device command "${sub ?? ''}"`);
  }
}

async function cmdImport(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { ...COMMON, format: { type: 'string' } }, strict: true, allowPositionals: true });
  const file = positionals[0];
  if (file === undefined || positionals.length > 1) throw new UsageError('exactly one FILE is required');
  const format = (values.format ?? (/\.csv$/i.test(file) ? 'csv' : /\.(json|jsonl|ndjson)$/i.test(file) ? 'json' : undefined)) as ImportFormat | undefined;
  if (format !== 'csv' && format !== 'json') throw new UsageError('--format csv|json is required when the file name does not say');
  const text = readFileSync(file, 'utf8');
  const result = await withRegistry(values, io, async (r) => importDevices(r, text, format));
  if ('problems' in result) {
    for (const p of result.problems) write(io.stderr, `${file}:${p.line}: ${p.message}`);
    write(io.stderr, `gatehouse-backend: ${result.problems.length} problem(s); nothing imported`);
    return 1;
  }
  write(io.stdout, `imported ${result.imported} device(s)`);
  return 0;
}

async function cmdPki(args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { help: COMMON.help, 'data-dir': COMMON['data-dir'], out: { type: 'string' }, dns: { type: 'string' }, ip: { type: 'string' } },
    strict: true,
  });
  if (values.dns === undefined) throw new UsageError('--dns is required');
  // Like every command, pki takes --data-dir: the PKI goes to <data dir>/pki unless --out says.
  if (values.out === undefined) ensureDataDir(dataDirOf(values, io));
  const out = values.out ?? join(dataDirOf(values, io), 'pki');
  const pki = await createTestPki(out, { dnsNames: splitGateways(values.dns), ips: values.ip !== undefined ? splitGateways(values.ip) : [] });
  write(io.stdout, `CA: ${pki.ca.certPath}\nserver: ${pki.server.certPath} ${pki.server.keyPath}`);
  return 0;
}

/** `migrate`: bring the store to this build's schema; idempotent; refuses a newer schema. */
async function cmdMigrate(args: string[], io: CliIO): Promise<number> {
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
async function cmdCheck(args: string[], io: CliIO): Promise<number> {
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

function dataPlaneDeps(io: CliIO): (v: DataPlaneCliDeps['values']) => DataPlaneCliDeps {
  return (values) => ({ values, dataDir: dataDirOf(values, io), withStore: (fn) => withRegistry(values, io, fn) });
}

/** Run `gatehouse-backend` with `args`; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export async function run(args: string[], io: CliIO): Promise<number> {
  const [cmd, ...rest] = args;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    write(cmd === undefined ? io.stderr : io.stdout, HELP);
    return cmd === undefined ? 2 : 0;
  }
  const help = HELPS[cmd];
  if (help === undefined) {
    write(io.stderr, `gatehouse-backend: unknown command "${cmd}"\n\n${HELP}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    write(io.stdout, help);
    return 0;
  }
  try {
    switch (cmd) {
      case 'init':
        return await cmdInit(rest, io);
      case 'serve':
        return await cmdServe(rest, io);
      case 'gateway':
        return await cmdGateway(rest, io);
      case 'device':
        return await cmdDevice(rest, io);
      case 'import':
        return await cmdImport(rest, io);
      case 'migrate':
        return await cmdMigrate(rest, io);
      case 'check':
        return await cmdCheck(rest, io);
      case 'command':
        return await cmdCommand(rest, io, dataPlaneDeps(io));
      case 'telemetry':
        return await cmdTelemetry(rest, io, dataPlaneDeps(io));
      default:
        return await cmdPki(rest, io);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) {
      write(io.stderr, `gatehouse-backend ${cmd}: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    const code = err instanceof GatehouseError ? ` [${err.code}]` : '';
    write(io.stderr, `gatehouse-backend ${cmd}: ${err instanceof Error ? err.message : String(err)}${code}`);
    return 1;
  }
}

function isMain(): boolean {
  const argv1 = process.argv[1];
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) {
  run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`gatehouse-backend: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
