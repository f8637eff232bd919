/** The development-only software key store and the digest-level P-256 code behind it. */
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { COSE_ALG_ES256 } from '../../protocol/types.js';
import { TpmError } from '../../tpm/errors.js';
import { p256SignDigest, p256VerifyDigest } from '../../tpm/p256.js';
import { SoftwareKeyStore } from '../../tpm/software-key-store.js';
import { tempDirEach } from '../../testkit/temp-dir.js';

describe('tpm/SoftwareKeyStore', () => {
  const tmp = tempDirEach('gh-swkey-');

  it('creates a 0600 P-256 key file, warns at every open and keeps the key across opens', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        lines.push(c.toString());
        cb();
      },
    });
    const logger = winston.createLogger({ transports: [new winston.transports.Stream({ stream: sink })] });
    const keyFile = join(tmp.path, 'sub', 'gateway-key.pem');
    const a = new SoftwareKeyStore({ keyFile, logger });
    await a.open();
    assert.equal(a.kind, 'software');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const pem = a.publicKeyPem();
    await a.close();
    const b = new SoftwareKeyStore({ keyFile, logger });
    await b.open();
    assert.equal(b.publicKeyPem(), pem);
    assert.deepEqual(b.thumbprint(), new Uint8Array(createHash('sha256').update(b.publicKeySpkiDer()).digest()));
    await new Promise((r) => setImmediate(r));
    assert.equal(lines.filter((l) => l.includes('SOFTWARE key store')).length, 2, 'a warning at each open');
    assert.ok(lines.every((l) => !l.includes('PRIVATE KEY')), 'the key never reaches the log');
  });

  it('without a key file, uses an ephemeral in-memory key (a new one per store)', async () => {
    const a = new SoftwareKeyStore({});
    const b = new SoftwareKeyStore({});
    await a.open();
    await b.open();
    assert.notDeepEqual(a.thumbprint(), b.thumbprint());
    const msg = Buffer.from('ephemeral');
    const sig = await a.sign(new Uint8Array(createHash('sha256').update(msg).digest()));
    assert.ok(verify('sha256', msg, { key: createPublicKey(a.publicKeyPem()), dsaEncoding: 'ieee-p1363' }, sig));
    await assert.rejects(new SoftwareKeyStore({ production: true }).open(), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_SOFTWARE_KEY_REFUSED');
  });

  it('is refused in production', async () => {
    const s = new SoftwareKeyStore({ keyFile: join(tmp.path, 'k.pem'), production: true });
    await assert.rejects(s.open(), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_SOFTWARE_KEY_REFUSED');
  });

  it('signs digests (raw and DER) and gives an ES256 signer', async () => {
    const s = new SoftwareKeyStore({ keyFile: join(tmp.path, 'k.pem') });
    await s.open();
    const pub = createPublicKey({ key: Buffer.from(s.publicKeySpkiDer()), format: 'der', type: 'spki' });
    for (let i = 0; i < 10; i++) {
      const msg = Buffer.from(`message ${i}`);
      const d = new Uint8Array(createHash('sha256').update(msg).digest());
      assert.ok(verify('sha256', msg, { key: pub, dsaEncoding: 'ieee-p1363' }, await s.sign(d)));
      assert.ok(verify('sha256', msg, pub, await s.sign(d, { format: 'der' })));
    }
    const signer = s.signer('tpm:gw-dev');
    assert.equal(signer.alg, COSE_ALG_ES256);
    const tbs = Buffer.from('to be signed');
    assert.ok(verify('sha256', tbs, { key: pub, dsaEncoding: 'ieee-p1363' }, await signer.sign(tbs)));
    await assert.rejects(s.sign(new Uint8Array(20)), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_BAD_INPUT');
    await s.close();
    await assert.rejects(s.sign(new Uint8Array(32)), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_CLOSED');
  });

  it('tightens a loosened key file and refuses a key that is not P-256', async () => {
    const keyFile = join(tmp.path, 'k.pem');
    const s = new SoftwareKeyStore({ keyFile });
    await s.open();
    await chmod(keyFile, 0o644);
    await new SoftwareKeyStore({ keyFile }).open();
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);

    const other = join(tmp.path, 'p384.pem');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    await writeFile(other, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    await assert.rejects(new SoftwareKeyStore({ keyFile: other }).open(), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_KEY_ATTRIBUTES');
    await writeFile(other, 'not a key', { mode: 0o600 });
    await assert.rejects(new SoftwareKeyStore({ keyFile: other }).open(), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_STATE');
    assert.ok((await readFile(keyFile, 'utf8')).includes('PRIVATE KEY'));
  });
});

describe('tpm/p256 (digest-level ECDSA)', () => {
  it('matches RFC 6979 A.2.5 (P-256, SHA-256, "sample")', () => {
    const d = Buffer.from('c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721', 'hex');
    const x = Buffer.from('60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6', 'hex');
    const y = Buffer.from('7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299', 'hex');
    const key = createPrivateKey({ key: { kty: 'EC', crv: 'P-256', d: d.toString('base64url'), x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
    const sig = p256SignDigest(key, new Uint8Array(createHash('sha256').update('sample').digest()));
    assert.equal(
      Buffer.from(sig).toString('hex'),
      'efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716' + 'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8',
    );
  });

  it('verifies what node:crypto signs and rejects tampering', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const msg = Buffer.from('hello');
    const d = new Uint8Array(createHash('sha256').update(msg).digest());
    const sig = new Uint8Array(sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
    assert.ok(p256VerifyDigest(publicKey, d, sig));
    const bad = sig.slice();
    bad[10] = (bad[10] ?? 0) ^ 1;
    assert.ok(!p256VerifyDigest(publicKey, d, bad));
    assert.ok(!p256VerifyDigest(publicKey, d, new Uint8Array(64)), 'r = s = 0 is invalid');
    assert.ok(!p256VerifyDigest(publicKey, d, sig.subarray(0, 63)));
  });
});

