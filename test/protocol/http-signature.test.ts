import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  HttpSignatureError,
  SF_LIMITS,
  base64UrlDecode,
  base64UrlEncode,
  buildSignatureBase,
  contentDigest,
  parseSfDictionary,
  parseSignatureField,
  parseSignatureInput,
  serializeSignatureField,
  serializeSignatureInput,
  signGatehouseRequest,
  signRequest,
  verifyContentDigest,
  verifyGatehouseRequest,
  verifyMessageSignature,
  type HttpRequestParts,
  type HttpSigAlg,
  type SignatureParams,
} from '../../protocol/http-signature.js';

interface B26Vector {
  publicKeySpkiPem: string;
  privateKeyPkcs8Pem: string;
  request: { method: string; url: string; headers: Record<string, string>; body: string };
  label: string;
  covered: string[];
  params: SignatureParams;
  signatureBase: string;
  signatureInputHeader: string;
  signatureHeader: string;
}

const vector = JSON.parse(
  readFileSync(new URL('../vectors/external/rfc9421/b26-ed25519.json', import.meta.url), 'utf8'),
) as B26Vector;

function expectCode(code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof HttpSignatureError, `expected HttpSignatureError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

describe('protocol/http-signature', () => {
  describe('RFC 9421 Appendix B.2.6 (ed25519)', () => {
    const publicKey = createPublicKey(vector.publicKeySpkiPem);
    const privateKey = createPrivateKey(vector.privateKeyPkcs8Pem);
    const unsigned: HttpRequestParts = { method: vector.request.method, url: vector.request.url, headers: vector.request.headers };
    const signed: HttpRequestParts = {
      method: vector.request.method,
      url: vector.request.url,
      headers: {
        ...vector.request.headers,
        'Signature-Input': vector.signatureInputHeader,
        Signature: vector.signatureHeader,
      },
    };

    it('builds exactly the signature base of the RFC', () => {
      assert.equal(buildSignatureBase(unsigned, vector.covered, vector.params), vector.signatureBase);
    });

    it('serialises Signature-Input and reproduces the signature byte for byte', async () => {
      const out = await signRequest(unsigned, {
        label: vector.label,
        covered: vector.covered,
        params: vector.params,
        sign: async (base) => new Uint8Array(cryptoSign(null, base, privateKey)),
      });
      assert.equal(out.base, vector.signatureBase);
      assert.equal(out.signatureInput, vector.signatureInputHeader);
      assert.equal(out.signature, vector.signatureHeader);
    });

    it('parses the RFC headers back to what was serialised', () => {
      const input = parseSignatureInput(vector.signatureInputHeader).get(vector.label);
      assert.ok(input);
      assert.deepEqual(input.covered, vector.covered);
      assert.deepEqual(input.params, vector.params);
      assert.equal(serializeSignatureInput(vector.label, input.covered, input.params), vector.signatureInputHeader);
      const sig = parseSignatureField(vector.signatureHeader).get(vector.label);
      assert.ok(sig);
      assert.equal(sig.length, 64);
      assert.equal(serializeSignatureField(vector.label, sig), vector.signatureHeader);
    });

    it('verifies the RFC signature with the public key', () => {
      const input = verifyMessageSignature(signed, vector.label, 'ed25519', publicKey);
      assert.deepEqual(input.covered, vector.covered);
    });

    it('fails when any covered component or parameter changes', () => {
      const changes: [string, (r: HttpRequestParts & { headers: Record<string, string> }) => void][] = [
        ['date', (r) => (r.headers['date'] = 'Tue, 20 Apr 2021 02:07:56 GMT')],
        ['@method', (r) => (r.method = 'PUT')],
        ['@path', (r) => (r.url = 'https://example.com/fool?param=Value&Pet=dog')],
        ['@authority', (r) => (r.url = 'https://example.org/foo?param=Value&Pet=dog')],
        ['content-type', (r) => (r.headers['content-type'] = 'text/plain')],
        ['content-length', (r) => (r.headers['content-length'] = '19')],
        ['created', (r) => (r.headers['Signature-Input'] = vector.signatureInputHeader.replace('1618884473', '1618884474'))],
        ['keyid', (r) => (r.headers['Signature-Input'] = vector.signatureInputHeader.replace('test-key-ed25519"', 'test-key-ed25518"'))],
      ];
      for (const [name, change] of changes) {
        const copy = { ...signed, headers: { ...(signed.headers as Record<string, string>) } };
        change(copy);
        assert.throws(() => verifyMessageSignature(copy, vector.label, 'ed25519', publicKey), expectCode('GH_HTTPSIG_BAD_SIGNATURE'), name);
      }
      // A component that is not covered (the query) may change without breaking the signature.
      const uncovered = { ...signed, url: 'https://example.com/foo?param=Other' };
      verifyMessageSignature(uncovered, vector.label, 'ed25519', publicKey);
    });

    it('checks the RFC 9530 sha-512 Content-Digest of the same request', () => {
      const body = new TextEncoder().encode(vector.request.body);
      verifyContentDigest(vector.request.headers['content-digest'], body, 'sha-512');
      assert.throws(
        () => verifyContentDigest(vector.request.headers['content-digest'], new TextEncoder().encode('{"hello": "World"}'), 'sha-512'),
        expectCode('GH_DIGEST_MISMATCH'),
      );
      assert.throws(() => verifyContentDigest(vector.request.headers['content-digest'], body), expectCode('GH_DIGEST_MISSING'));
    });
  });

  describe('protocol-v1 profile', () => {
    const ed = generateKeyPairSync('ed25519');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const body = new TextEncoder().encode('{"hellos":[]}');
    const url = 'https://backend.example.com:8443/v1/verify';

    function signerFor(alg: HttpSigAlg, key: KeyObject) {
      return async (base: Uint8Array) =>
        new Uint8Array(alg === 'ed25519' ? cryptoSign(null, base, key) : cryptoSign('sha256', base, { key, dsaEncoding: 'ieee-p1363' }));
    }

    async function signedPost(alg: HttpSigAlg, key: KeyObject, created = 1_700_000_000): Promise<HttpRequestParts & { headers: Record<string, string> }> {
      const req = { method: 'POST', url, headers: { 'content-type': 'application/json' }, body };
      const extra = await signGatehouseRequest(req, { keyid: 'session:gw-1', alg, created, nonce: 'bm9uY2Utbm9uY2U', sign: signerFor(alg, key) });
      return { ...req, headers: { ...req.headers, ...extra } };
    }

    it('signs what an independent verifier rebuilds by hand (ed25519 and ecdsa-p256-sha256)', async () => {
      for (const [alg, pair] of [['ed25519', ed], ['ecdsa-p256-sha256', ec]] as const) {
        const req = await signedPost(alg, pair.privateKey);
        const digest = `sha-256=:${Buffer.from(await crypto.subtle.digest('SHA-256', body)).toString('base64')}:`;
        assert.equal(req.headers['content-digest'], digest);
        const params = `("@method" "@target-uri" "content-digest" "content-type");created=1700000000;nonce="bm9uY2Utbm9uY2U";keyid="session:gw-1";alg="${alg}"`;
        assert.equal(req.headers['signature-input'], `gh=${params}`);
        const base = [
          '"@method": POST',
          `"@target-uri": ${url}`,
          `"content-digest": ${digest}`,
          '"content-type": application/json',
          `"@signature-params": ${params}`,
        ].join('\n');
        const m = /^gh=:([A-Za-z0-9+/=]+):$/.exec(req.headers['signature'] ?? '');
        assert.ok(m?.[1]);
        const sig = Buffer.from(m[1], 'base64');
        assert.equal(sig.length, 64);
        const ok =
          alg === 'ed25519'
            ? cryptoVerify(null, Buffer.from(base), pair.publicKey, sig)
            : cryptoVerify('sha256', Buffer.from(base), { key: pair.publicKey, dsaEncoding: 'ieee-p1363' }, sig);
        assert.equal(ok, true, alg);
        const v = verifyGatehouseRequest(req, { now: 1_700_000_100, resolveKeys: () => [pair.publicKey] });
        assert.deepEqual(v, { keyid: 'session:gw-1', alg, created: 1_700_000_000, nonce: 'bm9uY2Utbm9uY2U', keyIndex: 0 });
      }
    });

    it('covers only "@method" "@target-uri" for a request without a body', async () => {
      const req = { method: 'GET', url: 'https://b.example/v1/gateways/gw-1/revocations?since=3', headers: {} };
      const extra = await signGatehouseRequest(req, { keyid: 'session:gw-1', alg: 'ed25519', created: 10, nonce: 'abcdefgh', sign: signerFor('ed25519', ed.privateKey) });
      assert.equal(extra['content-digest'], undefined);
      assert.match(extra['signature-input'] ?? '', /^gh=\("@method" "@target-uri"\);created=10;/);
      const signed = { ...req, headers: extra };
      verifyGatehouseRequest(signed, { now: 10, resolveKeys: () => [ed.publicKey] });
      assert.throws(
        () => verifyGatehouseRequest({ ...signed, url: 'https://b.example/v1/gateways/gw-1/revocations?since=0' }, { now: 10, resolveKeys: () => [ed.publicKey] }),
        expectCode('GH_HTTPSIG_BAD_SIGNATURE'),
      );
    });

    it('checks a Content-Digest sent without a body against the empty body', async () => {
      const req = { method: 'GET', url: 'https://b.example/x', headers: { 'content-digest': contentDigest(new TextEncoder().encode('{}')) } };
      const extra = await signGatehouseRequest(req, { keyid: 'k', alg: 'ed25519', created: 10, nonce: 'abcdefgh', sign: signerFor('ed25519', ed.privateKey) });
      const signed = { ...req, headers: { ...req.headers, ...extra } };
      assert.throws(() => verifyGatehouseRequest(signed, { now: 10, resolveKeys: () => [ed.publicKey] }), expectCode('GH_DIGEST_MISMATCH'));
      const empty = { ...signed, headers: { ...signed.headers, 'content-digest': contentDigest(new Uint8Array(0)) } };
      verifyGatehouseRequest(empty, { now: 10, resolveKeys: () => [ed.publicKey] });
    });

    it('tries every key it is given and reports which one verified (session key rotation)', async () => {
      const req = await signedPost('ed25519', ed.privateKey);
      const other = generateKeyPairSync('ed25519').publicKey;
      const v = verifyGatehouseRequest(req, { now: 1_700_000_000, resolveKeys: () => [other, ed.publicKey] });
      assert.equal(v.keyIndex, 1);
      assert.throws(() => verifyGatehouseRequest(req, { now: 1_700_000_000, resolveKeys: () => [other] }), expectCode('GH_HTTPSIG_BAD_SIGNATURE'));
      assert.throws(() => verifyGatehouseRequest(req, { now: 1_700_000_000, resolveKeys: () => [] }), expectCode('GH_HTTPSIG_UNKNOWN_KEY'));
      // An Ed25519 signature presented as ECDSA never verifies under the Ed25519 key, nor vice versa.
      assert.throws(() => verifyGatehouseRequest(req, { now: 1_700_000_000, resolveKeys: () => [ec.publicKey] }), expectCode('GH_HTTPSIG_BAD_SIGNATURE'));
    });

    it('rejects created more than 300 s off either way', async () => {
      const req = await signedPost('ed25519', ed.privateKey, 1_700_000_000);
      const keys = () => [ed.publicKey];
      verifyGatehouseRequest(req, { now: 1_700_000_300, resolveKeys: keys });
      verifyGatehouseRequest(req, { now: 1_699_999_700, resolveKeys: keys });
      assert.throws(() => verifyGatehouseRequest(req, { now: 1_700_000_301, resolveKeys: keys }), expectCode('GH_HTTPSIG_STALE'));
      assert.throws(() => verifyGatehouseRequest(req, { now: 1_699_999_699, resolveKeys: keys }), expectCode('GH_HTTPSIG_STALE'));
    });

    it('rejects a changed body, a missing digest and missing coverage', async () => {
      const req = await signedPost('ed25519', ed.privateKey);
      const opts = { now: 1_700_000_000, resolveKeys: () => [ed.publicKey] };
      assert.throws(() => verifyGatehouseRequest({ ...req, body: new TextEncoder().encode('{"hellos":[1]}') }, opts), expectCode('GH_DIGEST_MISMATCH'));
      const noDigest = { ...req, headers: { ...req.headers, 'content-digest': undefined } };
      assert.throws(() => verifyGatehouseRequest(noDigest, opts), expectCode('GH_DIGEST_MISSING'));
      const narrowed = {
        ...req,
        headers: { ...req.headers, 'signature-input': (req.headers['signature-input'] ?? '').replace(' "content-type"', '') },
      };
      assert.throws(() => verifyGatehouseRequest(narrowed, opts), expectCode('GH_HTTPSIG_COVERAGE'));
      const noNonce = {
        ...req,
        headers: { ...req.headers, 'signature-input': (req.headers['signature-input'] ?? '').replace(';nonce="bm9uY2Utbm9uY2U"', '') },
      };
      assert.throws(() => verifyGatehouseRequest(noNonce, opts), expectCode('GH_HTTPSIG_COVERAGE'));
      const unsigned = { ...req, headers: { 'content-type': 'application/json' } };
      assert.throws(() => verifyGatehouseRequest(unsigned, opts), expectCode('GH_HTTPSIG_MISSING'));
      const otherLabel = { ...req, headers: { ...req.headers, signature: (req.headers['signature'] ?? '').replace(/^gh=/, 'gx=') } };
      assert.throws(() => verifyGatehouseRequest(otherLabel, opts), expectCode('GH_HTTPSIG_MISSING'));
      const badAlg = { ...req, headers: { ...req.headers, 'signature-input': (req.headers['signature-input'] ?? '').replace('alg="ed25519"', 'alg="hmac-sha256"') } };
      assert.throws(() => verifyGatehouseRequest(badAlg, opts), expectCode('GH_HTTPSIG_ALG'));
    });

    it('refuses a body without a content-type when signing', async () => {
      await assert.rejects(
        signGatehouseRequest({ method: 'POST', url, headers: {}, body }, { keyid: 'k', alg: 'ed25519', created: 1, nonce: 'abcdefgh', sign: signerFor('ed25519', ed.privateKey) }),
        expectCode('GH_HTTPSIG_COMPONENT'),
      );
    });
  });

  describe('structured field parsing is strict and bounded', () => {
    const bad = [
      'a=("x"), a=("y")', // duplicate key
      'a=("x"),', // trailing comma
      'a=:AAA:', // base64 length
      'a=:AB==:', // non-canonical base64 (stray bits)
      'a=1.5', // decimal
      'a="unterminated',
      'a="bad\\escape"',
      'A=1', // upper-case key
      'a=("x" "y"', // unterminated inner list
      'a=("x""y")', // no space between items
      'a=1;p=1;p=2', // duplicate parameter
      'a=1234567890123456', // integer over 15 digits
    ];
    it('refuses malformed dictionaries', () => {
      for (const field of bad) assert.throws(() => parseSfDictionary(field), expectCode('GH_HTTPSIG_MALFORMED'), field);
      assert.throws(() => parseSfDictionary(''), expectCode('GH_HTTPSIG_MALFORMED'));
      assert.throws(() => parseSignatureInput('a=("x");created'), expectCode('GH_HTTPSIG_MALFORMED'));
      assert.throws(() => parseSignatureInput('a=("x");foo=1'), expectCode('GH_HTTPSIG_MALFORMED'));
      assert.throws(() => parseSignatureInput('a=("x";sf)'), expectCode('GH_HTTPSIG_MALFORMED'));
      assert.throws(() => parseSignatureInput('a=:AAAA:'), expectCode('GH_HTTPSIG_MALFORMED'));
      assert.throws(() => parseSignatureField('a=("x")'), expectCode('GH_HTTPSIG_MALFORMED'));
    });

    it('enforces its size limits', () => {
      assert.throws(() => parseSfDictionary(`a="${'x'.repeat(SF_LIMITS.fieldChars)}"`), expectCode('GH_HTTPSIG_MALFORMED'));
      const many = Array.from({ length: SF_LIMITS.members + 1 }, (_, i) => `k${i}=1`).join(', ');
      assert.throws(() => parseSfDictionary(many), expectCode('GH_HTTPSIG_MALFORMED'));
      const items = `a=(${Array.from({ length: SF_LIMITS.innerItems + 1 }, () => '"x"').join(' ')})`;
      assert.throws(() => parseSfDictionary(items), expectCode('GH_HTTPSIG_MALFORMED'));
    });

    it('accepts the whitespace RFC 8941 allows', () => {
      const d = parseSignatureInput('  a=( "@method"  "@path" );created=1, b=("x")  ');
      assert.deepEqual(d.get('a'), { covered: ['@method', '@path'], params: { created: 1 } });
      assert.deepEqual(d.get('b'), { covered: ['x'], params: {} });
    });

    it('answers every mutated header with a parse result or an HttpSignatureError, nothing else', () => {
      // Deterministic mutations of a real Signature-Input: no other exception type, no hang.
      const seed = vector.signatureInputHeader;
      const alphabet = ' ();=,:"\\?*-.0123456789abcdefghijklmnopqrstuvwxyzA@\t';
      let x = 12345;
      const rnd = (n: number) => ((x = (x * 1103515245 + 12345) % 2147483648), x % n);
      for (let i = 0; i < 3000; i++) {
        const chars = [...seed];
        for (let k = 0, m = 1 + rnd(4); k < m; k++) {
          const pos = rnd(chars.length);
          const op = rnd(3);
          const c = alphabet[rnd(alphabet.length)] ?? ' ';
          if (op === 0) chars[pos] = c;
          else if (op === 1) chars.splice(pos, 1);
          else chars.splice(pos, 0, c);
        }
        try {
          parseSignatureInput(chars.join(''));
        } catch (err) {
          assert.ok(err instanceof HttpSignatureError, `${String(err)} for ${chars.join('')}`);
        }
      }
    });

    it('round-trips the Content-Digest of a body', () => {
      const b = new Uint8Array([1, 2, 3]);
      verifyContentDigest(contentDigest(b), b);
      assert.throws(() => verifyContentDigest('sha-256=1', b), expectCode('GH_DIGEST_MALFORMED'));
      assert.throws(() => verifyContentDigest('sha-256', b), expectCode('GH_DIGEST_MALFORMED'));
    });
  });

  describe('base64url for JSON bodies', () => {
    it('encodes without padding and decodes strictly', () => {
      const b = new Uint8Array([0xfb, 0xff, 0x01]);
      assert.equal(base64UrlEncode(b), '-_8B');
      assert.deepEqual(base64UrlDecode('-_8B'), b);
      assert.deepEqual(base64UrlDecode('AQ'), new Uint8Array([1]));
      for (const s of ['AQ==', '+/8B', 'A', 'AR', 'a b']) assert.equal(base64UrlDecode(s), undefined, s);
      assert.equal(base64UrlDecode('AAAA', 2), undefined);
    });
  });
});
