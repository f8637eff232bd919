/**
 * The session call signed by a real TPM key (swtpm + libtss2), registered from the PEM the
 * TPM prints: the backend verifies the TPM's ECDSA r||s signature over the RFC 9421 base and
 * binds the credential to the TPM key's thumbprint.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ed25519Signer, parseGatewayCredential, sha256 } from '../../protocol/index.js';
import { provisionTpmKey } from '../../tpm/provision.js';
import { TpmKeyStore } from '../../tpm/tpm-key-store.js';
import { startTestBackend, type TestBackend } from '../../testkit/backend.js';
import { Swtpm } from '../../testkit/swtpm.js';

describe('backend: session credential for a real TPM key (swtpm)', function () {
  this.timeout(120_000);
  let tpm: Swtpm;
  let stateDir: string;
  let store: TpmKeyStore;
  let tb: TestBackend;

  before(async () => {
    tpm = await Swtpm.start();
    stateDir = await mkdtemp(join(tmpdir(), 'gh-backend-tpm-'));
    await provisionTpmKey({ tcti: tpm.tcti, stateDir });
    store = new TpmKeyStore({ tcti: tpm.tcti, stateDir, callTimeoutMs: 20_000 });
    await store.open();
    tb = await startTestBackend();
  });
  after(async () => {
    await tb?.close();
    await store?.close();
    await tpm?.dispose();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('issues a gw-cred whose tpk is the TPM key thumbprint; another gateway key is refused', async () => {
    const gw = await tb.addGateway('gw-tpm', { tpmPublicKeyPem: store.publicKeyPem() });
    // RFC 9421 §3.3.4: ecdsa-p256-sha256 signs SHA-256 of the base; the TPM signs the digest.
    const tpmSign = (base: Uint8Array) => store.sign(sha256(base), { format: 'raw' });
    const session = Ed25519Signer.generate('gw-tpm');
    const r = await tb.call('POST', '/v1/gateways/gw-tpm/sessions', {
      json: { sessionPublicKey: Buffer.from(session.publicKeyRaw).toString('base64url'), notAfter: Math.floor(Date.now() / 1000) + 600 },
      keyid: 'tpm:gw-tpm',
      alg: 'ecdsa-p256-sha256',
      sign: tpmSign,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const cred = parseGatewayCredential(Buffer.from((r.body as { credential: string }).credential, 'base64url'));
    assert.equal(Buffer.from(cred.payload.tpk).toString('hex'), Buffer.from(store.thumbprint()).toString('hex'));
    // The helper's software P-256 key registered nowhere: refused.
    const impostor = await tb.call('POST', '/v1/gateways/gw-tpm/sessions', {
      json: { sessionPublicKey: Buffer.from(session.publicKeyRaw).toString('base64url'), notAfter: Math.floor(Date.now() / 1000) + 600 },
      keyid: 'tpm:gw-tpm',
      alg: 'ecdsa-p256-sha256',
      sign: (b) => gw.tpm.sign(b),
    });
    assert.equal(impostor.status, 401);
  });
});
