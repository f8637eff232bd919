/**
 * The data plane's calls (protocol-v2 "Backend HTTP API (v2 additions)"), after the request is
 * authenticated with a session key of gateway {gw}:
 *
 * - `POST /v1/gateways/{gw}/telemetry`: stored exactly once per (dev, sid, seq) and per (dev, mid).
 * - `GET /v1/gateways/{gw}/commands?since=N&wait=S`: the long poll of the command queue.
 * - `POST /v1/gateways/{gw}/acks`: the outcomes of commands.
 *
 * protocol-v2 "What S trusts G for": S believes G's account of telemetry and acks only for
 * devices that had an ok verdict at G, at a time within the lease that verdict carried, and
 * (telemetry) on topics the device's policy grants. A request with any record outside that is
 * refused whole (403 `not-granted`, listing the refused records), so nothing is half-stored.
 */
import {
  GATEHOUSE_MAX_SKEW_SECONDS,
  MAX_SEQ,
  anyTopicMatches,
  base64UrlDecode,
  base64UrlEncode,
  expandPolicy,
  isValidId,
  topicNameProblem,
} from '../protocol/index.js';
import type { ApiDeps } from './api.js';
import type { CommandWaiters } from './command-waiters.js';
import type { AckRecord, AckStatus, TelemetryRecord } from './data-plane-store.js';
import { Problem } from './problem.js';
import type { DeviceRecord } from './registry.js';

/** protocol-v2: at most 256 records per telemetry upload. */
export const MAX_RECORDS = 256;
/** protocol-v2: at most 256 acks per upload. */
export const MAX_ACKS = 256;
/** protocol-v2 `pub` frame: a body is at most 1,024 bytes. */
export const MAX_TELEMETRY_BODY_BYTES = 1024;
/** protocol-v2: `sid` is 8 bytes. */
export const SID_BYTES = 8;
/** protocol-v2: a long poll waits at most 30 s. */
export const MAX_WAIT_SECONDS = 30;
/** Most commands one answer carries; the gateway asks again from the cursor. */
export const COMMAND_PAGE = 256;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isUint(v: unknown, max = Number.MAX_SAFE_INTEGER): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function checkKeys(v: Record<string, unknown>, required: readonly string[], optional: readonly string[], what: string): void {
  for (const k of Object.keys(v)) if (!required.includes(k) && !optional.includes(k)) throw new Problem('malformed-request', `${what} has unexpected field "${k}"`);
  for (const k of required) if (!(k in v)) throw new Problem('malformed-request', `${what} lacks "${k}"`);
}

function listOf(body: unknown, key: string, max: number): unknown[] {
  if (!isObject(body)) throw new Problem('malformed-request', 'body must be a JSON object');
  checkKeys(body, [key], [], 'body');
  const list = body[key];
  if (!Array.isArray(list) || list.length === 0) throw new Problem('malformed-request', `${key} must be a non-empty array`);
  if (list.length > max) throw new Problem('too-many-records', `at most ${max} ${key} per request`);
  return list;
}

