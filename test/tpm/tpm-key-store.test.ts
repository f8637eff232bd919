/**
 * The TPM key store against a real swtpm through libtss2 (no mocks): provisioning, signatures
 * checked by node:crypto and the openssl CLI, reopen, wrong/occupied handles, restart healing,
 * and 1,000 signatures without leaking TPM objects.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { COSE_ALG_ES256 } from '../../protocol/types.js';
import { TpmError } from '../../tpm/errors.js';
import { provisionTpmKey } from '../../tpm/provision.js';
import { TPM_STATE_FILE } from '../../tpm/state-file.js';
import { TpmKeyStore, type TpmKeyStoreOptions } from '../../tpm/tpm-key-store.js';
import { Swtpm } from '../../testkit/swtpm.js';
import winston from 'winston';
import { Writable } from 'node:stream';

/** A real winston logger whose lines land in `lines` (to assert what the store reported). */
function capturingLogger(lines: string[]): winston.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return winston.createLogger({ level: 'debug', transports: [new winston.transports.Stream({ stream: sink })] });
}

const run = promisify(execFile);
const FAST = { burst: 5000, perSecond: 5000 };

function spkiKey(spki: Uint8Array) {
  return createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<TpmError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TpmError, `expected a TpmError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

/** Transient objects the TPM holds right now (tpm2-tools, on its own connection). */
async function transientHandles(tpm: Swtpm): Promise<string> {
  const { stdout } = await run('tpm2_getcap', ['handles-transient'], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, timeout: 20_000 });
  return stdout.trim();
}

describe('tpm/TpmKeyStore on swtpm', function () {
  this.timeout(120_000);
  let tpm: Swtpm;
  let dir: string;
  let stateDir: string;
  const stores: TpmKeyStore[] = [];

  function store(opts: Partial<TpmKeyStoreOptions> = {}): TpmKeyStore {
    const s = new TpmKeyStore({ tcti: tpm.tcti, stateDir, rateLimit: FAST, callTimeoutMs: 20_000, ...opts });
    stores.push(s);
    return s;
  }

  before(async () => {
    tpm = await Swtpm.start();
    dir = await mkdtemp(join(tmpdir(), 'gh-tpm-test-'));
    stateDir = join(dir, 'state');
    // Every test starts from a provisioned key at the default handle, recorded in stateDir.
    await provisionTpmKey({ tcti: tpm.tcti, stateDir });
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  after(async () => {
    await tpm?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('provisions a P-256 key, records its thumbprint (0600) and is idempotent', async () => {
    const ownState = join(dir, 'provision-state');
    const r = await provisionTpmKey({ tcti: tpm.tcti, stateDir: ownState, handle: 0x81010002 });
    assert.equal(r.action, 'created');
    assert.equal(r.handle, 0x81010002);
    const pub = spkiKey(r.spkiDer);
    assert.equal(pub.asymmetricKeyType, 'ec');
    assert.equal(pub.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.deepEqual(r.thumbprint, new Uint8Array(createHash('sha256').update(r.spkiDer).digest()));

    const recordPath = join(ownState, TPM_STATE_FILE);
    assert.equal((await stat(recordPath)).mode & 0o777, 0o600);
    const record = JSON.parse(await readFile(recordPath, 'utf8')) as { handle: string; thumbprint: string };
    assert.equal(record.handle, '0x81010002');
    assert.equal(record.thumbprint, Buffer.from(r.thumbprint).toString('hex'));

    const again = await provisionTpmKey({ tcti: tpm.tcti, stateDir: ownState, handle: 0x81010002 });
    assert.equal(again.action, 'unchanged');
    assert.deepEqual(again.spkiDer, r.spkiDer);
    assert.equal(await transientHandles(tpm), '', 'provisioning flushed its transient primary');
  });

  it('signs 100 digests that node:crypto verifies, and one that openssl verifies', async () => {
    const ks = store();
    await ks.open();
    assert.equal(ks.kind, 'tpm');
    const pub = spkiKey(ks.publicKeySpkiDer());
    for (let i = 0; i < 100; i++) {
      const msg = randomBytes(1 + (i % 64));
      const sig = await ks.sign(new Uint8Array(createHash('sha256').update(msg).digest()));
      assert.equal(sig.length, 64);
      assert.ok(verify('sha256', msg, { key: pub, dsaEncoding: 'ieee-p1363' }, sig), `signature ${i} verifies`);
      const other = Buffer.concat([msg, Buffer.from([1])]);
      assert.ok(!verify('sha256', other, { key: pub, dsaEncoding: 'ieee-p1363' }, sig), `signature ${i} binds its message`);
    }

    const msg = Buffer.from('gatehouse openssl check');
    const der = await ks.sign(new Uint8Array(createHash('sha256').update(msg).digest()), { format: 'der' });
    assert.equal(der[0], 0x30);
    await writeFile(join(dir, 'msg'), msg);
    await writeFile(join(dir, 'sig.der'), der);
    await writeFile(join(dir, 'pub.pem'), ks.publicKeyPem());
    const { stdout } = await run('openssl', ['dgst', '-sha256', '-verify', join(dir, 'pub.pem'), '-signature', join(dir, 'sig.der'), join(dir, 'msg')]);
    assert.match(stdout, /Verified OK/);
    await writeFile(join(dir, 'msg'), 'tampered');
    await assert.rejects(run('openssl', ['dgst', '-sha256', '-verify', join(dir, 'pub.pem'), '-signature', join(dir, 'sig.der'), join(dir, 'msg')]));
  });

  it('gives an ES256 protocol Signer (SHA-256 of toBeSigned, raw r||s)', async () => {
    const ks = store();
    await ks.open();
    const signer = ks.signer('tpm:gw-1');
    assert.equal(signer.alg, COSE_ALG_ES256);
    assert.equal(signer.kid, 'tpm:gw-1');
    const tbs = Buffer.from('Signature1 toBeSigned bytes');
    const sig = await signer.sign(tbs);
    assert.ok(verify('sha256', tbs, { key: spkiKey(ks.publicKeySpkiDer()), dsaEncoding: 'ieee-p1363' }, sig));
  });

  it('sees the same public key after close and reopen', async () => {
    const a = store();
    await a.open();
    const pem = a.publicKeyPem();
    const thumb = a.thumbprint();
    await a.close();
    await assert.rejects(a.sign(new Uint8Array(32)), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_CLOSED');
    const b = store();
    await b.open();
    assert.equal(b.publicKeyPem(), pem);
    assert.deepEqual(b.thumbprint(), thumb);
  });

  it('shares one opening between concurrent open() calls', async () => {
    const ks = store();
    await Promise.all([ks.open(), ks.open(), ks.open()]);
    const sig = await ks.sign(new Uint8Array(createHash('sha256').update('x').digest()));
    assert.ok(verify('sha256', Buffer.from('x'), { key: spkiKey(ks.publicKeySpkiDer()), dsaEncoding: 'ieee-p1363' }, sig));
  });

  it('rejects digests that are not 32 bytes', async () => {
    const ks = store();
    await ks.open();
    await rejectsWithCode(ks.sign(new Uint8Array(31)), 'GH_TPM_BAD_INPUT');
    await rejectsWithCode(ks.sign(new Uint8Array(48)), 'GH_TPM_BAD_INPUT');
  });

  it('reports a handle with no key as GH_TPM_KEY_NOT_FOUND', async () => {
    const err = await rejectsWithCode(store({ handle: 0x81010077, stateDir: undefined }).open(), 'GH_TPM_KEY_NOT_FOUND');
    assert.equal(err.rc & 0xbf, 0x8b, 'TPM_RC_HANDLE');
    assert.match(err.message, /0x81010077/);
  });

  it('refuses a handle outside the owner persistent range', () => {
    assert.throws(() => new TpmKeyStore({ tcti: tpm.tcti, handle: 0x81800000 }), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_BAD_CONFIG');
    assert.throws(() => new TpmKeyStore({ tcti: tpm.tcti, handle: 0x80000001 }), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_BAD_CONFIG');
  });

  it('refuses to overwrite an unrecorded key at an occupied handle, and replaces it with force', async () => {
    const otherState = join(dir, 'other-state');
    const err = await rejectsWithCode(provisionTpmKey({ tcti: tpm.tcti, stateDir: otherState }), 'GH_TPM_HANDLE_OCCUPIED');
    assert.match(err.message, /--force/);

    const before = store();
    await before.open();
    const oldThumb = before.thumbprint();
    await before.close();

    // Another state directory with --force: a new key replaces the old one.
    const forced = await provisionTpmKey({ tcti: tpm.tcti, stateDir: otherState, force: true });
    assert.equal(forced.action, 'replaced');
    assert.notDeepEqual(forced.thumbprint, oldThumb);

    // The first state directory now records a key that is gone: open refuses it.
    await rejectsWithCode(store().open(), 'GH_TPM_KEY_MISMATCH');
    const ok = store({ stateDir: otherState });
    await ok.open();
    assert.deepEqual(ok.thumbprint(), forced.thumbprint);
    await ok.close();

    // Put a key recorded by the main state directory back, for the tests below.
    const back = await provisionTpmKey({ tcti: tpm.tcti, stateDir, force: true });
    assert.equal(back.action, 'replaced');
    assert.deepEqual(back.previous?.thumbprint, Buffer.from(oldThumb).toString('hex'));
    assert.equal(await transientHandles(tpm), '');
  });

  it('reports GH_TPM_HANDLE_OCCUPIED when the handle holds a non-Gatehouse key', async () => {
    // An RSA key made by tpm2-tools, persisted at a second handle.
    const env = { ...process.env, TPM2TOOLS_TCTI: tpm.tcti };
    await run('tpm2_createprimary', ['-C', 'o', '-G', 'rsa2048', '-c', join(dir, 'rsa.ctx')], { env, timeout: 60_000 });
    await run('tpm2_evictcontrol', ['-C', 'o', '-c', join(dir, 'rsa.ctx'), '0x81010010'], { env, timeout: 20_000 });
    await run('tpm2_flushcontext', ['-t'], { env, timeout: 20_000 });
    const err = await rejectsWithCode(provisionTpmKey({ tcti: tpm.tcti, stateDir: join(dir, 's3'), handle: 0x81010010 }), 'GH_TPM_HANDLE_OCCUPIED');
    assert.match(err.message, /not an ECC key/);
    await rejectsWithCode(store({ handle: 0x81010010, stateDir: undefined }).open(), 'GH_TPM_KEY_ATTRIBUTES');
  });

  it('refuses to open without a state record (GH_TPM_NOT_PROVISIONED)', async () => {
    await rejectsWithCode(store({ stateDir: join(dir, 'empty-state') }).open(), 'GH_TPM_NOT_PROVISIONED');
  });

  it('reconnects after swtpm is killed and restarted, and after a restart that needs TPM2_Startup', async () => {
    const lines: string[] = [];
    const ks = store({ logger: capturingLogger(lines) });
    await ks.open();
    const pub = spkiKey(ks.publicKeySpkiDer());
    const digest = new Uint8Array(createHash('sha256').update('before').digest());
    assert.ok(verify('sha256', Buffer.from('before'), { key: pub, dsaEncoding: 'ieee-p1363' }, await ks.sign(digest)));

    await tpm.kill();
    await tpm.restart();
    const sig = await ks.sign(new Uint8Array(createHash('sha256').update('after').digest()));
    assert.ok(verify('sha256', Buffer.from('after'), { key: pub, dsaEncoding: 'ieee-p1363' }, sig));

    // While the TPM is down, a call fails with a clear code instead of hanging...
    await tpm.kill();
    await rejectsWithCode(ks.sign(digest), 'GH_TPM_NO_DEVICE');
    await new Promise((r) => setImmediate(r));
    assert.ok(lines.some((l) => l.includes('TPM context reset')), 'the broken context was finalized');
    // ...and once it is back (this time waiting for TPM2_Startup), the next call heals.
    await tpm.restart({ startupClear: false });
    const sig2 = await ks.sign(new Uint8Array(createHash('sha256').update('startup').digest()));
    assert.ok(verify('sha256', Buffer.from('startup'), { key: pub, dsaEncoding: 'ieee-p1363' }, sig2));
    await new Promise((r) => setImmediate(r));
    assert.ok(lines.some((l) => l.includes('TPM2_Startup')), 'TPM_RC_INITIALIZE was answered with Startup(CLEAR)');
  });

  it('times out a call to a hung TPM and recovers once it answers again', async () => {
    const lines: string[] = [];
    const ks = store({ callTimeoutMs: 1_000, logger: capturingLogger(lines) });
    await ks.open();
    const pub = spkiKey(ks.publicKeySpkiDer());
    tpm.pause();
    try {
      await rejectsWithCode(ks.sign(new Uint8Array(32).fill(1)), 'GH_TPM_TIMEOUT');
    } finally {
      tpm.resume();
    }
    const sig = await ks.sign(new Uint8Array(createHash('sha256').update('recovered').digest()));
    assert.ok(verify('sha256', Buffer.from('recovered'), { key: pub, dsaEncoding: 'ieee-p1363' }, sig));
    await new Promise((r) => setImmediate(r));
    assert.ok(lines.some((l) => l.includes('TPM context reset') && l.includes('timed out')), 'the suspect context was rebuilt');
  });

  it('serialises concurrent signers on one context', async () => {
    const ks = store();
    await ks.open();
    const pub = spkiKey(ks.publicKeySpkiDer());
    const msgs = Array.from({ length: 24 }, (_, i) => Buffer.from(`concurrent ${i}`));
    const sigs = await Promise.all(msgs.map((m) => ks.sign(new Uint8Array(createHash('sha256').update(m).digest()))));
    sigs.forEach((sig, i) => assert.ok(verify('sha256', msgs[i] ?? Buffer.alloc(0), { key: pub, dsaEncoding: 'ieee-p1363' }, sig), `signature ${i}`));
  });

  it('provisions a new key, and says which record it replaces, when the recorded key is gone', async () => {
    const ownState = join(dir, 'gone-state');
    const first = await provisionTpmKey({ tcti: tpm.tcti, stateDir: ownState, handle: 0x81010060 });
    // The key disappears from the TPM (an operator's tpm2_evictcontrol, or a TPM clear of that handle).
    await run('tpm2_evictcontrol', ['-C', 'o', '-c', '0x81010060'], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, timeout: 20_000 });
    await rejectsWithCode(store({ stateDir: ownState, handle: 0x81010060 }).open(), 'GH_TPM_KEY_NOT_FOUND');
    const second = await provisionTpmKey({ tcti: tpm.tcti, stateDir: ownState, handle: 0x81010060 });
    assert.equal(second.action, 'created');
    assert.notDeepEqual(second.thumbprint, first.thumbprint);
    assert.equal(second.previous?.thumbprint, Buffer.from(first.thumbprint).toString('hex'));
    const ks = store({ stateDir: ownState, handle: 0x81010060 });
    await ks.open();
    assert.deepEqual(ks.thumbprint(), second.thumbprint);
  });

  it('rate-limits signing (token bucket)', async () => {
    let now = 1_000_000;
    const ks = store({ rateLimit: { burst: 2, perSecond: 1 }, clock: { now: () => now } });
    await ks.open();
    const d = new Uint8Array(32).fill(7);
    await ks.sign(d);
    await ks.sign(d);
    const err = await rejectsWithCode(ks.sign(d), 'GH_TPM_RATE_LIMITED');
    assert.match(err.message, /retry in 1000 ms/);
    now += 1000;
    await ks.sign(d);
  });

  it('signs 1,000 times without leaking TPM objects (no 0x902)', async function () {
    this.timeout(300_000);
    const ks = store();
    await ks.open();
    const d = new Uint8Array(createHash('sha256').update('leak check').digest());
    for (let i = 0; i < 1000; i++) {
      const sig = await ks.sign(d);
      assert.equal(sig.length, 64);
    }
    await ks.close();
    assert.equal(await transientHandles(tpm), '', 'no transient objects left in the TPM');
  });
});
