/** TPM 2.0 wire encodings the key store builds and parses (TPM 2.0 Part 2). */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { TpmError } from '../../tpm/errors.js';
import {
  checkIdentityKey,
  eccSigningTemplate,
  ecdsaSignatureRaw,
  hasNoDA,
  p256SpkiDer,
  parseEccPublic,
  PROVISIONED_ATTRIBUTES,
  rawEcdsaToDer,
  REQUIRED_ATTRIBUTES,
  TPMA_OBJECT,
} from '../../tpm/tpm2-wire.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('tpm/tpm2-wire', () => {
  it('builds the ECC signing template byte for byte', () => {
    const t = eccSigningTemplate(new Uint8Array(32).fill(0xab));
    assert.equal(
      hex(t),
      '0038' + // TPM2B size (56)
        '0023' + '000b' + // ECC, nameAlg SHA256
        '00040472' + // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|sign
        '0000' + // authPolicy
        '0010' + // symmetric NULL
        '0018000b' + // ECDSA-SHA256
        '0003' + // NIST P-256
        '0010' + // kdf NULL
        '0020' + 'ab'.repeat(32) + // unique.x
        '0000', // unique.y
    );
    const pub = parseEccPublic(t);
    assert.equal(pub.attributes, PROVISIONED_ATTRIBUTES);
    assert.ok(hasNoDA(pub));
    checkIdentityKey({ ...pub, x: new Uint8Array(32), y: new Uint8Array(32) }, '0x81010001');
  });

  it('still accepts an identity key made without noDA (as before noDA was set), and tells it apart', () => {
    const legacy = parseEccPublic(eccSigningTemplate(new Uint8Array(32), REQUIRED_ATTRIBUTES));
    assert.equal(legacy.attributes, 0x00040072);
    assert.ok(!hasNoDA(legacy));
    checkIdentityKey(legacy, '0x81010001');
  });

  it('refuses keys that are not signing-only P-256 identity keys', () => {
    const base = parseEccPublic(eccSigningTemplate(new Uint8Array(32)));
    const bad = [
      { ...base, attributes: base.attributes | TPMA_OBJECT.decrypt },
      { ...base, attributes: base.attributes | TPMA_OBJECT.restricted },
      { ...base, attributes: base.attributes & ~TPMA_OBJECT.fixedTPM },
      { ...base, curve: 0x0004 },
      { ...base, schemeHash: 0x000c },
    ];
    for (const b of bad) {
      assert.throws(() => checkIdentityKey(b, '0x81010001'), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_KEY_ATTRIBUTES');
    }
  });

  it('rejects truncated and inconsistent TPM2B_PUBLIC', () => {
    const t = eccSigningTemplate(new Uint8Array(32));
    assert.throws(() => parseEccPublic(t.subarray(0, t.length - 1)), TpmError);
    const longer = new Uint8Array([...t, 0]);
    assert.throws(() => parseEccPublic(longer), /size does not match/);
  });

  it('makes an SPKI node:crypto accepts, padding short coordinates', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const x = Buffer.from(jwk.x ?? '', 'base64url');
    const y = Buffer.from(jwk.y ?? '', 'base64url');
    const spki = p256SpkiDer(x, y);
    assert.deepEqual(Buffer.from(spki), publicKey.export({ format: 'der', type: 'spki' }));
    // A TPM may drop leading zero bytes of a coordinate: the SPKI must not change.
    const stripped = x[0] === 0 ? x.subarray(1) : x;
    assert.deepEqual(p256SpkiDer(stripped, y), p256SpkiDer(x, y));
    assert.equal(createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  it('turns a TPMT_SIGNATURE into r||s and r||s into DER that openssl-style verifiers accept', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 20; i++) {
      const msg = Buffer.from(`m${i}`);
      const raw = sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      // TPMT_SIGNATURE: ECDSA, SHA256, r and s as TPM2B, here with leading zeros stripped.
      const strip = (b: Buffer): Buffer => {
        let k = 0;
        while (k < b.length - 1 && b[k] === 0) k++;
        return b.subarray(k);
      };
      const r = strip(raw.subarray(0, 32));
      const s = strip(raw.subarray(32));
      const wire = Buffer.concat([Buffer.from([0, 0x18, 0, 0x0b, 0, r.length]), r, Buffer.from([0, s.length]), s]);
      assert.deepEqual(Buffer.from(ecdsaSignatureRaw(wire)), raw);
      const der = rawEcdsaToDer(raw);
      assert.ok(verify('sha256', msg, publicKey, der), 'DER form verifies');
    }
    // Known encoding: high bit set gets a 0x00 pad, leading zeros are dropped.
    const raw = new Uint8Array(64);
    raw[0] = 0x80;
    raw[63] = 0x01;
    assert.equal(hex(rawEcdsaToDer(raw)), '3026' + '0221' + '0080' + '00'.repeat(31) + '020101');
    assert.throws(() => rawEcdsaToDer(new Uint8Array(63)), TpmError);
    assert.throws(() => ecdsaSignatureRaw(Uint8Array.from([0, 0x14, 0, 0x0b])), /unexpected signature algorithm/);
  });
});