function parseRecord(r: unknown, i: number): TelemetryRecord {
  const at = `records[${i}]`;
  if (!isObject(r)) throw new Problem('malformed-request', `${at} must be an object`);
  checkKeys(r, ['dev', 'sid', 'seq', 'topic', 'body', 'receivedAt'], ['mid'], at);
  const { dev, sid, seq, topic, body, receivedAt, mid } = r;
  if (!isValidId(dev)) throw new Problem('malformed-request', `${at}.dev must be 1-64 characters of [A-Za-z0-9._:-]`);
  const sidBytes = typeof sid === 'string' ? base64UrlDecode(sid, SID_BYTES) : undefined;
  if (sidBytes === undefined || sidBytes.length !== SID_BYTES) throw new Problem('malformed-request', `${at}.sid must be ${SID_BYTES} bytes, base64url without padding`);
  if (!isUint(seq, MAX_SEQ)) throw new Problem('malformed-request', `${at}.seq must be an integer 0-${MAX_SEQ}`);
  const topicProblem = topicNameProblem(topic);
  if (topicProblem !== undefined) throw new Problem('malformed-request', `${at}.topic ${topicProblem}`);
  const bodyBytes = typeof body === 'string' ? base64UrlDecode(body, MAX_TELEMETRY_BODY_BYTES) : undefined;
  if (bodyBytes === undefined || bodyBytes.length > MAX_TELEMETRY_BODY_BYTES) {
    throw new Problem('malformed-request', `${at}.body must be base64url without padding of at most ${MAX_TELEMETRY_BODY_BYTES} bytes`);
  }
  if (!isUint(receivedAt)) throw new Problem('malformed-request', `${at}.receivedAt must be unix milliseconds`);
  if (mid !== undefined && !isUint(mid)) throw new Problem('malformed-request', `${at}.mid must be a non-negative integer`);
  return { dev, sid: sidBytes, seq, topic: topic as string, body: bodyBytes, receivedAt, ...(mid !== undefined ? { mid } : {}) };
}

const ACK_STATUSES: readonly AckStatus[] = ['done', 'failed', 'refused'];

function parseAck(a: unknown, i: number): AckRecord {
  const at = `acks[${i}]`;
  if (!isObject(a)) throw new Problem('malformed-request', `${at} must be an object`);
  checkKeys(a, ['dev', 'cid', 'status', 'at'], [], at);
  const { dev, cid, status } = a;
  if (!isValidId(dev)) throw new Problem('malformed-request', `${at}.dev must be 1-64 characters of [A-Za-z0-9._:-]`);
  // cid 0: a `refused` for a command whose cid did not decode (protocol-v2 "Commands").
  if (!isUint(cid)) throw new Problem('malformed-request', `${at}.cid must be a non-negative integer`);
  if (typeof status !== 'string' || !(ACK_STATUSES as readonly string[]).includes(status)) throw new Problem('malformed-request', `${at}.status must be done, failed or refused`);
  if (!isUint(a['at'])) throw new Problem('malformed-request', `${at}.at must be unix milliseconds`);
  return { dev, cid, status: status as AckStatus, at: a['at'] };
}

/**
 * Why gateway `gw` may not speak for `dev` at `atMs`, or undefined: S believes G for devices that
 * had an ok verdict at G, at a time from that first verdict (less the clock skew allowed) to the
 * end of the newest verdict's lease, not after the device's revocation nor ahead of S's clock.
 */
async function refusals(
  deps: ApiDeps,
  gw: string,
  items: readonly { dev: string; atMs: number; topic?: string }[],
  now: number,
): Promise<{ index: number; dev: string; why: string }[]> {
  const devs = [...new Set(items.map((x) => x.dev))];
  const [known, windows] = await Promise.all([deps.registry.devicesForVerify(devs), deps.registry.verdictWindows(gw, devs)]);
  const policies = new Map<string, string[]>();
  const pubOf = (d: DeviceRecord): string[] => {
    let p = policies.get(d.id);
    if (p === undefined) policies.set(d.id, (p = expandPolicy(d.policy, d.id).pub));
    return p;
  };
  const out: { index: number; dev: string; why: string }[] = [];
  items.forEach((x, index) => {
    const refuse = (why: string): void => void out.push({ index, dev: x.dev, why });
    const device = known.get(x.dev)?.device;
    const w = windows.get(x.dev);
    if (device === undefined) return refuse('unknown device');
    if (w === undefined) return refuse('no ok verdict for this device at this gateway');
    if (x.atMs < (w.firstAt - GATEHOUSE_MAX_SKEW_SECONDS) * 1000 || x.atMs >= (w.lastAt + deps.leaseSeconds) * 1000) return refuse('outside the lifetime of its lease here');
    if (x.atMs > (now + GATEHOUSE_MAX_SKEW_SECONDS) * 1000) return refuse('time is ahead of the backend clock');
    if (device.revokedAt !== undefined && x.atMs >= device.revokedAt * 1000) return refuse('device revoked');
    if (x.topic !== undefined && !anyTopicMatches(pubOf(device), x.topic)) return refuse('topic outside the policy');
    return undefined;
  });
  return out;
}

