import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import * as ed from '@noble/ed25519';
import {
  Ed25519Signer,
  Es256Signer,
  assertEd25519PublicKey,
  ed25519PublicKeyFromRaw,
  ed25519PublicKeyProblem,
  ed25519RawFromKeyObject,
  ed25519Verify,
  es256Verify,
  ProtocolError,
  randomNonce,
  sha256,
} from '../../protocol/index.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// RFC 8032 §7.1 TEST 1.
const SEED = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
const PK = hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
const SIG = hex(
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
);
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const P = (1n << 255n) - 19n;

function le(n: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}
function fromLe(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i] as number);
  return n;
}

/** Every 32-byte encoding that decodes to a point of small order, found independently via noble. */
function smallOrderEncodings(): Uint8Array[] {
  const ys = [0n, 1n, P - 1n, fromLe(hex('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05')), fromLe(hex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'))];
  const out: Uint8Array[] = [];
  for (const y of [...ys, ...ys.filter((v) => v < 19n).map((v) => v + P)]) {
    for (const sign of [0n, 1n]) out.push(le(y | (sign << 255n), 32));
  }
  return out;
}

describe('protocol/crypto', () => {
  it('sha256 matches the FIPS 180-2 "abc" vector', () => {
    assert.equal(toHex(sha256(new TextEncoder().encode('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('derives the RFC 8032 TEST 1 key from its seed and reproduces the signature', async () => {
    const s = Ed25519Signer.fromSeed(SEED, 'dev-1');
    assert.equal(toHex(s.publicKeyRaw), toHex(PK));
    assert.equal(toHex(await s.sign(new Uint8Array(0))), toHex(SIG));
    assert.equal(ed25519Verify(PK, new Uint8Array(0), SIG), true);
    assert.equal(toHex(ed25519RawFromKeyObject(ed25519PublicKeyFromRaw(PK))), toHex(PK));
    assert.equal(toHex(ed25519RawFromKeyObject(s.privateKey)), toHex(PK));
  });

  it('refuses a signature whose S >= L (malleated signature)', () => {
    const s = fromLe(SIG.subarray(32));
    const malleated = new Uint8Array(SIG);
    malleated.set(le(s + L, 32), 32);
    assert.equal(ed25519Verify(PK, new Uint8Array(0), malleated), false);
    const maxS = new Uint8Array(SIG);
    maxS.fill(0xff, 32);
    assert.equal(ed25519Verify(PK, new Uint8Array(0), maxS), false);
  });

  it('refuses every small-order public key, including the forgery OpenSSL accepts', () => {
    const encodings = smallOrderEncodings();
    for (const enc of encodings) {
      let decodes = true;
      try {
        const pt = ed.Point.fromBytes(enc, true);
        assert.equal(pt.isSmallOrder(), true, toHex(enc));
      } catch {
        decodes = false;
      }
      assert.notEqual(ed25519PublicKeyProblem(enc), undefined, `${toHex(enc)} (decodes: ${decodes})`);
      assert.throws(() => assertEd25519PublicKey(enc), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_CRYPTO_BAD_PUBLIC_KEY');
    }
    // Identity key with R = identity, S = 0 verifies for ANY message under plain RFC 8032.
    const identity = hex('01'.padEnd(64, '0'));
    const forged = hex('01'.padEnd(128, '0'));
    const msg = new TextEncoder().encode('transfer everything');
    const key = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), identity]), format: 'der', type: 'spki' });
    assert.equal(nodeVerify(null, msg, key, forged), true, 'OpenSSL itself accepts the forgery: our check is what stops it');
    assert.equal(ed25519Verify(identity, msg, forged), false);
  });

  it('refuses non-canonical key encodings (y >= p) and wrong lengths', () => {
    assert.match(ed25519PublicKeyProblem(le(P + 2n, 32)) ?? '', /non-canonical/);
    assert.match(ed25519PublicKeyProblem(le((1n << 255n) - 1n, 32)) ?? '', /non-canonical/);
    assert.equal(ed25519Verify(PK.subarray(0, 31), new Uint8Array(0), SIG), false);
    assert.equal(ed25519Verify(PK, new Uint8Array(0), SIG.subarray(0, 63)), false);
    assert.equal(ed25519PublicKeyProblem(PK), undefined);
  });

  it('rejects a signature over a different message', () => {
    assert.equal(ed25519Verify(PK, new Uint8Array(1), SIG), false);
  });

  it('ES256 signs raw r||s and verifies with a KeyObject or SPKI DER', async () => {
    const s = Es256Signer.generate('tpm:gw-1');
    const msg = new TextEncoder().encode('hello');
    const sig = await s.sign(msg);
    assert.equal(sig.length, 64);
    assert.equal(es256Verify(s.publicKey, msg, sig), true);
    assert.equal(es256Verify(new Uint8Array(s.publicKey.export({ format: 'der', type: 'spki' })), msg, sig), true);
    const jwk = s.publicKey.export({ format: 'jwk' });
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
    assert.equal(es256Verify(new Uint8Array(point), msg, sig), true);
    point[64] = (point[64] as number) ^ 1; // no longer on the curve
    assert.equal(es256Verify(new Uint8Array(point), msg, sig), false);
    assert.equal(es256Verify(s.publicKey, new Uint8Array(5), sig), false);
    assert.equal(es256Verify(s.publicKey, msg, sig.subarray(1)), false);
    assert.equal(es256Verify(ed25519PublicKeyFromRaw(PK), msg, sig), false);
    assert.equal(es256Verify(new Uint8Array([1, 2, 3]), msg, sig), false);
  });

  it('randomNonce: fresh, unaliased bytes of the asked length, across pool refills and above the pool', () => {
    const seen = new Set<string>();
    let previous: Uint8Array | undefined;
    // 4 KiB pool / 16 bytes = 256 nonces per refill: 1,000 cross several refills.
    for (let i = 0; i < 1000; i += 1) {
      const n = randomNonce(16);
      assert.equal(n.length, 16);
      assert.equal(n.byteOffset, 0);
      assert.equal(n.buffer.byteLength, 16, 'each nonce owns its buffer: no view into the pool');
      seen.add(toHex(n));
      if (previous !== undefined) {
        const before = toHex(previous);
        n.fill(0);
        assert.equal(toHex(previous), before, 'writing one nonce does not touch another');
      }
      previous = n;
    }
    assert.equal(seen.size, 1000);
    for (const len of [0, 1, 7, 32, 1024, 1025, 5000]) assert.equal(randomNonce(len).length, len);
    assert.throws(() => randomNonce(-1), RangeError);
    assert.throws(() => randomNonce(1.5), RangeError);
    // Mixed odd sizes straddle the refill boundary without repeating bytes.
    const big = Array.from({ length: 600 }, (_, i) => toHex(randomNonce(7 + (i % 5))));
    assert.equal(new Set(big).size, big.length);
  });
});
