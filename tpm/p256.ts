/**
 * ECDSA P-256 over a precomputed digest (FIPS 186-5 §6.4), which node:crypto does not offer
 * (its sign/verify always hash the input). Used to check every TPM signature before releasing
 * it, and by the development-only software key store. Not constant-time: never use it with a
 * production key (the TPM key never leaves the TPM, so only the public key reaches here).
 */
import { createHmac, type KeyObject } from 'node:crypto';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n;
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n;

/** Jacobian point (X/Z², Y/Z³); Z = 0 is infinity. */
type J = [bigint, bigint, bigint];
const INF: J = [0n, 1n, 0n];

const mod = (a: bigint, m: bigint): bigint => {
  const r = a % m;
  return r < 0n ? r + m : r;
};

function inv(a: bigint, m: bigint): bigint {
  let [lo, hi] = [mod(a, m), m];
  let [x0, x1] = [1n, 0n];
  while (lo > 1n) {
    const q = hi / lo;
    [lo, hi] = [hi - q * lo, lo];
    [x0, x1] = [x1 - q * x0, x0];
  }
  return mod(x0, m);
}

function dbl([x, y, z]: J): J {
  if (z === 0n || y === 0n) return INF;
  const zz = (z * z) % P;
  const m = (3n * (x - zz) * (x + zz)) % P; // a = -3
  const yy = (y * y) % P;
  const s = (4n * x * yy) % P;
  const x3 = mod(m * m - 2n * s, P);
  const y3 = mod(m * (s - x3) - 8n * yy * yy, P);
  const z3 = (2n * y * z) % P;
  return [x3, y3, z3];
}

function add(a: J, b: J): J {
  if (a[2] === 0n) return b;
  if (b[2] === 0n) return a;
  const z1z1 = (a[2] * a[2]) % P;
  const z2z2 = (b[2] * b[2]) % P;
  const u1 = (a[0] * z2z2) % P;
  const u2 = (b[0] * z1z1) % P;
  const s1 = (a[1] * b[2] * z2z2) % P;
  const s2 = (b[1] * a[2] * z1z1) % P;
  if (u1 === u2) return s1 === s2 ? dbl(a) : INF;
  const h = mod(u2 - u1, P);
  const r = mod(s2 - s1, P);
  const hh = (h * h) % P;
  const hhh = (h * hh) % P;
  const v = (u1 * hh) % P;
  const x3 = mod(r * r - hhh - 2n * v, P);
  const y3 = mod(r * (v - x3) - s1 * hhh, P);
  const z3 = (a[2] * b[2] * h) % P;
  return [x3, y3, z3];
}

/** u1·G + u2·Q by simultaneous double-and-add (Shamir's trick). */
function mul2(u1: bigint, g: J, u2: bigint, q: J): J {
  const gq = add(g, q);
  let acc = INF;
  const bits = Math.max(u1.toString(2).length, u2.toString(2).length);
  for (let i = bits - 1; i >= 0; i--) {
    acc = dbl(acc);
    const b1 = (u1 >> BigInt(i)) & 1n;
    const b2 = (u2 >> BigInt(i)) & 1n;
    if (b1 && b2) acc = add(acc, gq);
    else if (b1) acc = add(acc, g);
    else if (b2) acc = add(acc, q);
  }
  return acc;
}

function affineX(p: J): bigint | undefined {
  if (p[2] === 0n) return undefined;
  const zi = inv(p[2], P);
  return (p[0] * zi * zi) % P;
}

const toBig = (b: Uint8Array): bigint => (b.length === 0 ? 0n : BigInt(`0x${Buffer.from(b).toString('hex')}`));
const toBytes32 = (v: bigint): Uint8Array => Uint8Array.from(Buffer.from(v.toString(16).padStart(64, '0'), 'hex'));

function publicPoint(key: KeyObject): [bigint, bigint] {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new TypeError('not a P-256 public key');
  return [toBig(Buffer.from(jwk.x, 'base64url')), toBig(Buffer.from(jwk.y, 'base64url'))];
}

function onCurve(x: bigint, y: bigint): boolean {
  return x < P && y < P && mod(y * y - (x * x * x - 3n * x + B), P) === 0n;
}

/** Verify raw r||s over a 32-byte digest under a P-256 public key. */
export function p256VerifyDigest(key: KeyObject, digest32: Uint8Array, raw64: Uint8Array): boolean {
  if (raw64.length !== 64 || digest32.length !== 32) return false;
  const r = toBig(raw64.subarray(0, 32));
  const s = toBig(raw64.subarray(32));
  if (r <= 0n || r >= N || s <= 0n || s >= N) return false;
  const [qx, qy] = publicPoint(key);
  if (!onCurve(qx, qy)) return false;
  const e = toBig(digest32) % N;
  const w = inv(s, N);
  const x = affineX(mul2((e * w) % N, [GX, GY, 1n], (r * w) % N, [qx, qy, 1n]));
  return x !== undefined && x % N === r;
}

/** Deterministic nonce (RFC 6979 §3.2, HMAC-SHA256; qlen = hlen = 256 so no bits2int shifting). */
function rfc6979k(d: bigint, digest32: Uint8Array, attempt: number): bigint {
  const x = toBytes32(d);
  const h1 = toBytes32(toBig(digest32) % N);
  let v = Buffer.alloc(32, 1);
  let k = Buffer.alloc(32, 0);
  k = createHmac('sha256', k).update(v).update(Buffer.from([0])).update(x).update(h1).digest();
  v = createHmac('sha256', k).update(v).digest();
  k = createHmac('sha256', k).update(v).update(Buffer.from([1])).update(x).update(h1).digest();
  v = createHmac('sha256', k).update(v).digest();
  for (let i = 0; ; i++) {
    v = createHmac('sha256', k).update(v).digest();
    const t = toBig(v);
    if (t >= 1n && t < N && i >= attempt) return t;
    k = createHmac('sha256', k).update(v).update(Buffer.from([0])).digest();
    v = createHmac('sha256', k).update(v).digest();
  }
}

/** Sign a 32-byte digest with private scalar `d`; returns raw r||s with low-S not enforced (ECDSA has no malleability rule). */
export function p256SignDigest(privateKey: KeyObject, digest32: Uint8Array): Uint8Array {
  const jwk = privateKey.export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) throw new TypeError('not a P-256 private key');
  const d = toBig(Buffer.from(jwk.d, 'base64url'));
  const e = toBig(digest32) % N;
  for (let attempt = 0; ; attempt++) {
    const k = rfc6979k(d, digest32, attempt);
    const rx = affineX(mul2(k, [GX, GY, 1n], 0n, INF));
    const r = rx === undefined ? 0n : rx % N;
    if (r === 0n) continue;
    const s = (inv(k, N) * (e + r * d)) % N;
    if (s === 0n) continue;
    const out = new Uint8Array(64);
    out.set(toBytes32(r), 0);
    out.set(toBytes32(s), 32);
    return out;
  }
}
