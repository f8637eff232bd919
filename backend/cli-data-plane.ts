/**
 * `gatehouse-backend command send|list` and `gatehouse-backend telemetry tail`: the data plane's
 * admin commands (backend/cli.ts dispatches here).
 */
import { parseArgs } from 'node:util';
import { UsageError, write, type CliIO } from '../common/cli-io.js';
import { base64UrlEncode, isValidId } from '../protocol/index.js';
import { MAX_COMMAND_TTL_SECONDS, issueCommand } from './commands.js';
import type { CommandRecord, StoredTelemetry } from './data-plane-store.js';
import { loadSigningKey } from './signing-key.js';
import type { BackendStore } from './store.js';

export interface DataPlaneCliDeps {
  values: { 'data-dir'?: string | undefined; store?: string | undefined; json?: boolean | undefined };
  dataDir: string;
  withStore<T>(fn: (s: BackendStore) => Promise<T>): Promise<T>;
}

const nowS = (): number => Math.floor(Date.now() / 1000);

/** queued (not yet served), relayed (served to its gateway), done/failed (acked), expired. */
export function commandState(c: CommandRecord, now: number): 'queued' | 'relayed' | 'done' | 'failed' | 'expired' {
  if (c.status !== undefined) return c.status;
  if (c.exp <= now) return 'expired';
  return c.servedAt !== undefined ? 'relayed' : 'queued';
}

function commandJson(c: CommandRecord, now: number): Record<string, unknown> {
  return {
    dev: c.dev,
    cid: c.cid,
    state: commandState(c, now),
    gw: c.gw,
    topic: c.topic,
    body: base64UrlEncode(c.body),
    iat: c.iat,
    exp: c.exp,
    cursor: c.cursor,
    servedAt: c.servedAt,
    ackedAt: c.ackedAt,
    ackedBy: c.ackedBy,
    refused: c.refusedCount,
  };
}

function commandLine(c: CommandRecord, now: number): string {
  const ack = c.status !== undefined ? `\tacked ${c.status} by ${c.ackedBy ?? '?'} at ${new Date(c.ackedAt ?? 0).toISOString()}` : '';
  const refused = c.refusedCount > 0 ? `\trefused ${c.refusedCount}x` : '';
  return `cid ${c.cid}\t${commandState(c, now)}\tgw=${c.gw}\ttopic=${c.topic}\texp=${new Date(c.exp * 1000).toISOString()}${ack}${refused}`;
}

/** Body text as the operator wrote it, UTF-8. */
const utf8 = new TextEncoder();

export async function cmdCommand(args: string[], io: CliIO, deps: (v: DataPlaneCliDeps['values']) => DataPlaneCliDeps): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { 'data-dir': { type: 'string' }, store: { type: 'string' }, json: { type: 'boolean' }, ttl: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  const d = deps(values);
  switch (sub) {
    case 'send': {
      const [dev, topic, body, ...extra] = positionals;
      if (dev === undefined || topic === undefined || body === undefined || extra.length > 0) throw new UsageError('command send takes DEV TOPIC BODY');
      if (!isValidId(dev)) throw new UsageError('DEV must be 1-64 characters of [A-Za-z0-9._:-]');
      let ttlSeconds: number | undefined;
      if (values.ttl !== undefined) {
        if (!/^[0-9]+$/.test(values.ttl) || Number(values.ttl) < 1 || Number(values.ttl) > MAX_COMMAND_TTL_SECONDS) throw new UsageError(`--ttl must be an integer 1-${MAX_COMMAND_TTL_SECONDS}`);
        ttlSeconds = Number(values.ttl);
      }
      const signer = loadSigningKey(d.dataDir);
      const c = await d.withStore((s) => issueCommand(s, signer, { dev, topic, body: utf8.encode(body), ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) }, nowS()));
      write(io.stdout, values.json === true ? JSON.stringify(commandJson(c, nowS())) : String(c.cid));
      return 0;
    }
    case 'list': {
      const [dev, ...extra] = positionals;
      if (dev === undefined || extra.length > 0) throw new UsageError('command list takes DEV');
      const all = await d.withStore((s) => s.listCommands(dev));
      const now = nowS();
      write(io.stdout, values.json === true ? JSON.stringify(all.map((c) => commandJson(c, now))) : all.map((c) => commandLine(c, now)).join('\n') || '(no commands)');
      return 0;
    }
    default:
      throw new UsageError(`unknown command subcommand "${sub ?? ''}"`);
  }
}

