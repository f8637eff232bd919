/**
 * protocol-v2 "Session keys": ephemeral X25519 (RFC 7748) on node:crypto, HKDF-SHA-256
 * (RFC 5869) with its PRK exposed, and the key schedule
 *
 *   Z   = X25519(own ephemeral private key, peer's ephemeral public key)   (all zero: abort)
 *   PRK = HKDF-Extract(salt = hh, IKM = Z)
 *   OKM(label, L) = HKDF-Expand(PRK, info = CBOR(["gatehouse v2", label, dev, gw]), L)
 *
 * Every intermediate is returned so the vectors can show it; callers keep only the keys.
 */
import { createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, KeyObject } from 'node:crypto';
import { encodeCbor } from '../cbor.js';
import { ProtocolError } from '../errors.js';
import { isValidId } from '../ids.js';

export const X25519_KEY_BYTES = 32;
export const SESSION_KEY_BYTES = 16;
export const SESSION_IV_BYTES = 13;
export const SID_BYTES = 8;
export const KDF_CONTEXT = 'gatehouse v2';
export const KDF_LABELS = ['p2g key', 'p2g iv', 'g2p key', 'g2p iv', 'sid'] as const;
export type KdfLabel = (typeof KDF_LABELS)[number];

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** An ephemeral X25519 key pair. The private key stays a KeyObject (never exported). */
export interface X25519KeyPair {
  privateKey: KeyObject;
  /** Raw 32-byte public key, as `ge` / `pe` carry it. */
  publicKey: Uint8Array;
}

// Raw keys go in and out of node:crypto as JWK, not DER: on Node 20 (OpenSSL 3) a DER export
// or import of an X25519 key costs about twice the scalar multiplication itself (its decoder
// framework), a JWK one a fraction of it (docs/performance-history.md, "Protocol v2 auth cost").
function x25519Raw(pub: KeyObject): Uint8Array {
  return rawOfJwk(pub.export({ format: 'jwk' }));
}

function rawOfJwk(jwk: { x?: string }): Uint8Array {
  // A copy: Buffer.from(string) may hand out a slice of Node's shared pool.
  const raw = new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url'));
  if (raw.length !== X25519_KEY_BYTES) throw new ProtocolError('GH_X25519_BAD_KEY', 'internal', 'node:crypto gave an X25519 public key that is not 32 bytes');
  return raw;
}

/** A fresh ephemeral key pair (`ge` for a challenge, `pe` for a hello). */
export function generateX25519KeyPair(): X25519KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: x25519Raw(publicKey) };
}

/**
 * The key pair of a raw 32-byte private key (RFC 7748 §5 `decodeScalar25519` clamps it). For
 * test vectors with fixed ephemeral keys only: real ephemeral keys come from
 * {@link generateX25519KeyPair}.
 */
export function x25519KeyPairFromPrivate(raw: Uint8Array): X25519KeyPair {
  if (!(raw instanceof Uint8Array) || raw.length !== X25519_KEY_BYTES) {
    throw new ProtocolError('GH_X25519_BAD_KEY', 'internal', 'an X25519 private key is 32 bytes');
  }
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: x25519Raw(createPublicKey(privateKey)) };
}

/**
 * Z = X25519(private, peer public). Throws `GH_X25519_BAD_KEY` (malformed) for a peer key that
 * is not 32 bytes and `GH_X25519_ALL_ZERO` (malformed) when Z is all zero: RFC 7748 §6.1, the
 * peer sent a point of small order.
 */
export function x25519SharedSecret(privateKey: KeyObject, peerPublic: Uint8Array): Uint8Array {
  if (!(privateKey instanceof KeyObject) || privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'x25519') {
    throw new ProtocolError('GH_X25519_BAD_KEY', 'internal', 'expected an X25519 private key');
  }
  if (!(peerPublic instanceof Uint8Array) || peerPublic.length !== X25519_KEY_BYTES) {
    throw new ProtocolError('GH_X25519_BAD_KEY', 'malformed', 'an X25519 public key is 32 bytes');
  }
  let z: Uint8Array;
  try {
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peerPublic.buffer, peerPublic.byteOffset, peerPublic.byteLength).toString('base64url') }, format: 'jwk' });
    z = new Uint8Array(diffieHellman({ privateKey, publicKey: pub }));
  } catch (cause) {
    // OpenSSL refuses to derive from a small-order point itself; the outcome is the same.
    throw new ProtocolError('GH_X25519_ALL_ZERO', 'malformed', 'X25519 with this peer key gives no shared secret (small-order point, RFC 7748 §6.1)', { cause });
  }
  let acc = 0;
  for (const b of z) acc |= b;
  if (acc === 0) throw new ProtocolError('GH_X25519_ALL_ZERO', 'malformed', 'X25519 shared secret is all zero (RFC 7748 §6.1)');
  return z;
}

