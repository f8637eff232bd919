/**
 * protocol-v2 "Peripheral checks on a v2 welcome", numbered as the page numbers them. Pure:
 * the caller supplies the pinned backend keys, its own id and public key, the hello bytes it
 * emitted, its offline setting and (if it has a clock) the time. Returns the first failed
 * check as a stable code; never throws for bad input.
 */
import { decodeCbor } from '../cbor.js';
import { decodeSign1, verifySign1, type DecodedSign1 } from '../cose.js';
import { bytesEqual } from '../crypto.js';
import { ProtocolError } from '../errors.js';
import { helloHash, parseGatewayCredential, parseLease } from '../messages.js';
import type { GatewayCredential, Lease, Signed } from '../types.js';
import { parseGrant, parseHelloV2, parseWelcomeV2 } from './messages.js';
import type { Grant, HelloV2, WelcomeV2, WelcomeV2Offline, WelcomeV2Online } from './types.js';

export interface CheckWelcomeV2Options {
  /** Pinned (kid_S → pk_S) pairs, raw Ed25519; the COSE kid picks the key. */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** The peripheral's own device id. */
  dev: string;
  /** The peripheral's own Ed25519 public key (offline: `lease.dpk` must be it). */
  devicePublicKey: Uint8Array;
  /** The hello exactly as this peripheral emitted it. */
  helloBytes: Uint8Array;
  /** Unix seconds, only if the peripheral has a clock. */
  now?: number;
  /**
   * Whether an offline welcome (8 + 27) may be accepted. The reference peripheral's default
   * (protocol-v2 check 3): allowed with a clock, refused without one.
   */
  allowOffline?: boolean;
  /** The peripheral's own maximum session age in seconds (default 86,400). */
  maxLifeSeconds?: number;
}

export type WelcomeV2Refusal =
  // check 1
  | 'GH_WELCOME_MALFORMED'
  | 'GH_WELCOME_NOT_TAGGED'
  | 'GH_WELCOME_VERSION'
  | 'GH_WELCOME_SHAPE'
  | 'GH_WELCOME_DEV_MISMATCH'
  | 'GH_WELCOME_HELLO_GW'
  | 'GH_WELCOME_HELLO_HASH'
  // check 2 (online)
  | 'GH_WELCOME_GRANT_MALFORMED'
  | 'GH_WELCOME_GRANT_UNKNOWN_KID'
  | 'GH_WELCOME_GRANT_SIGNATURE'
  | 'GH_WELCOME_GRANT_TYPE'
  | 'GH_WELCOME_GRANT_DEV'
  | 'GH_WELCOME_GRANT_GW'
  | 'GH_WELCOME_GRANT_HH'
  // check 3 (offline)
  | 'GH_WELCOME_OFFLINE_REFUSED'
  | 'GH_WELCOME_CRED_MALFORMED'
  | 'GH_WELCOME_CRED_UNKNOWN_KID'
  | 'GH_WELCOME_CRED_SIGNATURE'
  | 'GH_WELCOME_CRED_TYPE'
  | 'GH_WELCOME_GW_MISMATCH'
  | 'GH_WELCOME_LEASE_MALFORMED'
  | 'GH_WELCOME_LEASE_UNKNOWN_KID'
  | 'GH_WELCOME_LEASE_SIGNATURE'
  | 'GH_WELCOME_LEASE_TYPE'
  | 'GH_WELCOME_LEASE_DEV'
  | 'GH_WELCOME_LEASE_GW'
  | 'GH_WELCOME_LEASE_DPK'
  | 'GH_WELCOME_EXPIRED'
  | 'GH_WELCOME_LEASE_EXPIRED'
  // checks 2 and 3
  | 'GH_WELCOME_SIGNATURE';

export type CheckWelcomeV2Result =
  | {
      ok: true;
      mode: 'online' | 'offline';
      welcome: WelcomeV2;
      signed: Signed<WelcomeV2>;
      hello: HelloV2;
      grant?: Grant;
      credential?: GatewayCredential;
      lease?: Lease;
      /** Check 4: seconds until P ends the session on its own monotonic timer. */
      lifeSeconds: number;
    }
  | { ok: false; check: 1 | 2 | 3; code: WelcomeV2Refusal; detail: string };

type Refusal = Extract<CheckWelcomeV2Result, { ok: false }>;

const DEFAULT_MAX_LIFE = 86_400;

function refuse(check: 1 | 2 | 3, code: WelcomeV2Refusal, detail: string): Refusal {
  return { ok: false, check, code, detail };
}

