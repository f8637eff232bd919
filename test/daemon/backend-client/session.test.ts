import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Ed25519Signer, parseGatewayCredential, verifySign1, bytesEqual } from '../../../protocol/index.js';
import { provisionTpmKey } from '../../../tpm/provision.js';
import { TpmKeyStore } from '../../../tpm/tpm-key-store.js';
import { Swtpm } from '../../../testkit/swtpm.js';
import { BackendEnv, GW } from '../../../testkit/backend-env.js';
import { checkRequestSignature } from '../../../testkit/independent-check.js';
import { ManualClock } from '../../../testkit/manual-clock.js';

const HOUR_MS = 3600_000;

describe('daemon/backend-client/session against the reference backend over HTTPS', function () {
  this.timeout(60000);
  const pki = BackendEnv.suitePki('gh-bs-pki-');
  let env: BackendEnv;
  let clock: ManualClock;

  beforeEach(async () => {
    // One injected clock for the gateway and the backend, so `created` stays in the window.
    clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
    env = await BackendEnv.create({ pki: pki(), clock });
  });
  afterEach(async () => env.dispose());

  it('obtains a credential for an in-memory key with one TPM signature and records it (0600)', async () => {
    const session = env.session({ clock });
    assert.equal(session.current(), undefined);
    assert.equal(await session.start(), true);
    const s = session.current();
    assert.ok(s);
    const cred = parseGatewayCredential(s.credential);
    assert.ok(verifySign1(cred, env.backend.publicKeyRaw));
    assert.equal(cred.payload.gw, GW);
    assert.ok(bytesEqual(cred.payload.spk, (s.signer as Ed25519Signer).publicKeyRaw));
    assert.equal(s.notAfter, Math.floor(clock.now() / 1000) + 86400);
    assert.equal(s.signer.kid, GW);
    assert.equal(session.stats().tpmSignatures, 1);
    const rec = await session.persisted();
    assert.equal(rec?.notAfter, s.notAfter);
    assert.equal((await stat(join(env.dir, 'state', 'session.json'))).mode & 0o777, 0o600);
    // the next timer is the renewal, at half-life
    assert.equal(clock.nextAt(), clock.now() + 12 * HOUR_MS);
  });

  it('renews at half-life; the old key keeps working; the TPM signs once per renewal', async () => {
    const session = env.session({ clock });
    await session.start();
    const first = session.current()!;
    const renewed = new Promise<void>((resolve) => session.onRenewed(() => resolve()));
    clock.advance(12 * HOUR_MS);
    await renewed;
    const second = session.current()!;
    assert.notEqual(second.signer, first.signer);
    assert.equal(session.stats().tpmSignatures, 2);
    assert.equal(session.stats().renewals, 2);
    await env.addDevice('d1');
    // protocol-v1: S keeps the two newest session keys, so requests signed by the old one pass.
    const oldClient = env.client({ current: () => first }, { clock });
    const oldResult = oldClient.verify(await env.hello('d1'));
    clock.advance(10); // the batch timer runs on the injected clock
    assert.ok((await oldResult).ok);
    const client = env.client(session, { clock });
    const r = client.verify(await env.hello('d1'));
    clock.advance(10);
    assert.ok((await r).ok);
    const sessionReqs = env.requests.filter((q) => q.path.endsWith('/sessions'));
    assert.equal(sessionReqs.length, 2);
  });

  it('retries a failed renewal with jittered backoff while the old session is valid; none after expiry; recovers', async () => {
    const session = env.session({ clock, random: () => 1, retryBaseMs: 1000, retryMaxMs: 60_000 });
    await session.start();
    const first = session.current()!;
    await env.stopBackend();
    assert.equal(await session.renewNow(), false);
    assert.equal(session.stats().renewalFailures, 1);
    assert.equal(clock.nextAt(), clock.now() + 1000, 'first retry after the base delay');
    assert.equal(session.current()?.signer, first.signer, 'old session still served');
    assert.equal(await session.renewNow(), false);
    assert.equal(clock.nextAt(), clock.now() + 2000, 'backoff doubles');
    clock.advance(24 * HOUR_MS); // fires the armed retry, which fails too
    assert.equal(await session.renewNow(), false, 'joins the retry in flight');
    assert.equal(session.current(), undefined, 'an expired session is never served');
    await env.startBackend();
    assert.equal(await session.renewNow(), true);
    assert.ok(session.current());
  });

  it('refuses a credential that does not verify under the pinned backend key', async () => {
    const session = env.session({ clock, backendKeys: new Map([[env.backend.kid, Ed25519Signer.generate('x').publicKeyRaw]]) });
    assert.equal(await session.start(), false);
    assert.equal(session.current(), undefined);
    assert.equal(session.stats().renewalFailures, 1);
  });

  it('is authorised by a real TPM key (swtpm), the request verifying independently under its public key', async function () {
    this.timeout(120000);
    const tpm = await Swtpm.start();
    const stateDir = join(env.dir, 'tpm-state');
    try {
      await provisionTpmKey({ tcti: tpm.tcti, stateDir });
      const store = new TpmKeyStore({ tcti: tpm.tcti, stateDir });
      await store.open();
      try {
        await env.backend.store.addGateway({ id: 'gw-tpm', tpmPublicKeyPem: store.publicKeyPem() });
        const session = env.session({
          gw: 'gw-tpm',
          clock,
          tpmSigner: store.signer('tpm:gw-tpm'),
          tpmPublicKeySpki: store.publicKeySpkiDer(),
          stateDir: join(env.dir, 'state-tpm'),
        });
        assert.equal(await session.start(), true);
        const req = env.requests.find((q) => q.path === '/v1/gateways/gw-tpm/sessions');
        assert.ok(req);
        const checked = checkRequestSignature(req, env.url, createPublicKey(store.publicKeyPem()));
        assert.equal(checked.keyid, 'tpm:gw-tpm');
        assert.equal(checked.alg, 'ecdsa-p256-sha256');
      } finally {
        await store.close();
      }
    } finally {
      await tpm.dispose();
    }
  });
});
