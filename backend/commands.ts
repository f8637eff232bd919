/**
 * Commands made and signed by S (protocol-v2 "Commands"):
 * `COSE_Sign1[sk_S, kid=kid_S]({1:"command", 2:2, 3:dev, 7:hh, 23:cid, 21:topic, 22:body, 11:iat, 12:exp})`,
 * bound to the newest grant's `hh` and queued for that grant's gateway until `exp`; re-signed
 * with a newer grant's `hh` (same `cid`) when S issues one.
 */
import { MAX_COMMAND_BODY_BYTES, MAX_COMMAND_BYTES, signCommand, topicNameProblem, type Signer } from '../protocol/index.js';
import type { CommandRecord } from './data-plane-store.js';
import { CommandError } from './errors.js';
import type { GrantRecord } from './registry.js';
import type { BackendStore } from './store.js';

/** Default lifetime of a command, seconds. */
export const DEFAULT_COMMAND_TTL_SECONDS = 3600;
/** Longest lifetime a command may be given, seconds (7 days). */
export const MAX_COMMAND_TTL_SECONDS = 7 * 86_400;

export interface IssueCommand {
  dev: string;
  topic: string;
  body: Uint8Array;
  /** Seconds until `exp`. Default {@link DEFAULT_COMMAND_TTL_SECONDS}. */
  ttlSeconds?: number;
}

/** Sign and queue a command for `dev`'s newest grant. Throws {@link CommandError}. */
export async function issueCommand(store: BackendStore, signer: Signer, c: IssueCommand, now: number): Promise<CommandRecord> {
  const ttl = c.ttlSeconds ?? DEFAULT_COMMAND_TTL_SECONDS;
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > MAX_COMMAND_TTL_SECONDS) throw new CommandError('GH_COMMAND_BAD_TTL', `the ttl must be 1-${MAX_COMMAND_TTL_SECONDS} seconds`);
  const topicProblem = topicNameProblem(c.topic);
  if (topicProblem !== undefined) throw new CommandError('GH_COMMAND_BAD_TOPIC', `the topic ${topicProblem}`);
  if (c.body.length > MAX_COMMAND_BODY_BYTES) throw new CommandError('GH_COMMAND_TOO_LARGE', `the body is ${c.body.length} bytes, at most ${MAX_COMMAND_BODY_BYTES}`);
  const device = await store.getDevice(c.dev);
  if (device === undefined) throw new CommandError('GH_COMMAND_NO_DEVICE', `no device "${c.dev}"`);
  if (device.status !== 'active') throw new CommandError('GH_COMMAND_NO_DEVICE', `device "${c.dev}" is revoked`);
  const grant = await store.newestGrant(c.dev);
  if (grant === undefined) throw new CommandError('GH_COMMAND_NO_GRANT', `device "${c.dev}" has no protocol-v2 grant yet (it never had a v2 session)`);
  const exp = now + ttl;
  // Sized before a cid is taken: a refused command leaves no gap.
  await sign(signer, { dev: c.dev, hh: grant.hh, cid: Number.MAX_SAFE_INTEGER, topic: c.topic, body: c.body, iat: now, exp });
  const cid = await store.nextCommandId(c.dev);
  const command = await sign(signer, { dev: c.dev, hh: grant.hh, cid, topic: c.topic, body: c.body, iat: now, exp });
  return store.queueCommand({ dev: c.dev, cid, gw: grant.gw, hh: grant.hh, topic: c.topic, body: c.body, iat: now, exp, command });
}

async function sign(signer: Signer, m: { dev: string; hh: Uint8Array; cid: number; topic: string; body: Uint8Array; iat: number; exp: number }): Promise<Uint8Array> {
  const bytes = await signCommand({ type: 'command', version: 2, ...m }, signer);
  if (bytes.length > MAX_COMMAND_BYTES) throw new CommandError('GH_COMMAND_TOO_LARGE', `the command is ${bytes.length} bytes, at most ${MAX_COMMAND_BYTES}`);
  return bytes;
}

/**
 * protocol-v2 "Commands": S re-signs every command of the device not yet acknowledged with the
 * newer grant's `hh` (same `cid`), so it follows the device to its new session or gateway.
 * Returns how many were moved.
 */
export async function resignForGrants(store: BackendStore, signer: Signer, grants: readonly GrantRecord[], now: number): Promise<number> {
  if (grants.length === 0) return 0;
  const newest = new Map(grants.map((g) => [g.dev, g]));
  const open = await store.openCommands([...newest.keys()], now);
  let moved = 0;
  for (const c of open) {
    const g = newest.get(c.dev);
    if (g === undefined) continue;
    const command = await sign(signer, { dev: c.dev, hh: g.hh, cid: c.cid, topic: c.topic, body: c.body, iat: now, exp: c.exp });
    if (await store.replaceCommand({ dev: c.dev, cid: c.cid, gw: g.gw, hh: g.hh, topic: c.topic, body: c.body, iat: now, exp: c.exp, command })) moved++;
  }
  return moved;
}
