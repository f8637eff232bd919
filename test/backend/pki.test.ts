import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { PkiError, createTestPki, issueCert, type TestPki } from '../../backend/pki.js';

const NAME = 'backend.example.com';

/** What node's TLS client decides about a certificate for `host` (undefined: accepted). */
function identityError(host: string, pem: string): Error | undefined {
  const x = new X509Certificate(pem);
  const peer = { subject: { CN: /CN=([^\n]+)/.exec(x.subject)?.[1] ?? '' }, subjectaltname: x.subjectAltName } as unknown as PeerCertificate;
  return checkServerIdentity(host, peer);
}

describe('backend/pki', () => {
  let dir: string;
  let pki: TestPki;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-pki-test-'));
    pki = await createTestPki(join(dir, 'pki'), { dnsNames: [NAME, 'localhost'], ips: ['127.0.0.1'] });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('issues a server certificate for every DNS name and IP, signed by the CA', () => {
    const ca = new X509Certificate(pki.ca.certPem);
    const server = new X509Certificate(pki.server.certPem);
    assert.equal(ca.ca, true);
    assert.equal(server.ca, false);
    assert.equal(server.verify(ca.publicKey), true);
    assert.equal(server.subjectAltName, `DNS:${NAME}, DNS:localhost, IP Address:127.0.0.1`);
    assert.equal(identityError(NAME, pki.server.certPem), undefined);
    assert.equal(identityError('127.0.0.1', pki.server.certPem), undefined);
    assert.ok(server.checkPrivateKey(createPrivateKey(pki.server.keyPem)));
    assert.ok(new Date(server.validTo).getTime() > Date.now());
  });

  it('writes private keys with mode 0600', () => {
    for (const c of [pki.ca, pki.server, pki.untrustedCa, pki.expired]) {
      assert.equal(statSync(c.keyPath).mode & 0o777, 0o600, c.keyPath);
    }
  });

  it('makes hostile variants that a strict client refuses', () => {
    const ca = new X509Certificate(pki.ca.certPem);
    assert.equal(new X509Certificate(pki.untrusted.certPem).verify(ca.publicKey), false);
    assert.equal(new X509Certificate(pki.untrusted.certPem).subjectAltName, new X509Certificate(pki.server.certPem).subjectAltName);
    for (const c of [pki.wrongName, pki.suffixed, pki.prefixed, pki.cnOnly, pki.expired]) {
      assert.equal(new X509Certificate(c.certPem).verify(ca.publicKey), true, c.certPath);
    }
    assert.equal(new X509Certificate(pki.suffixed.certPem).subjectAltName, `DNS:${NAME}.attacker.test`);
    assert.equal(new X509Certificate(pki.prefixed.certPem).subjectAltName, `DNS:attacker-${NAME}`);
    for (const c of [pki.wrongName, pki.suffixed, pki.prefixed]) {
      assert.ok(identityError(NAME, c.certPem) instanceof Error, c.certPath);
    }
    // Node's own checkServerIdentity still falls back to the CN, which is exactly why a strict
    // client must refuse a certificate without subjectAltName: this one has the name only there.
    const cnOnly = new X509Certificate(pki.cnOnly.certPem);
    assert.equal(cnOnly.subjectAltName, undefined);
    assert.match(cnOnly.subject, new RegExp(`CN=${NAME.replace(/\./g, '\\.')}`));
    assert.ok(new Date(new X509Certificate(pki.expired.certPem).validTo).getTime() < Date.now());
  });

  it('refuses names that could reach the openssl command line', async () => {
    await assert.rejects(issueCert(dir, pki.ca, { name: '../escape' }), PkiError);
    await assert.rejects(issueCert(dir, pki.ca, { name: 'x', sans: ['a,DNS:evil.test'] }), PkiError);
    await assert.rejects(issueCert(dir, pki.ca, { name: 'x', cn: 'a/CN=b' }), PkiError);
  });
});
