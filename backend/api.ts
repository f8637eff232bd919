/**
 * The three calls of protocol-v1 "Backend HTTP API", after the request is authenticated:
 * session credentials, hello verification with leases (and, for a protocol-v2 hello, a grant),
 * and the revocation feed.
 */
import type { Logger } from 'winston';
import {
  MAX_MESSAGE_BYTES,
  ProtocolError,
  base64UrlDecode,
  base64UrlEncode,
  ed25519PublicKeyProblem,
  helloHash,
  isValidId,
  parseHello,
  parseHelloV2,
  signGatewayCredential,
  signGrant,
  verifySign1,
  type Hello,
  type HelloV2,
  type ReasonCode,
  type Signed,
  type Signer,
} from '../protocol/index.js';
import { resignForGrants } from './commands.js';
import { Problem } from './problem.js';
import type { IssuedLeases } from './issued-leases.js';
import type { Authenticated } from './auth.js';
import type { GatewayRecord, GrantRecord } from './registry.js';
import { deviceAllowedAt, type BackendStore, type VerifiedAt, type VerifyDevice } from './store.js';

/** protocol-v1: at most 256 hellos per `POST /v1/verify`. */
export const MAX_HELLOS = 256;

export interface ApiDeps {
  registry: BackendStore;
  signer: Signer;
  logger: Logger;
  /** Lease lifetime in seconds. */
  leaseSeconds: number;
  /** Leases signed lately, reused while they have half their life left (backend/issued-leases.ts). */
  leases: IssuedLeases;
  /** Longest session credential the backend issues, in seconds. */
  maxSessionSeconds: number;
  /** protocol-v2: a grant's `life`, the longest peripheral session the backend allows, seconds. */
  grantLifeSeconds: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Exactly these keys: an unknown field is a client bug worth reporting, not ignoring. */
function exactKeys(v: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const k of Object.keys(v)) if (!keys.includes(k)) throw new Problem('malformed-request', `${what} has unexpected field "${k}"`);
  for (const k of keys) if (!(k in v)) throw new Problem('malformed-request', `${what} lacks "${k}"`);
}

/** `POST /v1/gateways/{gw}/sessions`: certify a session key with a gw-cred. */
export async function createSession(
  body: unknown,
  gateway: GatewayRecord,
  now: number,
  deps: ApiDeps,
): Promise<{ credential: string; notAfter: number }> {
  if (!isObject(body)) throw new Problem('malformed-request', 'body must be a JSON object');
  exactKeys(body, ['sessionPublicKey', 'notAfter'], 'body');
  const spk = typeof body['sessionPublicKey'] === 'string' ? base64UrlDecode(body['sessionPublicKey'], 64) : undefined;
  if (spk === undefined || spk.length !== 32) throw new Problem('malformed-request', 'sessionPublicKey must be 32 bytes, base64url');
  const keyProblem = ed25519PublicKeyProblem(spk);
  if (keyProblem !== undefined) throw new Problem('malformed-request', `sessionPublicKey: ${keyProblem}`);
  const requested = body['notAfter'];
  if (typeof requested !== 'number' || !Number.isSafeInteger(requested) || requested <= now) {
    throw new Problem('malformed-request', 'notAfter must be an integer in the future (unix seconds)');
  }
  const exp = Math.min(requested, now + deps.maxSessionSeconds);
  const credential = await signGatewayCredential(
    { type: 'gw-cred', version: 1, gw: gateway.id, spk, tpk: gateway.tpk, iat: now, exp },
    deps.signer,
  );
  await deps.registry.recordSessionKey(gateway.id, spk, exp);
  deps.logger.info('session credential issued', { gw: gateway.id, exp });
  return { credential: base64UrlEncode(credential), notAfter: exp };
}

export type VerifyItemResult =
  | { id: string; ok: true; dev: string; lease: string; grant?: string }
  | { id: string; ok: false; reason: ReasonCode };

interface HelloItem {
  id: string;
  transport: string;
  hello: Uint8Array;
}