function describe(e: unknown): string {
  if (e instanceof ProtocolError) return `${e.code}: ${e.message}`;
  throw e;
}

/**
 * A backend-signed object inside a welcome: decoded, its kid pinned, verified, of the expected
 * type, then parsed by its own strict parser. Refused with `GH_WELCOME_<object>_MALFORMED`,
 * `_UNKNOWN_KID`, `_SIGNATURE` or `_TYPE`.
 */
function backendSigned<T>(
  check: 2 | 3,
  bytes: Uint8Array,
  type: string,
  keys: ReadonlyMap<string, Uint8Array>,
  parse: (b: Uint8Array) => Signed<T>,
  object: 'GRANT' | 'CRED' | 'LEASE',
): Signed<T> | Refusal {
  const codes = {
    malformed: `GH_WELCOME_${object}_MALFORMED`,
    kid: `GH_WELCOME_${object}_UNKNOWN_KID`,
    sig: `GH_WELCOME_${object}_SIGNATURE`,
    type: `GH_WELCOME_${object}_TYPE`,
  } as const;
  let env: DecodedSign1;
  try {
    env = decodeSign1(bytes);
  } catch (e) {
    return refuse(check, codes.malformed, `${type}: ${describe(e)}`);
  }
  const pk = keys.get(env.kid);
  if (pk === undefined) return refuse(check, codes.kid, `${type} is signed by kid ${JSON.stringify(env.kid)}, which is not a pinned backend key`);
  if (!verifySign1(env, pk)) return refuse(check, codes.sig, `${type} signature does not verify under pinned backend key ${JSON.stringify(env.kid)}`);
  let actual: unknown;
  try {
    const p = decodeCbor(env.payload, { allowTopLevelTag: false });
    actual = p instanceof Map ? p.get(1) : undefined;
  } catch (e) {
    return refuse(check, codes.malformed, `${type} payload: ${describe(e)}`);
  }
  if (actual !== type) return refuse(check, codes.type, `backend-signed object is a ${JSON.stringify(actual ?? null)}, not a ${type}`);
  try {
    return parse(bytes);
  } catch (e) {
    return refuse(check, codes.malformed, `${type}: ${describe(e)}`);
  }
}

function isRefusal<T>(x: Signed<T> | Refusal): x is Refusal {
  return 'ok' in x;
}

/** Run protocol-v2's peripheral checks on a v2 welcome, in the page's order. */
export function checkWelcomeV2(welcomeBytes: Uint8Array, opts: CheckWelcomeV2Options): CheckWelcomeV2Result {
  // Our own hello: a programming error if it does not parse.
  const hello = parseHelloV2(opts.helloBytes).payload;

  // 1. A tagged COSE_Sign1, EdDSA, kid = gw, type welcome, 2: 2, life present, exactly one of
  //    {19} or {8, 27}; dev is its own id, gw is its hello's gw, hh is SHA-256 of its hello.
  let signed: Signed<WelcomeV2>;
  try {
    signed = parseWelcomeV2(welcomeBytes);
  } catch (e) {
    if (e instanceof ProtocolError) {
      if (e.code === 'GH_MSG_NOT_TAGGED') return refuse(1, 'GH_WELCOME_NOT_TAGGED', describe(e));
      if (e.code === 'GH_MSG_UNSUPPORTED_VERSION') return refuse(1, 'GH_WELCOME_VERSION', describe(e));
      if (e.code === 'GH_MSG_WELCOME_SHAPE') return refuse(1, 'GH_WELCOME_SHAPE', describe(e));
    }
    return refuse(1, 'GH_WELCOME_MALFORMED', `welcome: ${describe(e)}`);
  }
  const w = signed.payload;
  if (w.dev !== opts.dev) return refuse(1, 'GH_WELCOME_DEV_MISMATCH', `welcome is for device ${JSON.stringify(w.dev)}, not ${JSON.stringify(opts.dev)}`);
  if (w.gw !== hello.gw) return refuse(1, 'GH_WELCOME_HELLO_GW', `welcome is from ${JSON.stringify(w.gw)}, the hello named ${JSON.stringify(hello.gw)}`);
  const hh = helloHash(opts.helloBytes);
  if (!bytesEqual(w.hh, hh)) return refuse(1, 'GH_WELCOME_HELLO_HASH', 'welcome hh is not the SHA-256 of the hello this peripheral emitted');

  const maxLife = opts.maxLifeSeconds ?? DEFAULT_MAX_LIFE;
  if ('grant' in w) return online(signed, w, hello, hh, opts, maxLife);
  return offline(signed, w, hello, opts, maxLife);
}

