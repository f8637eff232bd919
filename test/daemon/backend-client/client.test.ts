import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import winston from 'winston';
import type { SessionManager } from '../../../daemon/backend-client/session.js';
import type { VerifyResult } from '../../../daemon/pipeline/types.js';
import { Ed25519Signer, ed25519PublicKeyFromRaw, verifySign1, parseLease } from '../../../protocol/index.js';
import { BackendEnv, GW, ShiftedClock } from '../../../testkit/backend-env.js';
import { checkRequestSignature } from '../../../testkit/independent-check.js';

function reasonOf(r: VerifyResult): string {
  return r.ok ? 'ok' : r.reason;
}

describe('daemon/backend-client/client against the reference backend over HTTPS', function () {
  this.timeout(60000);
  let env: BackendEnv;
  let session: SessionManager;
  const pki = BackendEnv.suitePki('gh-bc-pki-');


  beforeEach(async () => {
    env = await BackendEnv.create({ pki: pki() });
    session = env.session();
    assert.equal(await session.start(), true);
  });
  afterEach(async () => env.dispose());

  it('verifies a hello, returns a lease under pk_S, and signs the request as protocol-v1 says (checked independently)', async () => {
    await env.addDevice('sensor-1');
    const client = env.client(session);
    await client.start();
    const before = env.requests.length;
    const r = await client.verify(await env.hello('sensor-1'));
    assert.ok(r.ok, reasonOf(r));
    assert.equal(r.offline, false);
    assert.equal(r.dev, 'sensor-1');
    assert.equal(r.lease.gw, GW);
    assert.ok(verifySign1(parseLease(r.leaseBytes), env.backend.publicKeyRaw));

    const sent = env.requests.slice(before).filter((q) => q.path === '/v1/verify');
    assert.equal(sent.length, 1);
    const req = sent[0]!;
    const spk = (session.current()?.signer as Ed25519Signer).publicKeyRaw;
    const checked = checkRequestSignature(req, env.url, ed25519PublicKeyFromRaw(spk));
    assert.equal(checked.keyid, `session:${GW}`);
    assert.equal(checked.alg, 'ed25519');
    assert.ok(Math.abs(checked.created - Date.now() / 1000) < 5);
    const body = JSON.parse(new TextDecoder().decode(req.body)) as { hellos: { id: string; transport: string; hello: string }[] };
    assert.equal(body.hellos.length, 1);
    assert.equal(body.hellos[0]?.transport, 'mqtt');

    // the TPM-signed session request verifies too, under the gateway's TPM public key
    const sessionReq = env.requests.find((q) => q.path === `/v1/gateways/${GW}/sessions`);
    assert.ok(sessionReq);
    const tpm = checkRequestSignature(sessionReq, env.url, createPublicKey(env.keyStore.publicKeyPem()));
    assert.equal(tpm.keyid, `tpm:${GW}`);
    assert.equal(tpm.alg, 'ecdsa-p256-sha256');
  });

  it('gives each device-level refusal its reason code end to end', async () => {
    await env.addDevice('good');
    await env.addDevice('elsewhere', ['gw-other']);
    await env.addDevice('to-revoke');
    await env.backend.store.revokeDevice('to-revoke');
    const client = env.client(session);
    await client.start();
    const [unknown, revoked, notHere, forged] = await Promise.all([
      client.verify(await env.hello('nobody')),
      client.verify(await env.hello('to-revoke')),
      client.verify(await env.hello('elsewhere')),
      client.verify(await env.hello('good', Ed25519Signer.generate('good'))),
    ]);
    assert.equal(reasonOf(unknown), 'unknown-device');
    assert.equal(reasonOf(revoked), 'revoked');
    assert.equal(reasonOf(notHere), 'not-allowed-here');
    assert.equal(reasonOf(forged), 'bad-signature');
  });

  it('gives request-level refusals their reason codes: replayed nonce, stale created, wrong key, revoked gateway', async () => {
    await env.addDevice('d1');
    // replayed nonce: a client whose nonce source repeats
    const replaying = env.client(session, { nonce: () => 'always-the-same-nonce' });
    assert.ok((await replaying.verify(await env.hello('d1'))).ok);
    const replay = await replaying.verify(await env.hello('d1'));
    assert.equal(reasonOf(replay), 'bad-signature');
    assert.equal(replaying.stats().errors.client, 1);

    // stale created: the client's clock is 10 minutes behind
    const late = new ShiftedClock();
    late.offsetMs = -600_000;
    const stale = env.client(session, { clock: late });
    assert.equal(reasonOf(await stale.verify(await env.hello('d1'))), 'bad-signature');

    // wrong key: a session key the backend never certified
    const rogue = Ed25519Signer.generate(GW);
    const wrong = env.client({ current: () => ({ signer: rogue, credential: session.current()!.credential, notAfter: session.current()!.notAfter }) });
    assert.equal(reasonOf(await wrong.verify(await env.hello('d1'))), 'bad-signature');

    // revoked gateway
    await env.backend.store.revokeGateway(GW);
    const client = env.client(session);
    assert.equal(reasonOf(await client.verify(await env.hello('d1'))), 'revoked');
  });

  it('renews a session key the backend forgot, at most once per interval', async () => {
    await env.addDevice('d1');
    const client = env.client(session);
    assert.ok((await client.verify(await env.hello('d1'))).ok);
    // protocol-v1: S keeps the two newest session keys; two newer sessions push ours out.
    for (let i = 0; i < 2; i += 1) assert.equal(await env.session().start(), true);
    const renewed = new Promise<void>((resolve) => session.onRenewed(() => resolve()));
    assert.equal(reasonOf(await client.verify(await env.hello('d1'))), 'bad-signature');
    await renewed;
    assert.equal(session.stats().tpmSignatures, 2);
    assert.ok((await client.verify(await env.hello('d1'))).ok, 'the renewed key is accepted');
    // Push the new key out too: this time no renewal, the interval has not passed.
    for (let i = 0; i < 2; i += 1) assert.equal(await env.session().start(), true);
    assert.equal(reasonOf(await client.verify(await env.hello('d1'))), 'bad-signature');
    assert.equal(session.stats().tpmSignatures, 2);
  });

  it('coalesces concurrent hellos into few requests', async () => {
    const devs = Array.from({ length: 50 }, (_, i) => `dev-${i}`);
    for (const d of devs) await env.addDevice(d);
    const client = env.client(session);
    await client.start();
    const hellos = await Promise.all(devs.map((d) => env.hello(d)));
    const results = await Promise.all(hellos.map((h) => client.verify(h)));
    assert.ok(results.every((r) => r.ok));
    const s = client.stats();
    assert.ok(s.batches <= 2, `50 hellos in ${s.batches} requests`);
    assert.equal(s.hellos, 50);
    assert.equal(s.verdictsOk, 50);
  });

  it('answers busy beyond the queue bound and still answers everyone', async () => {
    for (let i = 0; i < 30; i += 1) await env.addDevice(`q-${i}`);
    const client = env.client(session, { maxQueue: 10, maxInFlight: 1 });
    const hellos = await Promise.all(Array.from({ length: 30 }, (_, i) => env.hello(`q-${i}`)));
    const results = await Promise.all(hellos.map((h) => client.verify(h)));
    assert.equal(results.filter((r) => reasonOf(r) === 'busy').length, 20);
    assert.equal(results.filter((r) => r.ok).length, 10);
    assert.equal(client.stats().busy, 20);
  });

  it('offline: leased devices are welcomed offline, others get backend-unavailable with retry; online again after a restart', async () => {
    await env.addDevice('leased');
    await env.addDevice('never-seen');
    const clock = new ShiftedClock();
    const client = env.client(session, { clock, breaker: { failureThreshold: 2, openMs: 10_000 }, maxAttempts: 2, retryBaseMs: 10, retryMaxMs: 20 });
    await client.start();
    assert.ok((await client.verify(await env.hello('leased'))).ok);
    await client.leases.flush();
    const leaseFile = join(env.dir, 'state', 'leases.db');
    assert.equal((await stat(leaseFile)).mode & 0o777, 0o600);
    const db = new Database(leaseFile, { readonly: true });
    assert.deepEqual(db.prepare('SELECT dev FROM leases').all(), [{ dev: 'leased' }]);
    db.close();

    await env.stopBackend();
    const offline = await client.verify(await env.hello('leased'));
    assert.ok(offline.ok && offline.offline, JSON.stringify(offline));
    const other = await client.verify(await env.hello('never-seen'));
    assert.equal(reasonOf(other), 'backend-unavailable');
    assert.ok(!other.ok && typeof other.retry === 'number' && other.retry > 0);
    // a hello that does not verify under the leased key is refused even offline
    const forged = await client.verify(await env.hello('leased', Ed25519Signer.generate('leased')));
    assert.equal(reasonOf(forged), 'bad-signature');
    const s = client.stats();
    assert.equal(s.offlineWelcomes, 1);
    assert.equal(s.circuit, 'open');
    assert.equal(s.circuitState, 2);
    assert.ok(s.errors.connect + s.errors.network >= 2, 'both attempts failed to reach it');
    assert.ok(s.errors['circuit-open'] >= 1, 'open circuit answered without a request');

    // Offline decisions survive a restart of the gateway: a new client loads the persisted lease.
    const reloaded = env.client(session, { clock, breaker: { failureThreshold: 1, openMs: 10_000 } });
    await reloaded.start();
    assert.equal(reloaded.stats().leases, 1);
    assert.ok((await reloaded.verify(await env.hello('leased'))).ok);

    await env.startBackend();
    clock.offsetMs += 10_000; // the breaker lets a probe through
    const back = await client.verify(await env.hello('never-seen'));
    assert.ok(back.ok && !back.offline, JSON.stringify(back));
    assert.equal(client.stats().circuit, 'closed');
  });

  it('revocation polls blocked: after maxFailedRevocationPolls failed polls in a row offline welcomes are refused (warned once), and allowed again after a poll succeeds', async () => {
    await env.addDevice('cached');
    const clock = new ShiftedClock();
    const logged: { level: string; message: string }[] = [];
    const logger = winston.createLogger({ level: 'debug', transports: [new winston.transports.Console({ silent: true })] });
    logger.on('data', (info: { level: string; message: string }) => logged.push({ level: info.level, message: info.message }));
    const client = env.client(session, { clock, logger, maxFailedRevocationPolls: 3, breaker: { failureThreshold: 2, openMs: 10_000 }, maxAttempts: 1 });
    await client.start();
    assert.ok((await client.verify(await env.hello('cached'))).ok, 'online welcome: the lease is cached');
    assert.deepEqual(await client.pollRevocations(), []);

    // The attacker blocks the backend: verify and revocation polls fail alike.
    await env.stopBackend();
    assert.equal(await client.pollRevocations(), undefined);
    assert.equal(await client.pollRevocations(), undefined);
    const before = await client.verify(await env.hello('cached'));
    assert.ok(before.ok && before.offline, 'two failed polls: the cached lease still welcomes offline');
    assert.equal(client.stats().revocationsStale, false);
    assert.equal(await client.pollRevocations(), undefined);
    let s = client.stats();
    assert.equal(s.revocationsStale, true);
    assert.equal(s.revocationFailedInARow, 3);
    const refused = await client.verify(await env.hello('cached'));
    assert.equal(reasonOf(refused), 'backend-unavailable', 'the same offline welcome is now refused');
    assert.ok(!refused.ok && typeof refused.retry === 'number' && refused.retry > 0);
    assert.equal(await client.pollRevocations(), undefined);
    s = client.stats();
    assert.equal(s.offlineRefusedStale, 1);
    assert.equal(s.offlineWelcomes, 1);
    const warned = logged.filter((l) => l.message.startsWith('revocation polls failing'));
    assert.equal(warned.length, 1, 'warned once when entering, not on every failed poll');
    assert.equal(warned[0]?.level, 'warn');

    // The backend is back: one successful poll restores offline acceptance.
    await env.startBackend();
    clock.offsetMs += 10_000; // the breaker lets a probe through
    assert.deepEqual(await client.pollRevocations(), []);
    s = client.stats();
    assert.equal(s.revocationsStale, false);
    assert.equal(s.revocationFailedInARow, 0);
    assert.equal(logged.filter((l) => l.message.startsWith('revocation polls succeed again') && l.level === 'info').length, 1);
    await env.stopBackend();
    const again = await client.verify(await env.hello('cached'));
    assert.ok(again.ok && again.offline, 'offline welcomes allowed again');
  });

  it('answers by the caller deadline when the backend does not answer in time', async () => {
    await env.addDevice('slow');
    const client = env.client(session, { verifyTimeoutMs: 1 , maxWaitMs: 50 });
    const r = await client.verify(await env.hello('slow'));
    // No lease yet, so the offline rule rejects; the point is that an answer came by the deadline.
    assert.equal(reasonOf(r), 'backend-unavailable');
    assert.equal(client.stats().errors.timeout, 1);
  });

  it('polls revocations: leases dropped, listeners told, cursor persisted', async () => {
    await env.addDevice('r1');
    await env.addDevice('r2');
    const client = env.client(session, { revocationPollMs: 20 });
    const told: string[][] = [];
    const revoked = new Promise<void>((resolve) => client.onRevoked((d) => {
      told.push(d);
      resolve();
    }));
    await client.start();
    assert.ok((await client.verify(await env.hello('r1'))).ok);
    assert.equal(client.stats().leases, 1);
    await env.backend.store.revokeDevice('r1');
    await revoked; // the poll timer found it
    assert.deepEqual(told[0], ['r1']);
    assert.equal(client.stats().leases, 0);
    const cursor = JSON.parse(await readFile(join(env.dir, 'state', 'revocations.json'), 'utf8')) as { cursor: number };
    assert.ok(cursor.cursor > 0);
    assert.equal(client.stats().revocationCursor, cursor.cursor);
    // nothing new: an explicit poll returns no devices and keeps the cursor
    assert.deepEqual(await client.pollRevocations(), []);
  });

  it('treats a backend with an untrusted certificate as unreachable (offline rule), never talking to it', async () => {
    await env.addDevice('t1');
    const other = env.pki.untrustedCa.certPem;
    const client = env.client(session, { http: env.http({ ca: other }), maxAttempts: 1 });
    const r = await client.verify(await env.hello('t1'));
    assert.equal(reasonOf(r), 'backend-unavailable');
    assert.equal(client.stats().errors.tls, 1);
  });
});