function parseVerifyBody(body: unknown): HelloItem[] {
  if (!isObject(body)) throw new Problem('malformed-request', 'body must be a JSON object');
  exactKeys(body, ['hellos'], 'body');
  const hellos = body['hellos'];
  if (!Array.isArray(hellos) || hellos.length === 0) throw new Problem('malformed-request', 'hellos must be a non-empty array');
  if (hellos.length > MAX_HELLOS) throw new Problem('too-many-hellos', `at most ${MAX_HELLOS} hellos per request`);
  const ids = new Set<string>();
  return hellos.map((h: unknown, i) => {
    if (!isObject(h)) throw new Problem('malformed-request', `hellos[${i}] must be an object`);
    exactKeys(h, ['id', 'transport', 'hello'], `hellos[${i}]`);
    const { id, transport, hello } = h;
    if (!isValidId(id)) throw new Problem('malformed-request', `hellos[${i}].id must be 1-64 characters of [A-Za-z0-9._:-]`);
    if (ids.has(id)) throw new Problem('malformed-request', `hellos[${i}].id repeats an earlier id`);
    ids.add(id);
    if (transport !== 'mqtt' && transport !== 'ble') throw new Problem('malformed-request', `hellos[${i}].transport must be "mqtt" or "ble"`);
    const bytes = typeof hello === 'string' ? base64UrlDecode(hello, MAX_MESSAGE_BYTES) : undefined;
    if (bytes === undefined || bytes.length === 0 || bytes.length > MAX_MESSAGE_BYTES) {
      throw new Problem('malformed-request', `hellos[${i}].hello must be base64url of at most ${MAX_MESSAGE_BYTES} bytes`);
    }
    return { id, transport, hello: bytes };
  });
}

/** A v1 or v2 hello, told apart by its version field (the v1 parser refuses any other version first). */
function parseAnyHello(bytes: Uint8Array): { v: 1; signed: Signed<Hello> } | { v: 2; signed: Signed<HelloV2> } {
  try {
    return { v: 1, signed: parseHello(bytes) };
  } catch (err) {
    if (!(err instanceof ProtocolError) || err.code !== 'GH_MSG_UNSUPPORTED_VERSION') throw err;
  }
  return { v: 2, signed: parseHelloV2(bytes) };
}

/** protocol-v1 "Backend checks" for one hello, with protocol-v2's additions; a lease (and a grant) for an ok verdict. */
/** What one batch read before its hellos, and what it will write after them. */
interface BatchContext {
  devices: Map<string, VerifyDevice>;
  /** Devices a v2 hello earlier in this batch proved v2. */
  v2: string[];
  verifiedAt: VerifiedAt[];
  grants: GrantRecord[];
}

async function verifyOne(item: HelloItem, auth: Authenticated, now: number, deps: ApiDeps, batch: BatchContext): Promise<VerifyItemResult> {
  const gateway = auth.gateway;
  const refuse = (reason: ReasonCode): VerifyItemResult => ({ id: item.id, ok: false, reason });
  let parsed;
  try {
    parsed = parseAnyHello(item.hello);
  } catch (err) {
    return refuse(err instanceof ProtocolError ? err.reason : 'malformed');
  }
  const signed = parsed.signed;
  const dev = signed.payload.dev;
  const known = batch.devices.get(dev);
  if (known === undefined) return refuse('unknown-device');
  const device = known.device;
  if (device.status !== 'active') return refuse('revoked');
  if (!verifySign1(signed, device.publicKey)) return refuse('bad-signature');
  if (parsed.v === 2) {
    // protocol-v2 "No downgrade": the device proved it speaks v2; its v1 hellos are refused from now on.
    if (known.v2Since === undefined && !batch.v2.includes(dev)) batch.v2.push(dev);
    // protocol-v2 "Backend checks": the hello names the gateway that forwards it.
    if (parsed.signed.payload.gw !== gateway.id) return refuse('not-allowed-here');
  } else if (known.v2Since !== undefined || batch.v2.includes(dev)) {
    return refuse('unsupported-version');
  }
  if (!deviceAllowedAt(device, gateway)) return refuse('not-allowed-here');
  const { bytes: lease, iat: leaseIat } = await deps.leases.lease({ dev, gw: gateway.id, dpk: device.publicKey, policy: device.policy, now, leaseSeconds: deps.leaseSeconds }, deps.signer);
  // Its revocation will be in this gateway's feed; its telemetry is believed until this lease's exp.
  batch.verifiedAt.push({ dev, gw: gateway.id, leaseIat });
  const ok = { id: item.id, ok: true as const, dev, lease: base64UrlEncode(lease) };
  if (parsed.v === 1) return ok;
  const spk = auth.sessionPublicKey;
  if (spk === undefined) throw new Problem('internal');
  // protocol-v2: hh is SHA-256 over the exact hello bytes verified, never a re-encoding.
  const hh = helloHash(item.hello);
  const grant = await signGrant({ type: 'grant', version: 2, dev, gw: gateway.id, hh, spk, iat: now, life: deps.grantLifeSeconds }, deps.signer);
  batch.grants.push({ dev, gw: gateway.id, hh, spk, iat: now, life: deps.grantLifeSeconds });
  return { ...ok, grant: base64UrlEncode(grant) };
}

