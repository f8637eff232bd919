import assert from 'node:assert/strict';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeSign1, ProtocolError, verifySign1, type DecodeSign1Options } from '../../protocol/index.js';

// COSE WG Examples (public domain), copied into the repo: see external/cose-wg/README.md.
const DIR = join(dirname(fileURLToPath(import.meta.url)), 'external', 'cose-wg');

interface Jwk {
  kty: string;
  crv: string;
  x?: string;
  y?: string;
  x_hex?: string;
}
interface Example {
  title: string;
  fail?: boolean;
  input: { sign0: { key: Jwk; external?: string } };
  intermediates: { ToBeSign_hex: string };
  output: { cbor: string };
}

type Expectation = { verifies: true; opts?: DecodeSign1Options } | { refused: string; opts?: DecodeSign1Options } | { badSignature: true };

const EXPECT: Record<string, Expectation> = {
  'eddsa-examples_eddsa-sig-01': { verifies: true },
  'eddsa-examples_eddsa-sig-02': { refused: 'GH_COSE_UNSUPPORTED_ALG' },
  'ecdsa-examples_ecdsa-sig-01': { verifies: true },
  'ecdsa-examples_ecdsa-sig-02': { refused: 'GH_COSE_UNSUPPORTED_ALG' },
  'ecdsa-examples_ecdsa-sig-03': { refused: 'GH_COSE_UNSUPPORTED_ALG' },
  'ecdsa-examples_ecdsa-sig-04': { refused: 'GH_COSE_UNSUPPORTED_ALG' },
  'sign1-tests_sign-pass-01': { verifies: true, opts: { algFromUnprotected: true } },
  'sign1-tests_sign-pass-02': { verifies: true },
  'sign1-tests_sign-pass-03': { verifies: true },
  'sign1-tests_sign-fail-01': { refused: 'GH_CBOR_TAG' },
  'sign1-tests_sign-fail-02': { badSignature: true },
  'sign1-tests_sign-fail-03': { refused: 'GH_COSE_UNSUPPORTED_ALG' },
  'sign1-tests_sign-fail-04': { refused: 'GH_COSE_UNSUPPORTED_ALG' },
  'sign1-tests_sign-fail-06': { badSignature: true },
  'sign1-tests_sign-fail-07': { badSignature: true },
};

function publicKey(jwk: Jwk): KeyObject | Uint8Array {
  if (jwk.kty === 'OKP' && jwk.x_hex !== undefined) {
    if (jwk.crv === 'Ed25519') return new Uint8Array(Buffer.from(jwk.x_hex, 'hex'));
    return createPublicKey({ key: { kty: 'OKP', crv: jwk.crv, x: Buffer.from(jwk.x_hex, 'hex').toString('base64url') }, format: 'jwk' });
  }
  return createPublicKey({ key: { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y }, format: 'jwk' });
}

describe('vectors: COSE WG Examples (generic COSE_Sign1 mode)', () => {
  // The AES-CCM (COSE_Encrypt0) example has its own test: cose-wg-encrypt0.test.ts.
  const files = readdirSync(DIR).filter((n) => n.endsWith('.json') && !n.startsWith('aes-ccm-'));

  it('has an expectation for every copied vector', () => {
    assert.deepEqual(files.map((n) => n.replace(/\.json$/, '')).sort(), Object.keys(EXPECT).sort());
  });

  for (const file of files) {
    const name = file.replace(/\.json$/, '');
    const ex = JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Example;
    const expect = EXPECT[name];
    it(`${name}: ${ex.title}`, () => {
      assert.ok(expect !== undefined);
      const bytes = new Uint8Array(Buffer.from(ex.output.cbor, 'hex'));
      const external = ex.input.sign0.external;
      const opts: DecodeSign1Options = {
        profile: 'generic',
        ...(external === undefined ? {} : { externalAad: new Uint8Array(Buffer.from(external, 'hex')) }),
        ...('opts' in expect ? expect.opts : {}),
      };
      const key = publicKey(ex.input.sign0.key);
      if ('refused' in expect) {
        assert.throws(
          () => decodeSign1(bytes, opts),
          (e: unknown) => e instanceof ProtocolError && e.code === expect.refused,
        );
        // The strict protocol-v1 profile refuses it too.
        assert.throws(() => decodeSign1(bytes), ProtocolError);
        return;
      }
      const d = decodeSign1(bytes, opts);
      if ('verifies' in expect) {
        assert.equal(ex.fail, undefined);
        // Our Sig_structure is byte-identical to the reference implementation's.
        assert.equal(Buffer.from(d.toBeSigned).toString('hex'), ex.intermediates.ToBeSign_hex.toLowerCase());
        assert.equal(verifySign1(d, key), true);
      } else {
        assert.equal(ex.fail, true);
        assert.equal(verifySign1(d, key), false);
      }
    });
  }

  it('sign-pass-01 (alg unprotected) is refused unless the caller opts in', () => {
    const ex = JSON.parse(readFileSync(join(DIR, 'sign1-tests_sign-pass-01.json'), 'utf8')) as Example;
    const bytes = new Uint8Array(Buffer.from(ex.output.cbor, 'hex'));
    assert.throws(() => decodeSign1(bytes, { profile: 'generic' }), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_COSE_MISSING_ALG');
  });

  it('sign-pass-02 fails without its external AAD', () => {
    const ex = JSON.parse(readFileSync(join(DIR, 'sign1-tests_sign-pass-02.json'), 'utf8')) as Example;
    const d = decodeSign1(new Uint8Array(Buffer.from(ex.output.cbor, 'hex')), { profile: 'generic' });
    assert.equal(verifySign1(d, publicKey(ex.input.sign0.key)), false);
  });

  it('an Ed448 or P-384 key never verifies an EdDSA/ES256 object', () => {
    const ed = JSON.parse(readFileSync(join(DIR, 'eddsa-examples_eddsa-sig-01.json'), 'utf8')) as Example;
    const ed448 = JSON.parse(readFileSync(join(DIR, 'eddsa-examples_eddsa-sig-02.json'), 'utf8')) as Example;
    const p384 = JSON.parse(readFileSync(join(DIR, 'ecdsa-examples_ecdsa-sig-02.json'), 'utf8')) as Example;
    const es = JSON.parse(readFileSync(join(DIR, 'ecdsa-examples_ecdsa-sig-01.json'), 'utf8')) as Example;
    const dEd = decodeSign1(new Uint8Array(Buffer.from(ed.output.cbor, 'hex')), { profile: 'generic' });
    const dEs = decodeSign1(new Uint8Array(Buffer.from(es.output.cbor, 'hex')), { profile: 'generic' });
    assert.equal(verifySign1(dEd, publicKey(ed448.input.sign0.key)), false);
    assert.equal(verifySign1(dEs, publicKey(p384.input.sign0.key)), false);
    assert.equal(verifySign1(dEs, publicKey(ed.input.sign0.key)), false);
  });
});