function online(signed: Signed<WelcomeV2>, w: WelcomeV2Online, hello: HelloV2, hh: Uint8Array, opts: CheckWelcomeV2Options, maxLife: number): CheckWelcomeV2Result {
  // 2. The grant verifies under the pinned pk_S its kid names and is a grant; its dev, gw, hh
  //    are ours, the welcome's gw and hh; the welcome verifies under grant.spk.
  const g = backendSigned(2, w.grant, 'grant', opts.backendKeys, parseGrant, 'GRANT');
  if (isRefusal(g)) return g;
  const grant = g.payload;
  if (grant.dev !== opts.dev) return refuse(2, 'GH_WELCOME_GRANT_DEV', `grant is for device ${JSON.stringify(grant.dev)}`);
  if (grant.gw !== w.gw) return refuse(2, 'GH_WELCOME_GRANT_GW', `grant is for gateway ${JSON.stringify(grant.gw)}, welcome is from ${JSON.stringify(w.gw)}`);
  if (!bytesEqual(grant.hh, hh)) return refuse(2, 'GH_WELCOME_GRANT_HH', 'grant hh is not the hash of this hello');
  if (!verifySign1(signed, grant.spk)) return refuse(2, 'GH_WELCOME_SIGNATURE', "welcome signature does not verify under the grant's session key");
  // 4. min(welcome.life, grant.life, own maximum).
  return { ok: true, mode: 'online', welcome: w, signed, hello, grant, lifeSeconds: Math.min(w.life, grant.life, maxLife) };
}

function offline(signed: Signed<WelcomeV2>, w: WelcomeV2Offline, hello: HelloV2, opts: CheckWelcomeV2Options, maxLife: number): CheckWelcomeV2Result {
  // 3. Only where the peripheral's setting allows offline welcomes.
  const allow = opts.allowOffline ?? opts.now !== undefined;
  if (!allow) return refuse(3, 'GH_WELCOME_OFFLINE_REFUSED', 'offline welcome refused: this peripheral does not accept offline welcomes' + (opts.now === undefined ? ' (no clock)' : ''));
  const c = backendSigned(3, w.cred, 'gw-cred', opts.backendKeys, parseGatewayCredential, 'CRED');
  if (isRefusal(c)) return c;
  const cred = c.payload;
  if (cred.gw !== w.gw) return refuse(3, 'GH_WELCOME_GW_MISMATCH', `credential is for gateway ${JSON.stringify(cred.gw)}, welcome is from ${JSON.stringify(w.gw)}`);
  const l = backendSigned(3, w.lease, 'lease', opts.backendKeys, parseLease, 'LEASE');
  if (isRefusal(l)) return l;
  const lease = l.payload;
  if (lease.dev !== opts.dev) return refuse(3, 'GH_WELCOME_LEASE_DEV', `lease is for device ${JSON.stringify(lease.dev)}`);
  if (lease.gw !== w.gw) return refuse(3, 'GH_WELCOME_LEASE_GW', `lease is for gateway ${JSON.stringify(lease.gw)}, welcome is from ${JSON.stringify(w.gw)}`);
  if (!bytesEqual(lease.dpk, opts.devicePublicKey)) return refuse(3, 'GH_WELCOME_LEASE_DPK', "lease dpk is not this peripheral's public key");
  if (opts.now !== undefined) {
    if (!(opts.now < cred.exp)) return refuse(3, 'GH_WELCOME_EXPIRED', `credential expired at ${cred.exp} (now ${opts.now})`);
    if (!(opts.now < lease.exp)) return refuse(3, 'GH_WELCOME_LEASE_EXPIRED', `lease expired at ${lease.exp} (now ${opts.now})`);
  }
  if (!verifySign1(signed, cred.spk)) return refuse(3, 'GH_WELCOME_SIGNATURE', "welcome signature does not verify under the credential's session key");
  // 4. min(welcome.life, own maximum; with a clock also lease.exp − now and cred.exp − now).
  let life = Math.min(w.life, maxLife);
  if (opts.now !== undefined) life = Math.min(life, lease.exp - opts.now, cred.exp - opts.now);
  return { ok: true, mode: 'offline', welcome: w, signed, hello, credential: cred, lease, lifeSeconds: life };
}
