/**
 * Deterministic protocol-v1 fixtures for tests: fixed-seed keys for a backend, a gateway session
 * and a device, and builders for every message. Owned by the protocol helper.
 */
import {
  DEFAULT_POLICY,
  Ed25519Signer,
  encodeChallenge,
  encodeChallengeRequest,
  helloHash,
  signGatewayCredential,
  signHello,
  signLease,
  signReject,
  signWelcome,
  type GatewayCredential,
  type Lease,
  type ReasonCode,
} from '../protocol/index.js';

/** A 32-byte seed filled with `n` (never use outside tests). */
export function testSeed(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

/** Bytes 0..n-1 offset by `start`: recognisable nonces in hex dumps. */
export function countingBytes(n: number, start = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
}

export const FIXTURE_IAT = 1_800_000_000;
export const FIXTURE_EXP = FIXTURE_IAT + 86_400;

export interface ProtocolFixture {
  dev: string;
  gw: string;
  backend: Ed25519Signer;
  session: Ed25519Signer;
  device: Ed25519Signer;
  tpk: Uint8Array;
  gn: Uint8Array;
  pn: Uint8Array;
  backendKeys: Map<string, Uint8Array>;
  challengeRequest: Uint8Array;
  challenge: Uint8Array;
  hello: Uint8Array;
  credential: Uint8Array;
  credentialPayload: GatewayCredential;
  welcome: Uint8Array;
  reject: Uint8Array;
  lease: Uint8Array;
  leasePayload: Lease;
}

/** A complete, valid exchange from fixed seeds (Ed25519 signatures are deterministic). */
export async function makeFixture(opts: { dev?: string; gw?: string; reason?: ReasonCode } = {}): Promise<ProtocolFixture> {
  const dev = opts.dev ?? 'sensor-0001';
  const gw = opts.gw ?? 'gw-lab-1';
  const backend = Ed25519Signer.fromSeed(testSeed(0xb0), 'backend-1');
  const session = Ed25519Signer.fromSeed(testSeed(0x5e), gw);
  const device = Ed25519Signer.fromSeed(testSeed(0xde), dev);
  const tpk = countingBytes(32, 0x70);
  const gn = countingBytes(16, 0x10);
  const pn = countingBytes(16, 0x40);
  const credentialPayload: GatewayCredential = { type: 'gw-cred', version: 1, gw, spk: session.publicKeyRaw, tpk, iat: FIXTURE_IAT, exp: FIXTURE_EXP };
  const credential = await signGatewayCredential(credentialPayload, backend);
  const hello = await signHello({ type: 'hello', version: 1, dev, pn, gn }, device);
  const welcome = await signWelcome({ type: 'welcome', version: 1, dev, gw, hh: helloHash(hello), cred: credential }, session);
  const reject = await signReject({ type: 'reject', version: 1, dev, hh: helloHash(hello), reason: opts.reason ?? 'busy', retry: 30 }, session);
  const leasePayload: Lease = {
    type: 'lease',
    version: 1,
    dev,
    gw,
    dpk: device.publicKeyRaw,
    policy: { pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] },
    iat: FIXTURE_IAT,
    exp: FIXTURE_EXP,
  };
  const lease = await signLease(leasePayload, backend);
  return {
    dev,
    gw,
    backend,
    session,
    device,
    tpk,
    gn,
    pn,
    backendKeys: new Map([[backend.kid, backend.publicKeyRaw]]),
    challengeRequest: encodeChallengeRequest({ type: 'challenge-request', version: 1, dev }),
    challenge: encodeChallenge({ type: 'challenge', version: 1, dev, gn, gw }),
    hello,
    credential,
    credentialPayload,
    welcome,
    reject,
    lease,
    leasePayload,
  };
}