/** RFC 5869 §2.2: PRK = HMAC-SHA-256(salt, IKM). */
export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', salt).update(ikm).digest());
}

/** RFC 5869 §2.3: T(i) = HMAC(PRK, T(i-1) | info | i), OKM = first L bytes. L ≤ 255·32. */
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > 255 * 32) throw new RangeError(`hkdfExpand: bad length ${length}`);
  const out = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, at = 0; at < length; i++) {
    t = new Uint8Array(createHmac('sha256', prk).update(t).update(info).update(Uint8Array.of(i)).digest());
    out.set(t.subarray(0, Math.min(t.length, length - at)), at);
    at += t.length;
  }
  return out;
}

/** info = CBOR(["gatehouse v2", label, dev, gw]), deterministic (an array of four text strings). */
export function kdfInfo(label: string, dev: string, gw: string): Uint8Array {
  return encodeCbor([KDF_CONTEXT, label, dev, gw]);
}

/** Keys of one session direction: what a frame sender or receiver needs. */
export interface DirectionKeys {
  key: Uint8Array;
  iv: Uint8Array;
  sid: Uint8Array;
}

/** The outcome of the key schedule, with every intermediate (Z and PRK are secret). */
export interface SessionKeys {
  z: Uint8Array;
  prk: Uint8Array;
  info: Record<KdfLabel, Uint8Array>;
  kUp: Uint8Array;
  ivUp: Uint8Array;
  kDn: Uint8Array;
  ivDn: Uint8Array;
  sid: Uint8Array;
}

/** The key schedule from Z (the gateway computes Z when it checks the hello). */
export function deriveSessionKeysFromSecret(z: Uint8Array, hh: Uint8Array, dev: string, gw: string): SessionKeys {
  if (!(z instanceof Uint8Array) || z.length !== X25519_KEY_BYTES) throw new ProtocolError('GH_KDF_INPUT', 'internal', 'Z is 32 bytes');
  if (!(hh instanceof Uint8Array) || hh.length !== 32) throw new ProtocolError('GH_KDF_INPUT', 'internal', 'hh is 32 bytes');
  if (!isValidId(dev) || !isValidId(gw)) throw new ProtocolError('GH_KDF_INPUT', 'internal', 'dev and gw must be ids');
  const prk = hkdfExtract(hh, z);
  const info = Object.fromEntries(KDF_LABELS.map((l) => [l, kdfInfo(l, dev, gw)])) as Record<KdfLabel, Uint8Array>;
  return {
    z,
    prk,
    info,
    kUp: hkdfExpand(prk, info['p2g key'], SESSION_KEY_BYTES),
    ivUp: hkdfExpand(prk, info['p2g iv'], SESSION_IV_BYTES),
    kDn: hkdfExpand(prk, info['g2p key'], SESSION_KEY_BYTES),
    ivDn: hkdfExpand(prk, info['g2p iv'], SESSION_IV_BYTES),
    sid: hkdfExpand(prk, info.sid, SID_BYTES),
  };
}

/** The whole key schedule: Z = X25519(own private, peer public), then {@link deriveSessionKeysFromSecret}. */
export function deriveSessionKeys(opts: { privateKey: KeyObject; peerPublic: Uint8Array; hh: Uint8Array; dev: string; gw: string }): SessionKeys {
  return deriveSessionKeysFromSecret(x25519SharedSecret(opts.privateKey, opts.peerPublic), opts.hh, opts.dev, opts.gw);
}

/** The keys of one direction. */
export function directionKeys(keys: SessionKeys, direction: 'p2g' | 'g2p'): DirectionKeys {
  return direction === 'p2g' ? { key: keys.kUp, iv: keys.ivUp, sid: keys.sid } : { key: keys.kDn, iv: keys.ivDn, sid: keys.sid };
}

/** Overwrite Z and PRK once the keys are derived (best effort: JS cannot promise erasure). */
export function wipeIntermediates(keys: SessionKeys): void {
  keys.z.fill(0);
  keys.prk.fill(0);
}