function printable(body: Uint8Array): string {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u001f\u007f]/.test(text)) return JSON.stringify(text);
  } catch {
    // not UTF-8: shown as base64url below
  }
  return `b64:${base64UrlEncode(body)}`;
}

export function telemetryLine(r: StoredTelemetry, json: boolean): string {
  if (json) {
    return JSON.stringify({ id: r.id, dev: r.dev, gw: r.gw, sid: base64UrlEncode(r.sid), seq: r.seq, mid: r.mid, topic: r.topic, body: base64UrlEncode(r.body), receivedAt: r.receivedAt, storedAt: r.storedAt });
  }
  const mid = r.mid !== undefined ? `\tmid=${r.mid}` : '';
  return `${new Date(r.receivedAt).toISOString()}\t${r.dev}\tgw=${r.gw}\t${r.topic}\t${printable(r.body)}\tsid=${Buffer.from(r.sid).toString('hex')}\tseq=${r.seq}${mid}`;
}

export interface TailOptions {
  dev?: string;
  /** How many of the newest records first. */
  last: number;
  follow: boolean;
  json: boolean;
  /** How often --follow looks for new records, ms. */
  everyMs?: number;
  /** Ends --follow. */
  signal: AbortSignal;
  out(line: string): void;
}

/** Print the newest records, then (follow) each new one as it is stored, until `signal`. */
export async function tailTelemetry(store: BackendStore, o: TailOptions): Promise<void> {
  const first = await store.telemetryLast(o.last, o.dev);
  for (const r of first) o.out(telemetryLine(r, o.json));
  if (!o.follow) return;
  let after = first[first.length - 1]?.id ?? (await store.telemetryLast(1)).at(-1)?.id ?? 0;
  while (!o.signal.aborted) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, o.everyMs ?? 1000);
      o.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
    if (o.signal.aborted) break;
    for (;;) {
      const page = await store.telemetryAfter(after, 500, o.dev);
      for (const r of page) o.out(telemetryLine(r, o.json));
      after = page[page.length - 1]?.id ?? after;
      if (page.length < 500) break;
    }
  }
}

export async function cmdTelemetry(args: string[], io: CliIO, deps: (v: DataPlaneCliDeps['values']) => DataPlaneCliDeps): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'tail') throw new UsageError(`unknown telemetry subcommand "${sub ?? ''}"`);
  const { values, positionals } = parseArgs({
    args: rest,
    options: { 'data-dir': { type: 'string' }, store: { type: 'string' }, json: { type: 'boolean' }, follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' } },
    strict: true,
    allowPositionals: true,
  });
  const [dev, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError('telemetry tail takes at most one DEV');
  if (dev !== undefined && !isValidId(dev)) throw new UsageError('DEV must be 1-64 characters of [A-Za-z0-9._:-]');
  const lines = values.lines ?? '20';
  if (!/^[0-9]+$/.test(lines) || Number(lines) > 10_000) throw new UsageError('--lines must be an integer 0-10000');
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  if (values.follow === true) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  try {
    await deps(values).withStore((s) =>
      tailTelemetry(s, { ...(dev !== undefined ? { dev } : {}), last: Number(lines), follow: values.follow === true, json: values.json === true, signal: stop.signal, out: (l) => write(io.stdout, l) }),
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}
