/**
 * `gatehouse-backend gateway add|revoke|list`, `device add|revoke|list` and `import`: the
 * registry's admin commands (backend/cli.ts dispatches here).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError, write, type CliIO } from '../common/cli-io.js';
import type { Policy } from '../protocol/index.js';
import { COMMON, withRegistry } from './cli-options.js';
import { importDevices, parseDevicePublicKey, splitGateways, type ImportFormat } from './import.js';
import type { DeviceRecord, GatewayRecord } from './registry.js';


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

export async function cmdGateway(args: string[], io: CliIO): Promise<number> {
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

export async function cmdDevice(args: string[], io: CliIO): Promise<number> {
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

export async function cmdImport(args: string[], io: CliIO): Promise<number> {
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
