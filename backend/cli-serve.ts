/**
 * `gatehouse-backend init`, `serve` and `pki`: making the data directory and signing key, running
 * the server, and the test PKI it can serve with (backend/cli.ts dispatches here).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import winston from 'winston';
import { UsageError, write, type CliIO } from '../common/cli-io.js';
import { COMMON, dataDirOf, intOption, storeOf, withRegistry } from './cli-options.js';
import { ensureDataDir } from './data-dir.js';
import { splitGateways } from './import.js';
import { createTestPki } from './pki.js';
import { publicOriginProblem, startBackend } from './server.js';
import { ensureSigningKey } from './signing-key.js';


export async function cmdInit(args: string[], io: CliIO): Promise<number> {
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

export async function cmdServe(args: string[], io: CliIO): Promise<number> {
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

export async function cmdPki(args: string[], io: CliIO): Promise<number> {
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

