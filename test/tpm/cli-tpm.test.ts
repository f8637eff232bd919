/**
 * `gatehouse tpm provision|show` against a real swtpm, checked against tpm2-tools'
 * own view of the key (tpm2_readpublic), plus the operator-facing error messages.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { run } from '../../daemon/cli/tpm.js';
import { captureIO } from '../../testkit/cli-io.js';
import { readableBuild } from '../../testkit/readable-build.js';
import { Swtpm } from '../../testkit/swtpm.js';
import { clearDaLockout, enterDaLockout, inDaLockout, provisionLegacyKey } from './tpm2-tools.js';

const exec = promisify(execFile);

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Captured> {
  const io = captureIO(env);
  const code = await run(args, io);
  return { code, stdout: io.out(), stderr: io.err() };
}

describe('daemon/cli/tpm (gatehouse tpm) on swtpm', function () {
  this.timeout(120_000);
  let tpm: Swtpm;
  let dir: string;
  let tools: NodeJS.ProcessEnv;

  before(async () => {
    tpm = await Swtpm.start();
    dir = await mkdtemp(join(tmpdir(), 'gh-tpm-cli-'));
    tools = { ...process.env, TPM2TOOLS_TCTI: tpm.tcti };
  });

  after(async () => {
    await tpm?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers --help for the group and each command, and exits 2 on usage errors', async () => {
    for (const args of [['--help'], ['provision', '--help'], ['show', '--help']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /^Usage: gatehouse tpm/);
    }
    assert.match((await cli(['provision', '--help'])).stdout, /--force/);
    assert.equal((await cli([])).code, 2);
    assert.equal((await cli(['frobnicate'])).code, 2);
    const bad = await cli(['show', '--bogus']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /bogus/);
    const badHandle = await cli(['show', '--handle', '0x01000000', '--tcti', tpm.tcti]);
    assert.equal(badHandle.code, 2);
    assert.match(badHandle.stderr, /owner range/);
  });

  it('provision then show print the key tpm2_readpublic reports', async () => {
    const stateDir = join(dir, 'state');
    const p = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', stateDir]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /TPM key created at 0x81010001/);

    const s = await cli(['show', '--handle', '0x81010001', '--state-dir', stateDir], { GATEHOUSE_TPM_TCTI: tpm.tcti });
    assert.equal(s.code, 0, s.stderr);
    const thumb = /thumbprint: ([0-9a-f]{64})/.exec(s.stdout)?.[1];
    const pem = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----\n/.exec(s.stdout)?.[0];
    assert.ok(thumb && pem, s.stdout);
    assert.ok(p.stdout.includes(thumb), 'provision and show print the same thumbprint');
    assert.match(s.stdout, /^noDA: yes$/m);
    assert.equal(s.stderr, '', 'no warning for a key with noDA');

    // tpm2-tools' view of the same handle: PEM and the raw point.
    const pemFile = join(dir, 'readpublic.pem');
    const { stdout: yaml } = await exec('tpm2_readpublic', ['-c', '0x81010001', '-f', 'pem', '-o', pemFile], { env: tools, timeout: 20_000 });
    assert.equal(pem, await readFile(pemFile, 'utf8'));
    const jwk = createPublicKey(pem).export({ format: 'jwk' });
    const x = /^x: ([0-9a-f]+)$/m.exec(yaml)?.[1];
    const y = /^y: ([0-9a-f]+)$/m.exec(yaml)?.[1];
    assert.equal(x, Buffer.from(jwk.x ?? '', 'base64url').toString('hex'));
    assert.equal(y, Buffer.from(jwk.y ?? '', 'base64url').toString('hex'));
    assert.match(yaml, /^\s+value: fixedtpm\|fixedparent\|sensitivedataorigin\|userwithauth\|noda\|sign$/m);
    assert.match(yaml, /^\s+raw: 0x40472$/m);

    const j = await cli(['show', '--json', '--tcti', tpm.tcti]);
    assert.equal(j.code, 0);
    assert.deepEqual(JSON.parse(j.stdout), { handle: '0x81010001', thumbprint: thumb, noDA: true, publicKeyPem: pem });

    const again = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', stateDir, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { action: string }).action, 'unchanged');
  });

  it('explains an occupied handle and points at --force', async () => {
    const r = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', join(dir, 'another')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /GH_TPM_HANDLE_OCCUPIED/);
    assert.match(r.stderr, /hint: .*--force/);
  });

  it('--force replaces the key; the old state directory then reports the mismatch, and re-provisioning notes the change', async () => {
    const first = join(dir, 'force-a');
    const second = join(dir, 'force-b');
    const handle = '0x81010070';
    assert.equal((await cli(['provision', '--tcti', tpm.tcti, '--state-dir', first, '--handle', handle])).code, 0);
    const forced = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', second, '--handle', handle, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /created \(the previous key was destroyed\)/);

    const mismatch = await cli(['show', '--tcti', tpm.tcti, '--handle', handle, '--state-dir', first]);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /GH_TPM_KEY_MISMATCH/);
    assert.match(mismatch.stderr, /hint: .*re-register/);

    const back = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', first, '--handle', handle, '--force']);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stderr, /note: this replaces the key recorded on .*register the new key with the backend/);
  });

  it('explains a handle with no key', async () => {
    const r = await cli(['show', '--tcti', tpm.tcti, '--handle', '0x81010042']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no key at persistent handle 0x81010042 \[GH_TPM_KEY_NOT_FOUND\]/);
    assert.match(r.stderr, /hint: .*gatehouse tpm provision/);
  });

  it('explains a missing TPM device', async () => {
    const r = await cli(['show', '--tcti', `device:${join(dir, 'no-such-tpmrm0')}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no TPM device at .*no-such-tpmrm0 \[GH_TPM_NO_DEVICE\]/);
    assert.match(r.stderr, /hint: .*\/dev\/tpmrm0/);
  });

  it("explains permission denied on the device and names the 'tss' group", async () => {
    // A device node the CLI's user may not open: root drops to nobody, anyone else gets mode 000.
    const node = join(dir, 'tpmrm0');
    await writeFile(node, '');
    await chmod(node, 0);
    await chmod(dir, 0o755);
    // The child runs as another user, who may not be able to enter the checkout (a 0700 home or
    // mktemp directory): it runs a bundle of the CLI from a world-readable temporary directory.
    const bundle = await readableBuild(
      `import { run } from './daemon/cli/tpm.ts';
process.exitCode = await run(['show', '--tcti', 'device:${node}'], { stdout: process.stdout, stderr: process.stderr, env: {} });`,
      ['koffi'],
    );
    try {
      const asRoot = process.getuid?.() === 0;
      const [cmd, args] = asRoot
        ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, bundle.file]]
        : [process.execPath, [bundle.file]];
      const r = await exec(cmd, args, { cwd: bundle.dir, timeout: 60_000 }).then(
        () => assert.fail('expected exit code 1'),
        (e: { code?: number; stderr?: string }) => e,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr ?? '', /permission denied on .*tpmrm0.*\[GH_TPM_PERMISSION_DENIED\]/);
      assert.match(r.stderr ?? '', /hint: .*'tss' group/);
    } finally {
      await bundle.dispose();
    }
  });

  it('explains an unreachable TPM simulator', async () => {
    const down = await Swtpm.start();
    const tcti = down.tcti;
    await down.dispose();
    const r = await cli(['show', '--tcti', tcti]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /GH_TPM_NO_DEVICE/);
  });

  it('shows a key without noDA with a warning, explains its DA lockout, and --force re-creates it so that it signs in lockout', async () => {
    const stateDir = join(dir, 'lockout-state');
    const handle = '0x81010050';
    const old = await provisionLegacyKey(tpm, { handle: 0x81010050, stateDir, workDir: dir });

    const s = await cli(['show', '--tcti', tpm.tcti, '--handle', handle, '--state-dir', stateDir]);
    assert.equal(s.code, 0, 'the old key still works: a warning, not a failure');
    assert.match(s.stdout, /^noDA: no$/m);
    assert.match(s.stderr, /^warning: the TPM key at 0x81010050 was provisioned without the noDA attribute/);
    assert.match(s.stderr, /`gatehouse tpm provision --force`.*public key and thumbprint change/);
    const j = await cli(['show', '--tcti', tpm.tcti, '--handle', handle, '--json']);
    assert.equal((JSON.parse(j.stdout) as { noDA: boolean; thumbprint: string }).noDA, false);

    await enterDaLockout(tpm, dir);
    try {
      // The recorded key stays without --force; its self-test signature meets the lockout.
      const r = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', stateDir, '--handle', handle]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /GH_TPM_LOCKOUT/);
      assert.match(r.stderr, /hint: .*lockout.*`gatehouse tpm provision --force` re-creates it with noDA/);

      const forced = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', stateDir, '--handle', handle, '--force']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /created \(the previous key was destroyed\)/);
      assert.match(forced.stdout, /^noDA: yes$/m);
      assert.ok(!forced.stdout.includes(old), 'a new thumbprint');
      assert.match(forced.stderr, new RegExp(`note: this replaces the key recorded on .*\\(thumbprint ${old}\\); register the new key with the backend`));

      const again = await cli(['provision', '--tcti', tpm.tcti, '--state-dir', stateDir, '--handle', handle, '--json']);
      assert.equal(again.code, 0, again.stderr);
      const { action, noDA } = JSON.parse(again.stdout) as { action: string; noDA: boolean };
      assert.equal(action, 'unchanged', 'the new key passes its self-test signature in lockout');
      assert.equal(noDA, true);
      assert.ok(await inDaLockout(tpm));
    } finally {
      await clearDaLockout(tpm);
    }
  });
});
