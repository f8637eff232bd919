/**
 * The gateway's checks on a hello (protocol-v1 "Gateway checks on a hello", plus protocol-v2's),
 * before anything goes to the backend. Synchronous: nothing here waits.
 */
import type { Logger } from 'winston';
import {
  COSE_ALG_EDDSA,
  MAX_MESSAGE_BYTES,
  checkHelloV2AtGateway,
  helloHash,
  isValidId,
  parseHello,
  parseHelloV2,
  ProtocolError,
} from '../../protocol/index.js';
import type { Hello, HelloV2, ReasonCode, Signed } from '../../protocol/index.js';
import type { ChallengeStore } from './challenge-store.js';
import type { RateLimiter } from './rate-limit.js';
import type { IngressConnection, ProtocolVersion } from './types.js';

/** The reject to send, before it is encoded. */
export interface RejectPlan {
  /** The version of the topic or characteristic the reject answers on (default 1). */
  version?: ProtocolVersion;
  dev: string;
  reason: ReasonCode;
  hh?: Uint8Array;
  retry?: number;
  /**
   * Sent unsigned: the message was refused before anything in it was checked (malformed, or over
   * the connection's limit). A signature costs a session-key operation that a peer must not get
   * for garbage; the peripheral could not rely on such a reject anyway.
   */
  unsigned?: boolean;
}

/** A hello that passed the checks (with Z for v2), or the reject it earns. */
export type CheckedHello = { signed: Signed<Hello> | Signed<HelloV2>; z: Uint8Array | undefined } | { reject: RejectPlan };

/** What the checks read and spend: the outstanding challenges and the global bucket. */
export interface HelloCheckDeps {
  gw: string;
  challenges: ChallengeStore;
  limits: RateLimiter;
  log: Logger;
}

/**
 * protocol-v1 "Gateway checks on a hello", in the spec's order: size, strict CBOR and COSE
 * structure, type and version, dev syntax and binding, gn outstanding for this connection,
 * rate limits. protocol-v2 adds, once the gn is consumed: hello.gw is this gateway, hello.ge the
 * ge issued with that gn, pe 32 bytes and Z not all zero (else `malformed`, and nothing goes to
 * the backend).
 */
export function checkHello(
  d: HelloCheckDeps,
  conn: IngressConnection,
  bytes: Uint8Array,
  expectedDev: string | undefined,
  version: ProtocolVersion,
): CheckedHello {
  const fallbackDev = expectedDev ?? conn.id;
  if (bytes.length > MAX_MESSAGE_BYTES) return { reject: { dev: fallbackDev, reason: 'malformed', unsigned: true } };
  let signed: Signed<Hello> | Signed<HelloV2>;
  try {
    signed = version === 2 ? parseHelloV2(bytes) : parseHello(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) return { reject: { dev: fallbackDev, reason: err.reason, unsigned: err.reason === 'malformed' } };
    throw err;
  }
  const hh = helloHash(bytes);
  const dev = signed.payload.dev;
  // protocol-v1 "Encoding": peripherals sign with alg -8 and kid = dev.
  if (!isValidId(dev) || signed.alg !== COSE_ALG_EDDSA || signed.kid !== dev) {
    return { reject: { dev: fallbackDev, reason: 'malformed', hh, unsigned: true } };
  }
  // protocol-v1: dev "matches the topic or BLE connection".
  if (expectedDev !== undefined && dev !== expectedDev) return { reject: { dev: expectedDev, reason: 'malformed', hh, unsigned: true } };
  // protocol-v1: "gn outstanding for this connection (consumed on first use, whatever the outcome)".
  const consumed = d.challenges.consume(conn.id, signed.payload.gn, dev, version);
  if (!consumed.ok) return { reject: { dev, reason: 'stale-challenge', hh } };
  let z: Uint8Array | undefined;
  if (version === 2) {
    const ge = consumed.ge;
    if (ge === undefined) return { reject: { dev, reason: 'stale-challenge', hh } };
    try {
      z = checkHelloV2AtGateway(signed.payload as HelloV2, { gw: d.gw, issuedGe: ge.publicKey, gePrivateKey: ge.privateKey }).z;
    } catch (err) {
      if (err instanceof ProtocolError) {
        d.log.info('v2 hello refused at the gateway', { conn: conn.id, dev, code: err.code });
        return { reject: { dev, reason: 'malformed', hh } };
      }
      throw err;
    }
  }
  // The per-connection token was taken before parsing; the device's is taken once the
  // signature has verified (Pipeline's decision).
  const wait = d.limits.takeGlobal();
  if (wait > 0) {
    z?.fill(0);
    return { reject: { dev, reason: 'rate-limited', hh, retry: wait } };
  }
  return { signed, z };
}
