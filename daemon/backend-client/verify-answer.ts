/**
 * protocol-v1 `POST /v1/verify` answer, read strictly into one verdict per hello. Pure: bytes
 * and objects in, verdicts out (the time comes in as `nowS`); the client counts, logs, caches
 * the leases and answers the callers.
 */
import { createHash } from 'node:crypto';
import { base64UrlDecode, isReasonCode, isValidId, MAX_MESSAGE_BYTES, parseGrant, ProtocolError, type Lease, type ReasonCode } from '../../protocol/index.js';
import { BackendError } from './errors.js';
import { checkLease } from './lease-check.js';
import type { BoundedSet } from '../../common/bounded-set.js';
import { badField, isObject } from './wire.js';

/** The verdict on one hello of a verify answer. */
export type HelloVerdict =
  /** `grant`: protocol-v2, the grant's COSE_Sign1 bytes for a v2 hello, relayed unchanged in the welcome. */
  | { kind: 'welcome'; lease: Lease; leaseBytes: Uint8Array; grant?: Uint8Array }
  | { kind: 'reject'; reason: ReasonCode }
  /**
   * The answer for this hello cannot be trusted, so the hello is answered backend-unavailable:
   * `reason` not a protocol-v1 reason code, `result` malformed (or for another device), `lease`
   * refused by checkLease, `grant` not a grant for this device and gateway.
   */
  | { kind: 'fault'; fault: 'reason' | 'result' | 'lease' | 'grant'; why: string };

export interface VerifyAnswer {
  /** Verdicts by wire id, in the answer's order. A hello the answer does not cover has none. */
  verdicts: Map<string, HelloVerdict>;
  /**
   * Why the rest of the answer was refused (not an object, not a results array, more results
   * than hellos, an id unknown or repeated); the verdicts read before it stand.
   */
  refused?: string;
}

export interface VerifyAnswerContext {
  gw: string;
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Unix seconds, for lease expiry. */
  nowS: number;
  /**
   * Leases (the SHA-256 of their exact bytes, so a remembered lease costs ~60 bytes, not its ~300) whose signature this process already verified
   * under pk_S: the backend reuses a lease while it has half its life left, so a device that
   * authenticates again gets the same bytes, and a signature verified once does not need
   * verifying again (~97 µs each). Every other check of the lease still runs.
   */
  verified?: BoundedSet;
}

/**
 * Reads `json` as the answer to the hellos `sent` (wire id → the device the hello names).
 *
 * Every lease is verified under pk_S (for its own device and this gateway) before its verdict
 * is used or the lease cached: the TLS link alone must not decide what policy a device gets
 * offline (security finding 5: checking only the first lease let whoever could break the link
 * inject any policy in the later results). Cost: docs/backend-client.md "Lease signatures".
 */
export function readVerifyAnswer(json: unknown, sent: ReadonlyMap<string, string>, ctx: VerifyAnswerContext): VerifyAnswer {
  const verdicts = new Map<string, HelloVerdict>();
  try {
    if (!isObject(json) || !Array.isArray(json.results)) badField('results is not an array');
    if (json.results.length > sent.size) badField('more results than hellos');
    for (const r of json.results as unknown[]) {
      if (!isObject(r) || typeof r.id !== 'string') badField('result without a string id');
      const dev = sent.get(r.id);
      if (dev === undefined || verdicts.has(r.id)) badField(`result for unknown or repeated id ${r.id.slice(0, 16)}`);
      verdicts.set(r.id, readResult(r, dev, ctx));
    }
  } catch (e) {
    return { verdicts, refused: e instanceof BackendError ? e.message : 'bad verify answer' };
  }
  return { verdicts };
}

function readResult(r: Record<string, unknown>, dev: string, ctx: VerifyAnswerContext): HelloVerdict {
  if (r.ok === false) {
    return isReasonCode(r.reason) ? { kind: 'reject', reason: r.reason } : { kind: 'fault', fault: 'reason', why: 'not a protocol-v1 reason code' };
  }
  if (r.ok !== true || typeof r.dev !== 'string' || !isValidId(r.dev) || r.dev !== dev || typeof r.lease !== 'string') {
    return { kind: 'fault', fault: 'result', why: 'result malformed' };
  }
  // A lease that does not parse, is not for this gateway and device, is expired or names an
  // unknown backend kid or does not verify under pk_S makes the verdict a
  // failure: the backend answer is not trustworthy.
  const bytes = base64UrlDecode(r.lease, MAX_MESSAGE_BYTES);
  if (bytes === undefined) return { kind: 'fault', fault: 'lease', why: 'lease is not base64url' };
  const digest = ctx.verified === undefined ? undefined : createHash('sha256').update(bytes).digest('base64');
  const seen = digest !== undefined && ctx.verified?.has(digest) === true;
  const check = checkLease(bytes, { gw: ctx.gw, backendKeys: ctx.backendKeys, nowS: ctx.nowS, dev, verifySignature: !seen });
  if (!check.ok) return { kind: 'fault', fault: 'lease', why: check.why };
  if (!seen && digest !== undefined) ctx.verified?.add(digest);
  if (r.grant === undefined) return { kind: 'welcome', lease: check.lease.payload, leaseBytes: bytes };
  const grant = readGrant(r.grant, dev, ctx.gw);
  if (typeof grant === 'string') return { kind: 'fault', fault: 'grant', why: grant };
  return { kind: 'welcome', lease: check.lease.payload, leaseBytes: bytes, grant };
}

/**
 * protocol-v2: `{"id", "ok": true, "dev", "lease", "grant"}`. The grant is relayed unchanged and
 * the peripheral verifies it under pk_S; here it must parse as a grant for this device and
 * gateway (a grant for anything else would only make the peripheral refuse the welcome). The
 * pipeline checks its `hh` against the hello it forwarded. Answers the bytes or why not.
 */
function readGrant(v: unknown, dev: string, gw: string): Uint8Array | string {
  if (typeof v !== 'string') return 'grant is not a string';
  const bytes = base64UrlDecode(v, MAX_MESSAGE_BYTES);
  if (bytes === undefined) return 'grant is not base64url';
  try {
    const g = parseGrant(bytes).payload;
    if (g.dev !== dev || g.gw !== gw) return 'grant names another device or gateway';
  } catch (e) {
    if (e instanceof ProtocolError) return `grant does not parse: ${e.code}`;
    throw e;
  }
  return bytes;
}
