/**
 * The signature primitives protocol-v1 uses, on node:crypto (OpenSSL): Ed25519 (RFC 8032) with
 * the strictness checks OpenSSL leaves out, ES256 (ECDSA P-256, SHA-256) with raw r||s
 * signatures as COSE carries them (RFC 9053 §2.1), and SHA-256.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  randomBytes,
  randomFillSync,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import { ProtocolError } from './errors.js';
import { COSE_ALG_EDDSA, COSE_ALG_ES256, type Signer } from './types.js';

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

// Constants as 32-byte little-endian strings, compared bytewise (no bigint on the hot path).
// Group order L = 2^252 + 27742317777372353535851937790883648493 (RFC 8032 §5.1).
const ED25519_L_LE = Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex');
// Field prime p = 2^255 - 19.
const ED25519_P_LE = Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex');

/** Compare two 32-byte little-endian numbers; `a` may have its top bit masked off. */
function compareLe32(a: Uint8Array, b: Uint8Array, maskTopBit: boolean): number {
  for (let i = 31; i >= 0; i--) {
    const x = i === 31 && maskTopBit ? (a[i] as number) & 0x7f : (a[i] as number);
    const d = x - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * y-coordinates (little-endian, sign bit cleared) of the 8 points of small order on
 * edwards25519: y=0 (the two points of order 4), y=1 (identity), y=p-1 (order 2) and the two
 * y values of the four points of order 8. Comparing with the sign bit cleared also catches the
 * "negative zero" encodings; non-canonical encodings (y >= p) are refused separately. Same
 * list as libsodium's `has_small_order`.
 */
const SMALL_ORDER_Y: readonly Buffer[] = [
  Buffer.alloc(32),
  Buffer.from('0100000000000000000000000000000000000000000000000000000000000000', 'hex'),
  Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'),
  Buffer.from('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', 'hex'),
  Buffer.from('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', 'hex'),
];

/** Why a raw Ed25519 public key is unacceptable, or `undefined` when it is acceptable. */
export function ed25519PublicKeyProblem(raw: Uint8Array): string | undefined {
  if (!(raw instanceof Uint8Array) || raw.length !== 32) return 'an Ed25519 public key is 32 bytes';
  if (compareLe32(raw, ED25519_P_LE, true) >= 0) return 'non-canonical encoding (y >= p)';
  for (const y of SMALL_ORDER_Y) if (compareLe32(raw, y, true) === 0) return 'point of small order';
  return undefined;
}

/** Throws a ProtocolError (`GH_CRYPTO_BAD_PUBLIC_KEY`) unless `raw` is an acceptable Ed25519 key. */
export function assertEd25519PublicKey(raw: Uint8Array): void {
  const problem = ed25519PublicKeyProblem(raw);
  if (problem !== undefined) {
    throw new ProtocolError('GH_CRYPTO_BAD_PUBLIC_KEY', 'malformed', `unacceptable Ed25519 public key: ${problem}`);
  }
}

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A node:crypto public KeyObject for a raw 32-byte Ed25519 public key. */
export function ed25519PublicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (!(raw instanceof Uint8Array) || raw.length !== 32) {
    throw new ProtocolError('GH_CRYPTO_BAD_PUBLIC_KEY', 'malformed', 'an Ed25519 public key is 32 bytes');
  }
  // JWK, not DER: on Node 20 (OpenSSL 3) a DER import costs several times a JWK one.
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url') }, format: 'jwk' });
}

// Importing a key costs more than verifying with it; keep recently used public keys (public
// data, bounded, oldest evicted first).
const KEY_CACHE_MAX = 1024;
const keyCache = new Map<string, KeyObject>();

function cachedEd25519Key(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex');
  let key = keyCache.get(id);
  if (key === undefined) {
    key = ed25519PublicKeyFromRaw(raw);
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
    keyCache.set(id, key);
  }
  return key;
}

/** The raw 32-byte public key of an Ed25519 KeyObject (public or private). */
export function ed25519RawFromKeyObject(key: KeyObject): Uint8Array {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new ProtocolError('GH_CRYPTO_KEY_TYPE', 'internal', `expected an Ed25519 key, got ${key.asymmetricKeyType ?? key.type}`);
  }
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(der.length - 32));
}

/**
 * Strict Ed25519 verification (RFC 8032 §5.1.7) of a 64-byte signature under a raw 32-byte
 * public key. Beyond OpenSSL's checks it refuses, before any curve arithmetic, a key of small
 * order or in non-canonical encoding, and a signature whose S is not below the group order L
 * (signature malleability). Returns false on any refusal; never throws for bad input.
 */
