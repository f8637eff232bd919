/**
 * The identity key and dictionary-attack lockout, against a real swtpm: provisioning sets noDA
 * (checked by our parser and by tpm2_readpublic), a noDA key signs while the TPM is in lockout,
 * and a key provisioned the old way (without noDA, made here by tpm2-tools) keeps working, with a
 * warning, until `provision --force` re-creates it.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { TpmError } from '../../tpm/errors.js';
import { provisionTpmKey } from '../../tpm/provision.js';
import { TpmKeyStore, type TpmKeyStoreOptions } from '../../tpm/tpm-key-store.js';
import { PROVISIONED_ATTRIBUTES, REQUIRED_ATTRIBUTES } from '../../tpm/tpm2-wire.js';
import { Swtpm } from '../../testkit/swtpm.js';
import { clearDaLockout, enterDaLockout, inDaLockout, provisionLegacyKey, readAttributes } from './tpm2-tools.js';

interface LogLine {
  level: string;
  message: string;
  [field: string]: unknown;
}

/** A real winston logger (JSON lines) whose entries land in `lines`. */
function capturingLogger(lines: LogLine[]): winston.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as LogLine);
      cb();
    },
  });
  return winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] });
}

function digestOf(text: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(text).digest());
}

function verifies(spki: Uint8Array, text: string, sig: Uint8Array): boolean {
  return verify('sha256', Buffer.from(text), { key: createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }), dsaEncoding: 'ieee-p1363' }, sig);
}