/** `POST /v1/verify`: a verdict for each hello, in order. */
export async function verifyHellos(body: unknown, auth: Authenticated, now: number, deps: ApiDeps): Promise<{ results: VerifyItemResult[] }> {
  const items = parseVerifyBody(body);
  const results: VerifyItemResult[] = [];
  // One read for the batch: the devices its hellos name (the `dev` is read before the signature
  // is checked, as one hello at a time would), and one write after it.
  const devs: string[] = [];
  for (const item of items) {
    try {
      devs.push(parseAnyHello(item.hello).signed.payload.dev);
    } catch {
      // refused below, with its reason
    }
  }
  const batch: BatchContext = { devices: await deps.registry.devicesForVerify(devs), v2: [], verifiedAt: [], grants: [] };
  // In order: a v2 hello earlier in the batch makes a later v1 hello of that device unsupported.
  for (const item of items) results.push(await verifyOne(item, auth, now, deps, batch));
  // Written before the answer is sent: a verdict the gateway sees is already recorded.
  await deps.registry.recordVerifyOutcomes({ v2: batch.v2, verifiedAt: batch.verifiedAt, grants: batch.grants });
  // protocol-v2 "Commands": open commands follow the device to its newest grant. A failure here
  // leaves them bound to the older session (they expire); the verdicts stand.
  await resignForGrants(deps.registry, deps.signer, batch.grants, now).catch((err: unknown) =>
    deps.logger.warn('commands not re-signed for new grants', { error: err instanceof Error ? err.message : String(err) }),
  );
  const refused = results.filter((r) => !r.ok).length;
  const grants = results.filter((r) => r.ok && r.grant !== undefined).length;
  deps.logger.debug('hellos verified', { gw: auth.gateway.id, count: results.length, refused, grants });
  return { results };
}

/** `GET /v1/gateways/{gw}/revocations?since=N`. */
export async function revocations(query: URLSearchParams, gateway: GatewayRecord, deps: ApiDeps): Promise<{ cursor: number; devices: string[] }> {
  for (const k of query.keys()) if (k !== 'since') throw new Problem('malformed-request', `unknown query parameter "${k}"`);
  const all = query.getAll('since');
  if (all.length > 1) throw new Problem('malformed-request', 'since given twice');
  const raw = all[0] ?? '0';
  if (!/^[0-9]{1,15}$/.test(raw)) throw new Problem('malformed-request', 'since must be a non-negative integer');
  // Only devices verified at this gateway: another gateway's devices are none of its business.
  const page = await deps.registry.revocationsSince(Number(raw), undefined, gateway.id);
  deps.logger.debug('revocations served', { gw: gateway.id, since: Number(raw), count: page.devices.length });
  return page;
}