export function ed25519Verify(rawPk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (ed25519PublicKeyProblem(rawPk) !== undefined) return false;
  if (!(sig instanceof Uint8Array) || sig.length !== 64) return false;
  // RFC 8032 §5.1.7: reject S >= L.
  if (compareLe32(sig.subarray(32), ED25519_L_LE, false) >= 0) return false;
  try {
    return nodeVerify(null, msg, cachedEd25519Key(rawPk), sig);
  } catch {
    return false;
  }
}

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/** A P-256 public KeyObject from DER SPKI bytes or a 65-byte uncompressed point (0x04 || X || Y). */
export function p256PublicKey(key: Uint8Array): KeyObject {
  if (key.length === 65 && key[0] === 0x04) {
    const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
    return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64(key.subarray(1, 33)), y: b64(key.subarray(33)) }, format: 'jwk' });
  }
  return createPublicKey({ key: Buffer.from(key), format: 'der', type: 'spki' });
}

/**
 * ES256 verification (RFC 9053 §2.1): ECDSA on P-256 with SHA-256, signature as raw r||s
 * (64 bytes). The key is a P-256 public KeyObject, its DER SubjectPublicKeyInfo, or the
 * 65-byte uncompressed point. Returns false for a wrong key type, a wrong signature length or
 * a bad signature; never throws.
 */
export function es256Verify(key: Uint8Array | KeyObject, msg: Uint8Array, rawSig: Uint8Array): boolean {
  if (!(rawSig instanceof Uint8Array) || rawSig.length !== 64) return false;
  try {
    const k = key instanceof KeyObject ? key : p256PublicKey(key);
    if (k.type !== 'public' || !isP256(k)) return false;
    return nodeVerify('sha256', msg, { key: k, dsaEncoding: 'ieee-p1363' }, rawSig);
  } catch {
    return false;
  }
}

/** A software Ed25519 signer (alg -8) on node:crypto: session keys, the reference backend, tests. */
export class Ed25519Signer implements Signer {
  readonly alg = COSE_ALG_EDDSA;
  readonly publicKeyRaw: Uint8Array;

  private constructor(
    readonly kid: string,
    readonly privateKey: KeyObject,
  ) {
    this.publicKeyRaw = ed25519RawFromKeyObject(privateKey);
  }

  /** A fresh random key pair. */
  static generate(kid: string): Ed25519Signer {
    return new Ed25519Signer(kid, generateKeyPairSync('ed25519').privateKey);
  }

  /** The key pair derived from a 32-byte RFC 8032 seed (deterministic: test vectors, key files). */
  static fromSeed(seed: Uint8Array, kid: string): Ed25519Signer {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) {
      throw new ProtocolError('GH_CRYPTO_BAD_SEED', 'internal', 'an Ed25519 seed is 32 bytes');
    }
    const key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    return new Ed25519Signer(kid, key);
  }

  /** Wraps an existing Ed25519 private KeyObject. */
  static fromKeyObject(privateKey: KeyObject, kid: string): Ed25519Signer {
    if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
      throw new ProtocolError('GH_CRYPTO_KEY_TYPE', 'internal', 'expected an Ed25519 private key');
    }
    return new Ed25519Signer(kid, privateKey);
  }

  sign(toBeSigned: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(nodeSign(null, toBeSigned, this.privateKey)));
  }
}

/**
 * A software ES256 signer (alg -7). The gateway's real ES256 key lives in the TPM; this one is
 * for tools and tests that need an ES256 COSE object without a TPM.
 */
export class Es256Signer implements Signer {
  readonly alg = COSE_ALG_ES256;
  readonly publicKey: KeyObject;

  constructor(
    readonly kid: string,
    readonly privateKey: KeyObject,
  ) {
    if (privateKey.type !== 'private' || !isP256(privateKey)) {
      throw new ProtocolError('GH_CRYPTO_KEY_TYPE', 'internal', 'expected a P-256 private key');
    }
    this.publicKey = createPublicKey(privateKey);
  }

  static generate(kid: string): Es256Signer {
    return new Es256Signer(kid, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
  }

  sign(toBeSigned: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(nodeSign('sha256', toBeSigned, { key: this.privateKey, dsaEncoding: 'ieee-p1363' })));
  }
}

// Every challenge and every backend request needs a fresh nonce. One `crypto.randomBytes(16)`
// call costs ~6 µs here (a trip into OpenSSL's DRBG per call); filling 4 KiB at once and handing
// out slices costs ~0.2 µs per nonce. Each byte is handed out once, then overwritten by the next
// refill; the bytes come from the same CSPRNG.
const RANDOM_POOL_BYTES = 4096;
const randomPool = new Uint8Array(RANDOM_POOL_BYTES);
let randomPoolAt = RANDOM_POOL_BYTES;

/** `n` cryptographically random bytes (nonces), in a fresh `Uint8Array` of its own. */
export function randomNonce(n = 16): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`randomNonce: bad length ${n}`);
  if (n > RANDOM_POOL_BYTES / 4) return new Uint8Array(randomBytes(n));
  if (randomPoolAt + n > RANDOM_POOL_BYTES) {
    randomFillSync(randomPool);
    randomPoolAt = 0;
  }
  const out = randomPool.slice(randomPoolAt, randomPoolAt + n);
  randomPoolAt += n;
  return out;
}

/** The byte strings one after another, in one fresh plain `Uint8Array` (one allocation). */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Constant-time equality of two byte strings (length leaks, contents do not). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