function refuse(refused: { index: number; dev: string; why: string }[], what: string): never {
  const first = refused[0] as { index: number; dev: string; why: string };
  throw new Problem('not-granted', `${what}[${first.index}] (${first.dev}): ${first.why}; nothing stored`, { extra: { refused } });
}

/** `POST /v1/gateways/{gw}/telemetry`. */
export async function uploadTelemetry(body: unknown, gw: string, now: number, deps: ApiDeps): Promise<{ accepted: number; duplicates: number }> {
  const records = listOf(body, 'records', MAX_RECORDS).map(parseRecord);
  const refused = await refusals(deps, gw, records.map((r) => ({ dev: r.dev, atMs: r.receivedAt, topic: r.topic })), now);
  if (refused.length > 0) refuse(refused, 'records');
  const out = await deps.registry.storeTelemetry(gw, records);
  deps.logger.debug('telemetry stored', { gw, ...out });
  return out;
}

/** `POST /v1/gateways/{gw}/acks`. */
export async function uploadAcks(body: unknown, gw: string, now: number, deps: ApiDeps): Promise<{ accepted: number }> {
  const acks = listOf(body, 'acks', MAX_ACKS).map(parseAck);
  const refused = await refusals(deps, gw, acks.map((a) => ({ dev: a.dev, atMs: a.at })), now);
  if (refused.length > 0) refuse(refused, 'acks');
  const accepted = await deps.registry.recordAcks(gw, acks);
  deps.logger.debug('acks recorded', { gw, count: acks.length, accepted });
  return { accepted };
}

function intParam(query: URLSearchParams, name: string, max: number, dflt: number): number {
  const all = query.getAll(name);
  if (all.length > 1) throw new Problem('malformed-request', `${name} given twice`);
  const raw = all[0];
  if (raw === undefined) return dflt;
  if (!/^[0-9]{1,15}$/.test(raw) || Number(raw) > max) throw new Problem('malformed-request', `${name} must be an integer 0-${max}`);
  return Number(raw);
}

export interface CommandsAnswer {
  cursor: number;
  commands: { dev: string; cid: number; command: string }[];
}

/** `GET /v1/gateways/{gw}/commands?since=N&wait=S`: answers at once when something is queued, else at the end of `wait`. */
export async function pollCommands(
  query: URLSearchParams,
  gw: string,
  deps: ApiDeps,
  waiters: CommandWaiters,
  nowS: () => number,
  signal: AbortSignal,
): Promise<CommandsAnswer> {
  for (const k of query.keys()) if (k !== 'since' && k !== 'wait') throw new Problem('malformed-request', `unknown query parameter "${k}"`);
  const since = intParam(query, 'since', Number.MAX_SAFE_INTEGER, 0);
  const wait = intParam(query, 'wait', MAX_WAIT_SECONDS, 0);
  const page = async (): Promise<CommandsAnswer> => {
    const r = await deps.registry.commandsFor(gw, since, nowS(), COMMAND_PAGE);
    return { cursor: r.cursor, commands: r.commands.map((c) => ({ dev: c.dev, cid: c.cid, command: base64UrlEncode(c.command) })) };
  };
  if (wait === 0) return page();
  // Registered before the first look, so a command queued after that look still wakes it.
  const waiter = waiters.register(gw, wait * 1000);
  if (waiter === undefined) throw new Problem('busy', 'too many long polls waiting');
  const onAbort = (): void => waiter.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const first = await page();
    if (first.commands.length > 0) return first;
    await waiter.settled;
    return await page();
  } finally {
    signal.removeEventListener('abort', onAbort);
    waiter.cancel();
  }
}