describe('tpm noDA: the identity key and dictionary-attack lockout, on swtpm', function () {
  this.timeout(120_000);
  let tpm: Swtpm;
  let dir: string;
  const stores: TpmKeyStore[] = [];

  function store(opts: Partial<TpmKeyStoreOptions>): TpmKeyStore {
    const s = new TpmKeyStore({ tcti: tpm.tcti, rateLimit: { burst: 100, perSecond: 100 }, callTimeoutMs: 20_000, ...opts });
    stores.push(s);
    return s;
  }

  before(async () => {
    tpm = await Swtpm.start();
    dir = await mkdtemp(join(tmpdir(), 'gh-tpm-noda-'));
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    if (await inDaLockout(tpm)) await clearDaLockout(tpm);
  });

  after(async () => {
    await tpm?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('provisions the key with noDA, as our parser and tpm2_readpublic both report, and opens it without a warning', async () => {
    const stateDir = join(dir, 'fresh');
    const r = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010001 });
    assert.equal(r.action, 'created');
    assert.equal(r.noDA, true);

    const tools = await readAttributes(tpm, 0x81010001);
    assert.equal(tools.raw, 0x00040472);
    assert.equal(tools.raw, PROVISIONED_ATTRIBUTES);
    assert.ok(tools.names.includes('noda'), tools.names.join('|'));

    const lines: LogLine[] = [];
    const ks = store({ stateDir, handle: 0x81010001, logger: capturingLogger(lines) });
    await ks.open();
    assert.equal(ks.noDA(), true);
    assert.deepEqual(
      lines.filter((l) => l.level === 'warn'),
      [],
      'no warning for a key with noDA',
    );
    assert.equal(lines.find((l) => l.message === 'TPM key opened')?.noDA, true);
  });

  it('keeps signing with a noDA key while the TPM is in lockout, where a key without noDA fails with GH_TPM_LOCKOUT', async () => {
    const fresh = join(dir, 'lockout-fresh');
    const legacyState = join(dir, 'lockout-legacy');
    await provisionTpmKey({ tcti: tpm.tcti, stateDir: fresh, handle: 0x81010002 });
    await provisionLegacyKey(tpm, { handle: 0x81010003, stateDir: legacyState, workDir: dir });
    const ks = store({ stateDir: fresh, handle: 0x81010002 });
    const legacy = store({ stateDir: legacyState, handle: 0x81010003 });
    await Promise.all([ks.open(), legacy.open()]);
    assert.ok(verifies(legacy.publicKeySpkiDer(), 'before', await legacy.sign(digestOf('before'))), 'the legacy key signs outside lockout');

    await enterDaLockout(tpm, dir);

    const sig = await ks.sign(digestOf('in lockout'));
    assert.ok(verifies(ks.publicKeySpkiDer(), 'in lockout', sig), 'the noDA key signs in lockout');
    await assert.rejects(legacy.sign(digestOf('in lockout')), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_LOCKOUT' && (e.rc & 0xfff) === 0x921);

    // Opening and provisioning (its self-test signature included) work in lockout too.
    const reopened = store({ stateDir: fresh, handle: 0x81010002 });
    await reopened.open();
    assert.ok(verifies(reopened.publicKeySpkiDer(), 'reopened', await reopened.sign(digestOf('reopened'))));
    const during = await provisionTpmKey({ tcti: tpm.tcti, stateDir: join(dir, 'provisioned-in-lockout'), handle: 0x81010004 });
    assert.equal(during.action, 'created');
    assert.equal(during.noDA, true);
    assert.ok(await inDaLockout(tpm), 'still in lockout: nothing above was a DA failure or a reset');
  });

  it('opens and signs with a key provisioned without noDA, and warns with the fix and its consequence', async () => {
    const stateDir = join(dir, 'legacy');
    const thumbprint = await provisionLegacyKey(tpm, { handle: 0x81010005, stateDir, workDir: dir });
    assert.equal((await readAttributes(tpm, 0x81010005)).raw, REQUIRED_ATTRIBUTES, 'made the old way: 0x00040072');

    const lines: LogLine[] = [];
    const ks = store({ stateDir, handle: 0x81010005, logger: capturingLogger(lines) });
    await ks.open();
    assert.equal(ks.noDA(), false);
    assert.equal(Buffer.from(ks.thumbprint()).toString('hex'), thumbprint, 'the recorded thumbprint still matches');
    assert.ok(verifies(ks.publicKeySpkiDer(), 'legacy', await ks.sign(digestOf('legacy'))));

    // Two warnings: this one, and that an old key has no authValue (test/tpm/key-auth.test.ts).
    const warnings = lines.filter((l) => l.level === 'warn' && /noDA/.test(l.message));
    assert.equal(warnings.length, 1, JSON.stringify(lines));
    assert.ok(lines.some((l) => l.level === 'warn' && /0x81010005 has no authorization value/.test(l.message)), JSON.stringify(lines));
    const w = warnings[0];
    assert.ok(w);
    assert.match(w.message, /0x81010005 was provisioned without the noDA attribute/);
    assert.match(w.message, /dictionary-attack lockout/);
    assert.match(w.message, /`gatehouse tpm provision --force`/);
    assert.match(w.message, /public key and thumbprint change/);
    assert.match(w.message, /backend's gateway registry/);
    assert.equal(w.fix, 'gatehouse tpm provision --force');
    assert.equal(w.thumbprint, thumbprint);
  });

  it('re-creates a recorded key without noDA only with --force, and says which record it replaced', async () => {
    const stateDir = join(dir, 'upgrade');
    const handle = 0x81010006;
    const old = await provisionLegacyKey(tpm, { handle, stateDir, workDir: dir });

    const kept = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle });
    assert.equal(kept.action, 'unchanged', 'without --force the working key stays');
    assert.equal(kept.noDA, false);
    assert.equal(Buffer.from(kept.thumbprint).toString('hex'), old);

    const forced = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle, force: true });
    assert.equal(forced.action, 'replaced');
    assert.equal(forced.noDA, true);
    assert.equal(forced.previous?.thumbprint, old);
    assert.notEqual(Buffer.from(forced.thumbprint).toString('hex'), old, 'a new key: the backend must learn it');
    assert.equal((await readAttributes(tpm, handle)).raw, PROVISIONED_ATTRIBUTES);

    const ks = store({ stateDir, handle });
    await ks.open();
    assert.deepEqual(ks.thumbprint(), forced.thumbprint, 'the record names the new key');
    assert.equal(ks.noDA(), true);

    // --force leaves a recorded key that already has noDA alone.
    const again = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle, force: true });
    assert.equal(again.action, 'unchanged');
    assert.deepEqual(again.thumbprint, forced.thumbprint);
  });
});
