import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, lstat, mkdtemp, readFile, readlink, rm, writeFile, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '../..');
const UNIT = join(REPO, 'systemd/gatehouse.service');
/** The hardening target: exposure at most 2.0 (the shipped unit scores 1.8). */
const MAX_EXPOSURE = 2.0;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function sh(file: string, args: string[]): Promise<Result> {
  try {
    const r = await run(file, args, { timeout: 30000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Directive → values, [Service] section only. */
function serviceDirectives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      section = m[1] ?? '';
      continue;
    }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

describe('systemd/gatehouse.service', () => {
  let dir: string;
  let unitCopy: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-unit-'));
    // verify needs ExecStart to name an existing absolute executable: substitute this node and CLI.
    const text = (await readFile(UNIT, 'utf8')).replace(
      /^ExecStart=\/usr\/bin\/node((?: --\S+)*) \/usr\/lib\/gatehouse\/dist\/cli\/gatehouse\.js/m,
      `ExecStart=${process.execPath}$1 ${join(REPO, 'cli/gatehouse.ts')}`,
    );
    assert.ok(text.includes(`ExecStart=${process.execPath}`), 'ExecStart substituted');
    unitCopy = join(dir, 'gatehouse.service');
    await writeFile(unitCopy, text);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes systemd-analyze verify without a warning', async () => {
    const r = await sh('systemd-analyze', ['verify', unitCopy]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', r.stderr);
  });

  async function exposureOf(unit: string): Promise<number> {
    const r = await sh('systemd-analyze', ['security', '--offline=true', '--threshold=20', '--no-pager', unit]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const m = /Overall exposure level for gatehouse\.service: (\d+\.\d)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    return Number(m[1]);
  }

  it(`scores an exposure of at most ${MAX_EXPOSURE} in systemd-analyze security, also with the BLE drop-in`, async () => {
    const exposure = await exposureOf(unitCopy);
    assert.ok(exposure <= MAX_EXPOSURE, `exposure ${exposure} > ${MAX_EXPOSURE}`);
    // The unit with the BLE drop-in's lines (offline analysis reads one file).
    const ble = (await readFile(join(REPO, 'systemd/gatehouse-ble.conf'), 'utf8')).replace(/^#.*\n/gm, '').replace('[Service]\n', '');
    const withBle = join(dir, 'ble', 'gatehouse.service');
    await mkdir(join(dir, 'ble'), { recursive: true });
    await writeFile(withBle, (await readFile(unitCopy, 'utf8')).replace('[Install]', `${ble}\n[Install]`));
    const bleExposure = await exposureOf(withBle);
    assert.ok(bleExposure <= MAX_EXPOSURE, `exposure with BLE ${bleExposure} > ${MAX_EXPOSURE}`);
    assert.ok(bleExposure > exposure, `CAP_NET_RAW counts against the unit (${bleExposure} vs ${exposure})`);
  });

  it("starts node with flags this node accepts (an unknown flag is 'bad option', exit 9: the daemon would never start)", async () => {
    const flags = /^ExecStart=\/usr\/bin\/node((?: --\S+)*) /m.exec(await readFile(UNIT, 'utf8'))?.[1]?.trim().split(' ').filter((f) => f !== '') ?? [];
    const r = await sh(process.execPath, [...flags, '-e', 'process.exit(0)']);
    assert.equal(r.code, 0, `node ${flags.join(' ')}: ${r.stderr}`);
    const bad = await sh(process.execPath, ['--no-such-flag-gatehouse', '-e', 'process.exit(0)']);
    assert.notEqual(bad.code, 0, 'an unknown flag is refused, so the check above means something');
  });

  it('declares notify, the watchdog, the sandbox, no capability and loopback only; the BLE drop-in adds CAP_NET_RAW', async () => {
    const d = serviceDirectives(await readFile(UNIT, 'utf8'));
    const one = (k: string): string | undefined => d.get(k)?.join(' ');
    assert.equal(one('Type'), 'notify');
    assert.equal(one('NotifyAccess'), 'main');
    assert.match(one('WatchdogSec') ?? '', /^\d+s$/);
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('User'), 'gatehouse');
    assert.equal(one('DevicePolicy'), 'closed');
    assert.equal(one('DeviceAllow'), '/dev/tpmrm0 rw');
    assert.equal(one('CapabilityBoundingSet'), '', 'the empty set: CAP_NET_RAW opens raw IP sockets too');
    assert.equal(d.has('AmbientCapabilities'), false);
    assert.equal(one('IPAddressAllow'), 'localhost', 'the LAN and backend ranges come from a drop-in');
    const ble = serviceDirectives(await readFile(join(REPO, 'systemd/gatehouse-ble.conf'), 'utf8'));
    assert.equal(ble.get('CapabilityBoundingSet')?.join(' '), 'CAP_NET_RAW');
    assert.equal(ble.get('AmbientCapabilities')?.join(' '), 'CAP_NET_RAW');
    assert.deepEqual([...ble.keys()].sort(), ['AmbientCapabilities', 'CapabilityBoundingSet']);
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('UMask'), '0077');
    assert.equal(one('IPAddressDeny'), 'any');
    assert.ok(one('RestrictAddressFamilies')?.split(' ').includes('AF_BLUETOOTH'));
    assert.equal(d.has('PrivateNetwork'), false, 'PrivateNetwork would hide AF_BLUETOOTH');
    assert.equal(d.has('PrivateDevices'), false, 'PrivateDevices would hide the TPM');
    assert.equal(d.has('MemoryDenyWriteExecute'), false, 'V8 JIT needs W+X pages');
  });

  it('sysusers.d creates the daemon user and the status group', async () => {
    const root = join(dir, 'root');
    await mkdir(join(root, 'etc'), { recursive: true });
    const r = await sh('systemd-sysusers', [`--root=${root}`, join(REPO, 'systemd/gatehouse.sysusers.conf')]);
    assert.equal(r.code, 0, r.stderr);
    const passwd = await readFile(join(root, 'etc/passwd'), 'utf8');
    const group = await readFile(join(root, 'etc/group'), 'utf8');
    assert.match(passwd, /^gatehouse:x:\d+:\d+:Gatehouse gateway daemon:\/var\/lib\/gatehouse:\/usr\/sbin\/nologin$/m);
    assert.match(group, /^gatehouse-status:x:\d+:$/m);
    assert.match(group, /^tss:x:\d+:$/m);
  });

  it('install.sh refuses to run without a backend allow-list or with an unknown option', async () => {
    const script = join(REPO, 'systemd/install.sh');
    const a = await sh(script, ['--destdir', dir]);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /--backend-allow is required/);
    const b = await sh(script, ['--frobnicate']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /unknown option --frobnicate/);
    const c = await sh(script, ['--destdir', dir, '--backend-allow', '10.0.0.0/8;rm']);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /not an address or CIDR/);
    assert.ok((await stat(script)).mode & 0o111, 'executable');
  });

  it('install.sh --destdir stages the program, unit, network and BLE drop-ins, sysusers, tmpfiles, sysctl and config', async () => {
    // A minimal source tree: the script finds everything relative to itself.
    const src = join(dir, 'src');
    await mkdir(join(src, 'dist/cli'), { recursive: true });
    await mkdir(join(src, 'docs'), { recursive: true });
    await cp(join(REPO, 'systemd'), join(src, 'systemd'), { recursive: true });
    await writeFile(join(src, 'dist/cli/gatehouse.js'), '#!/usr/bin/env node\n');
    for (const f of ['package.json', 'package-lock.json', 'docs/operations.md', 'docs/configuration.md']) await writeFile(join(src, f), '{}\n');
    const stage = join(dir, 'stage');
    const r = await sh(join(src, 'systemd/install.sh'), ['--destdir', stage, '--prefix', '/opt/gatehouse', '--backend-allow', '203.0.113.0/24,2001:db8::/32', '--lan-allow', '192.168.7.0/24', '--ble']);
    assert.equal(r.code, 0, r.stderr);
    const unit = await readFile(join(stage, 'etc/systemd/system/gatehouse.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/bin\/node(?: --\S+)* \/opt\/gatehouse\/dist\/cli\/gatehouse\.js run/m);
    const dropIn = await readFile(join(stage, 'etc/systemd/system/gatehouse.service.d/10-network.conf'), 'utf8');
    assert.match(dropIn, /^IPAddressAllow=203\.0\.113\.0\/24 2001:db8::\/32$/m);
    assert.match(dropIn, /^IPAddressAllow=192\.168\.7\.0\/24$/m);
    assert.equal(await readlink(join(stage, 'etc/systemd/system/gatehouse.service.d/ble.conf')), '/usr/share/gatehouse/systemd/gatehouse-ble.conf');
    assert.ok((await lstat(join(stage, 'usr/share/gatehouse/systemd/gatehouse-ble.conf'))).isFile());
    assert.equal(await readlink(join(stage, 'usr/bin/gatehouse')), '/opt/gatehouse/dist/cli/gatehouse.js');
    assert.ok((await stat(join(stage, 'opt/gatehouse/dist/cli/gatehouse.js'))).mode & 0o100, 'cli.js executable');
    assert.equal((await stat(join(stage, 'etc/gatehouse/gatehouse.yaml'))).mode & 0o777, 0o640);
    assert.ok((await lstat(join(stage, 'usr/lib/sysusers.d/gatehouse.conf'))).isFile());
    assert.ok((await lstat(join(stage, 'usr/lib/tmpfiles.d/gatehouse.conf'))).isFile());
    const sysctl = await readFile(join(stage, 'usr/lib/sysctl.d/90-gatehouse.conf'), 'utf8');
    assert.match(sysctl, /^net\.core\.somaxconn = 16384$/m);
    assert.match(sysctl, /^net\.ipv4\.tcp_max_syn_backlog = 16384$/m);
    // The staged unit with its drop-in still verifies.
    const staged = join(dir, 'staged.service');
    await writeFile(staged, unit.replace(/^ExecStart=\S+((?: --\S+)*) \S+/m, `ExecStart=${process.execPath}$1 ${join(REPO, 'cli/gatehouse.ts')}`).replace('[Install]', `${dropIn.replace(/^#.*\n/, '').replace('[Service]\n', '')}\n[Install]`));
    const v = await sh('systemd-analyze', ['verify', staged]);
    assert.equal(v.code, 0, v.stderr);
  });
});
