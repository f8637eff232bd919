import assert from 'node:assert/strict';
import {
  CborTag,
  decodeCbor,
  decodeSign1,
  Ed25519Signer,
  encodeCbor,
  Es256Signer,
  ProtocolError,
  signSign1,
  sigStructure,
  verifySign1,
  type CborValue,
} from '../../protocol/index.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n);

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ProtocolError, `not a ProtocolError: ${String(e)}`);
    return e.code;
  }
  assert.fail('did not throw');
}

function rebuild(parts: [CborValue, CborValue, CborValue, CborValue], tagged = true): Uint8Array {
  return encodeCbor(tagged ? new CborTag(18, parts) : parts);
}

describe('protocol/cose', () => {
  const signer = Ed25519Signer.fromSeed(seed(1), 'dev-1');
  const payload = new TextEncoder().encode('payload');

  it('signs the protocol-v1 profile byte for byte', async () => {
    const bytes = await signSign1(payload, signer);
    // 18([h'A201270445646576 2D31', {}, h'…', h'…64 bytes'])
    assert.equal(toHex(bytes.subarray(0, 14)), 'd284' + '4a' + 'a2012704456465762d31' + 'a0');
    const d = decodeSign1(bytes);
    assert.equal(d.kid, 'dev-1');
    assert.equal(d.alg, -8);
    assert.equal(d.tagged, true);
    assert.deepEqual(d.payload, payload);
    // RFC 9052 §4.4 Sig_structure with empty external AAD.
    assert.deepEqual(decodeCbor(d.toBeSigned), ['Signature1', d.protectedBytes, new Uint8Array(0), payload]);
    assert.equal(verifySign1(d, signer.publicKeyRaw), true);
    assert.equal(verifySign1(d, Ed25519Signer.fromSeed(seed(2), 'x').publicKeyRaw), false);
  });

  it('returns copies, not views of the input buffer', async () => {
    const input = Buffer.from(await signSign1(payload, signer));
    const d = decodeSign1(input);
    const before = { bytes: toHex(d.bytes), payload: toHex(d.payload), sig: toHex(d.signature) };
    input.fill(0);
    assert.deepEqual({ bytes: toHex(d.bytes), payload: toHex(d.payload), sig: toHex(d.signature) }, before);
    assert.equal(Object.getPrototypeOf(d.bytes), Uint8Array.prototype);
    assert.equal(verifySign1(d, signer.publicKeyRaw), true);
  });

  it('accepts an untagged COSE_Sign1 on decode', async () => {
    const d = decodeSign1(await signSign1(payload, signer));
    const untagged = rebuild([d.protectedBytes, new Map(), d.payload, d.signature], false);
    const u = decodeSign1(untagged);
    assert.equal(u.tagged, false);
    assert.equal(verifySign1(u, signer.publicKeyRaw), true);
  });

  it('ES256 round trip; the key type pins the algorithm', async () => {
    const es = Es256Signer.generate('tpm-gw-1');
    const d = decodeSign1(await signSign1(payload, es));
    assert.equal(d.alg, -7);
    assert.equal(verifySign1(d, es.publicKey), true);
    assert.equal(verifySign1(d, signer.publicKeyRaw), false);
    const ed = decodeSign1(await signSign1(payload, signer));
    assert.equal(verifySign1(ed, es.publicKey), false);
  });

  it('refuses what the protocol-v1 profile forbids', async () => {
    const d = decodeSign1(await signSign1(payload, signer));
    const prot = (m: [number, CborValue][]): Uint8Array => encodeCbor(new Map(m));
    const kid = new TextEncoder().encode('dev-1');
    const sig = d.signature;
    assert.equal(code(() => decodeSign1(rebuild([d.protectedBytes, new Map([[4, kid]]), payload, sig]))), 'GH_COSE_HEADER');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8]]), new Map([[4, kid]]), payload, sig]))), 'GH_COSE_HEADER');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8]]), new Map(), payload, sig]))), 'GH_COSE_BAD_KID');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8], [3, 0], [4, kid]]), new Map(), payload, sig]))), 'GH_COSE_HEADER');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8], [2, [1]], [4, kid]]), new Map(), payload, sig]))), 'GH_COSE_CRIT');
    assert.equal(code(() => decodeSign1(rebuild([prot([[4, kid]]), new Map(), payload, sig]))), 'GH_COSE_MISSING_ALG');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8], [4, 'dev-1']]), new Map(), payload, sig]))), 'GH_COSE_BAD_KID');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8], [4, new Uint8Array([0xff])]]), new Map(), payload, sig]))), 'GH_COSE_BAD_KID');
    assert.equal(code(() => decodeSign1(rebuild([prot([[1, -8], [4, new TextEncoder().encode('a b')]]), new Map(), payload, sig]))), 'GH_COSE_BAD_KID');
    assert.equal(code(() => decodeSign1(rebuild([d.protectedBytes, new Map(), payload, sig.subarray(1)]))), 'GH_COSE_SIGNATURE_LENGTH');
    assert.equal(code(() => decodeSign1(encodeCbor(new CborTag(18, [d.protectedBytes, new Map(), payload])))), 'GH_COSE_STRUCTURE');
    assert.equal(code(() => decodeSign1(rebuild([new Map(), new Map(), payload, sig]))), 'GH_COSE_STRUCTURE');
    assert.equal(code(() => decodeSign1(rebuild([new Uint8Array([0x80]), new Map(), payload, sig]))), 'GH_COSE_HEADER');
    assert.equal(code(() => decodeSign1(rebuild([new Uint8Array([0xa1, 0x01]), new Map(), payload, sig]))), 'GH_COSE_HEADER');
  });

  it('refuses other algorithms as unsupported, never by crashing', async () => {
    const kid = new TextEncoder().encode('dev-1');
    const d = decodeSign1(await signSign1(payload, signer));
    for (const alg of [-35, -36, -37, -47, -257, -999, 0, 1, 'EdDSA'] as CborValue[]) {
      const prot = encodeCbor(new Map<number, CborValue>([[1, alg], [4, kid]]));
      for (const profile of ['protocol-v1', 'generic'] as const) {
        assert.equal(code(() => decodeSign1(rebuild([prot, new Map(), payload, d.signature]), { profile })), 'GH_COSE_UNSUPPORTED_ALG');
      }
    }
  });

  it('generic mode: kid in the unprotected header, crit, external AAD', async () => {
    const kid = new TextEncoder().encode('11');
    const prot = encodeCbor(new Map<number, CborValue>([[1, -8]]));
    const aad = new Uint8Array([1, 2, 3]);
    const toSign = encodeCbor(['Signature1', prot, aad, payload]);
    const sig = await signer.sign(toSign);
    const bytes = rebuild([prot, new Map([[4, kid]]), payload, sig]);
    assert.equal(code(() => decodeSign1(bytes)), 'GH_COSE_HEADER');
    const g = decodeSign1(bytes, { profile: 'generic', externalAad: aad });
    assert.equal(g.kid, '11');
    assert.equal(verifySign1(g, signer.publicKeyRaw), true);
    assert.equal(verifySign1(decodeSign1(bytes, { profile: 'generic' }), signer.publicKeyRaw), false);
    const crit = encodeCbor(new Map<number, CborValue>([[1, -8], [2, [99]]]));
    assert.equal(code(() => decodeSign1(rebuild([crit, new Map(), payload, sig]), { profile: 'generic' })), 'GH_COSE_CRIT');
    assert.equal(code(() => decodeSign1(rebuild([prot, new Map([[1, -8]]), payload, sig]), { profile: 'generic' })), 'GH_COSE_HEADER');
    const noAlg = rebuild([new Uint8Array(0), new Map<number, CborValue>([[1, -8]]), payload, sig]);
    assert.equal(code(() => decodeSign1(noAlg, { profile: 'generic' })), 'GH_COSE_MISSING_ALG');
    assert.equal(decodeSign1(noAlg, { profile: 'generic', algFromUnprotected: true }).alg, -8);
  });

  it('refuses a signer whose kid is not a valid id', async () => {
    const bad = Ed25519Signer.fromSeed(seed(1), 'has space');
    await assert.rejects(signSign1(payload, bad), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_COSE_BAD_KID');
  });
});

describe('protocol/cose: sigStructure', () => {
  it('matches the generic encoder for every length class', () => {
    for (const n of [0, 23, 24, 255, 256, 65535, 65536]) {
      const p = new Uint8Array(n).fill(7);
      const prot = new Uint8Array(n % 50).fill(1);
      const aad = new Uint8Array(n % 30).fill(2);
      assert.deepEqual(sigStructure(prot, p, aad), encodeCbor(['Signature1', prot, aad, p]));
    }
  });
});
