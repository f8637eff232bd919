/**
 * The identity key's authValue, against a real swtpm: provisioning keeps it in a 0600 file in the
 * state directory, the key store signs with it, another local user who can reach the TPM but not
 * read the file cannot sign (GH_TPM_KEY_AUTH_FAILED) while the same user could sign with a key made
 * the old way (empty authValue), rotation changes the value (the old one is refused, the key and
 * its thumbprint stay), and the value never reaches a log.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import winston from 'winston';
import { TpmError } from '../../tpm/errors.js';
import { keyAuthPath, readKeyAuth, TPM_AUTH_FILE } from '../../tpm/key-auth-file.js';
import { provisionTpmKey } from '../../tpm/provision.js';
import { rotateKeyAuth } from '../../tpm/rotate-auth.js';
import { TpmKeyStore, type TpmKeyStoreOptions } from '../../tpm/tpm-key-store.js';
import { readableBuild, type ReadableBuild } from '../../testkit/readable-build.js';
import { Swtpm } from '../../testkit/swtpm.js';
import { provisionLegacyKey } from './tpm2-tools.js';

const run = promisify(execFile);

function capturingLogger(lines: string[]): winston.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] });
}

const DIGEST = new Uint8Array(createHash('sha256').update('gatehouse key auth').digest());

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<TpmError> {
  const err = await p.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TpmError, String(err));
  assert.equal(err.code, code, err.message);
  return err;
}

interface AttackResult {
  readAuthFile: string;
  ok: boolean;
  code?: string;
  message?: string;
}

describe('tpm key authValue: only the holder of the state directory signs, on swtpm', function () {
  this.timeout(120_000);
  let tpm: Swtpm;
  let dir: string;
  let attacker: ReadableBuild;
  const stores: TpmKeyStore[] = [];

  function store(opts: Partial<TpmKeyStoreOptions>): TpmKeyStore {
    const s = new TpmKeyStore({ tcti: tpm.tcti, rateLimit: { burst: 100, perSecond: 100 }, callTimeoutMs: 20_000, ...opts });
    stores.push(s);
    return s;
  }

  /**
   * Another local user (uid/gid 65534, no groups) who can reach the TPM (here: its TCP port) tries
   * to read the auth file and to sign with the key at `handle`, as `new TpmKeyStore().sign()`.
   */
  async function attack(handle: number, stateDir: string): Promise<AttackResult> {
    assert.equal(process.getuid?.(), 0, 'this suite runs as root: it drops to uid 65534 to play the other local user');
    const { stdout } = await run(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, attacker.file, tpm.tcti, String(handle), keyAuthPath(stateDir)],
      { cwd: attacker.dir, timeout: 60_000 },
    );
    return JSON.parse(stdout.trim().split('\n').pop() ?? '') as AttackResult;
  }

  before(async () => {
    tpm = await Swtpm.start();
    dir = await mkdtemp(join(tmpdir(), 'gh-tpm-auth-'));
    attacker = await readableBuild(
      `import { readFile } from 'node:fs/promises';
import { TpmKeyStore } from './tpm/tpm-key-store.ts';
const [tcti, handle, authFile] = process.argv.slice(2);
let readAuthFile = 'read';
try { await readFile(authFile); } catch (e) { readAuthFile = e.code; }
const s = new TpmKeyStore({ tcti, handle: Number(handle) });
try {
  await s.open();
  await s.sign(new Uint8Array(32).fill(7));
  console.log(JSON.stringify({ readAuthFile, ok: true }));
} catch (e) {
  console.log(JSON.stringify({ readAuthFile, ok: false, code: e.code, message: e.message }));
} finally {
  await s.close();
}`,
      ['koffi'],
    );
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  after(async () => {
    await attacker?.dispose();
    await tpm?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('provisions the key with an authValue in a 0600 file, signs with it, and never logs it', async () => {
    const stateDir = join(dir, 'sign');
    const lines: string[] = [];
    const logger = capturingLogger(lines);
    const r = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010001, logger });
    assert.equal(r.action, 'created');
    assert.equal(r.hasAuth, true);
    assert.equal(r.noDA, true);
    const st = await stat(keyAuthPath(stateDir));
    assert.equal(st.mode & 0o777, 0o600);
    const saved = await readKeyAuth(stateDir);
    assert.ok(saved);
    assert.equal(saved.auth.length, 32);
    assert.equal(saved.next, undefined);

    const s = store({ stateDir, handle: 0x81010001, logger });
    await s.open();
    assert.equal(s.hasAuth(), true);
    const sig = await s.sign(DIGEST, { format: 'raw' });
    assert.equal(sig.length, 64, 'the key store verifies every TPM signature before returning it');
    assert.deepEqual(s.thumbprint(), r.thumbprint);
    const hexAuth = Buffer.from(saved.auth).toString('hex');
    const all = lines.join('');
    assert.ok(lines.length > 0);
    assert.ok(!all.includes(hexAuth) && !all.includes(Buffer.from(saved.auth).toString('base64')), 'the authValue appeared in a log line');
  });

  it('another local user who reaches the TPM but cannot read the auth file cannot sign (GH_TPM_KEY_AUTH_FAILED); with a key made the old way, the same user could', async () => {
    const stateDir = join(dir, 'attack');
    await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010002 });
    const refused = await attack(0x81010002, stateDir);
    assert.equal(refused.readAuthFile, 'EACCES');
    assert.equal(refused.ok, false, 'the other user signed with the gateway key');
    assert.equal(refused.code, 'GH_TPM_KEY_AUTH_FAILED', refused.message);

    // Before: the key had an empty authValue, so anyone who could reach the TPM signed with it.
    const legacyDir = join(dir, 'attack-legacy');
    await provisionLegacyKey(tpm, { handle: 0x81010003, stateDir: legacyDir, workDir: dir });
    const before = await attack(0x81010003, legacyDir);
    assert.equal(before.ok, true, `a key without authValue: ${before.code ?? ''} ${before.message ?? ''}`);

    // The owner still signs with the first key, and the failed attempts locked nothing (noDA).
    const s = store({ stateDir, handle: 0x81010002 });
    await s.open();
    assert.equal((await s.sign(DIGEST)).length, 64);
  });

  it('a wrong authValue in the same process is GH_TPM_KEY_AUTH_FAILED with a message that does not contain it', async () => {
    const stateDir = join(dir, 'wrong');
    await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010004 });
    const wrong = new Uint8Array(32).fill(0x5a);
    const s = store({ handle: 0x81010004, authValue: wrong });
    await s.open();
    const err = await rejectsWithCode(s.sign(DIGEST), 'GH_TPM_KEY_AUTH_FAILED');
    assert.ok(!err.message.includes('5a5a5a5a'));
  });

  it('rotate-auth changes the authValue atomically: the old one is refused, the new one signs, the key stays', async () => {
    const stateDir = join(dir, 'rotate');
    const p = await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010005 });
    const before = await readKeyAuth(stateDir);
    assert.ok(before);
    const lines: string[] = [];
    const rot = await rotateKeyAuth({ tcti: tpm.tcti, stateDir, handle: 0x81010005, logger: capturingLogger(lines) });
    assert.deepEqual(rot.thumbprint, p.thumbprint);
    const after = await readKeyAuth(stateDir);
    assert.ok(after);
    assert.notDeepEqual(after.auth, before.auth);
    assert.equal(after.next, undefined);
    assert.equal((await stat(keyAuthPath(stateDir))).mode & 0o777, 0o600);
    // Atomic writes leave no temporaries behind; only the record and the auth file are there.
    assert.deepEqual((await readdir(stateDir)).sort(), [TPM_AUTH_FILE, 'tpm-key.json'].sort());
    assert.ok(!lines.join('').includes(Buffer.from(after.auth).toString('hex')));
    assert.ok(!lines.join('').includes(Buffer.from(before.auth).toString('hex')));

    const old = store({ handle: 0x81010005, authValue: before.auth });
    await old.open();
    await rejectsWithCode(old.sign(DIGEST), 'GH_TPM_KEY_AUTH_FAILED');

    const current = store({ stateDir, handle: 0x81010005 });
    await current.open();
    assert.deepEqual(current.thumbprint(), p.thumbprint);
    assert.equal((await current.sign(DIGEST)).length, 64);

    const { stdout } = await run('tpm2_getcap', ['handles-transient'], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, timeout: 20_000 });
    assert.equal(stdout.trim(), '', 'a transient object was left in the TPM');
  });

  it('rotate-auth refuses a key without an authValue with GH_TPM_NO_KEY_AUTH, naming provision --force', async () => {
    const stateDir = join(dir, 'rotate-legacy');
    await provisionLegacyKey(tpm, { handle: 0x81010006, stateDir, workDir: dir });
    const err = await rejectsWithCode(rotateKeyAuth({ tcti: tpm.tcti, stateDir, handle: 0x81010006 }), 'GH_TPM_NO_KEY_AUTH');
    assert.match(err.message, /gatehouse tpm provision --force/);
  });

  it('refuses an auth file that group or others may read', async () => {
    const stateDir = join(dir, 'loose');
    await provisionTpmKey({ tcti: tpm.tcti, stateDir, handle: 0x81010007 });
    await chmod(keyAuthPath(stateDir), 0o640);
    const s = store({ stateDir, handle: 0x81010007 });
    const err = await rejectsWithCode(s.open(), 'GH_TPM_STATE');
    assert.match(err.message, /readable by others/);
    assert.ok(!err.message.includes((JSON.parse(await readFile(keyAuthPath(stateDir), 'utf8')) as { auth: string }).auth));
  });
});
