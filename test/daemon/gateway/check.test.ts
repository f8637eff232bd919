/**
 * `gatehouse check` (a CLI child) against the daemon (a child) on a healthy setup and on broken
 * ones (issue acceptance: backend down, wrong CA, missing TPM key): each broken part fails its
 * own check, with the rest still OK, and the exit code says so.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCa } from '../../../backend/pki.js';
import type { CheckReport, CheckStatus } from '../../../daemon/check/types.js';
import { killAllChildren, runCli, spawnDaemon } from '../../../testkit/daemon.js';
import { deriveConfig, sectionOf, START_TIMEOUT_MS, startDaemon, startRig, stopDaemon, type Rig, type RunningDaemon } from './fixture.js';

const run = promisify(execFile);

/** Every check id and the status a healthy embedded setup gives it (BLE is off there). */
const HEALTHY: Record<string, CheckStatus> = {
  'config.valid': 'ok',
  'clock.sane': 'ok',
  'state.writable': 'ok',
  'tpm.key': 'ok',
  'backend.tls': 'ok',
  'backend.session': 'ok',
  'credential.expiry': 'ok',
  'mqtt.listeners': 'ok',
  'ble.adapter': 'skip',
  'peripherals.failing': 'ok',
  'fd.limit': 'ok',
};

function statuses(r: CheckReport): Record<string, CheckStatus> {
  return Object.fromEntries(r.results.map((x) => [x.id, x.status]));
}

function result(r: CheckReport, id: string): CheckReport['results'][number] {
  const x = r.results.find((y) => y.id === id);
  assert.ok(x !== undefined, `no ${id} in ${JSON.stringify(r)}`);
  return x;
}

async function check(args: string[]): Promise<{ code: number | null; report: CheckReport; stderr: string }> {
  const r = await runCli(['check', '--json', ...args]);
  let report: CheckReport;
  try {
    report = JSON.parse(r.stdout) as CheckReport;
  } catch {
    throw new Error(`check printed no JSON (exit ${String(r.code)}): ${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, report, stderr: r.stderr };
}

describe('daemon as a child process: gatehouse check', function () {
  this.timeout(120_000);
  let rig: Rig;
  let daemon: RunningDaemon | undefined;
  let socket: string;

  before(async () => {
    rig = await startRig('check', { devices: 1 });
    socket = rig.system.config.status.socketPath;
  });

  afterEach(async () => {
    if (daemon !== undefined) {
      const d = daemon;
      daemon = undefined;
      const stopped = await stopDaemon(d).catch(async (err: unknown) => {
        await d.child.kill();
        throw err;
      });
      assert.equal(stopped.code, 0, d.child.stderr());
    }
  });

  after(async () => {
    await killAllChildren();
    await rig?.close();
  });

  it('healthy: every check OK through the daemon and offline, exit 0', async () => {
    daemon = await startDaemon(rig.system.configFile);
    const [live, offline] = await Promise.all([check(['--socket', socket]), check(['--offline', '--config', rig.system.configFile])]);
    assert.equal(live.code, 0, JSON.stringify(live.report));
    assert.equal(live.report.status, 'ok');
    assert.deepEqual(statuses(live.report), HEALTHY);
    assert.equal(offline.code, 0, JSON.stringify(offline.report));
    // Offline, only the running daemon can answer for the session and the listeners.
    assert.deepEqual(statuses(offline.report), { ...HEALTHY, 'backend.session': 'skip', 'credential.expiry': 'skip', 'mqtt.listeners': 'skip', 'peripherals.failing': 'skip' });
  });

  it('backend down: backend.tls FAILs through the running daemon (exit 1), and is OK again once it is back', async () => {
    daemon = await startDaemon(rig.system.configFile);
    await rig.system.stopBackend();
    try {
      const down = await check(['--socket', socket]);
      assert.equal(down.code, 1, JSON.stringify(down.report));
      assert.equal(down.report.status, 'fail');
      // Only the backend is broken: the session held from start is still valid.
      assert.deepEqual(statuses(down.report), { ...HEALTHY, 'backend.tls': 'fail' });
      const tls = result(down.report, 'backend.tls');
      assert.match(tls.message, /ECONNREFUSED/);
      assert.match(tls.action ?? '', /check the URL/);
    } finally {
      await rig.system.restartBackend();
    }
    const back = await check(['--socket', socket]);
    assert.equal(back.code, 0, JSON.stringify(back.report));
  });

  it('wrong CA: the daemon starts degraded; backend.tls and backend.session FAIL (exit 1), also offline', async () => {
    const other = await createCa(join(rig.dir, 'other-ca'), { name: 'other', cn: 'Some other CA' });
    const config = await deriveConfig(rig, 'wrong-ca.yaml', (c) => {
      sectionOf(c, 'backend').caFile = other.certPath;
    });
    // A backend that cannot be trusted is not fatal at start (the session keeps retrying).
    daemon = await startDaemon(config);
    const [live, offline] = await Promise.all([check(['--socket', socket]), check(['--offline', '--config', config])]);
    assert.equal(live.code, 1, JSON.stringify(live.report));
    const st = statuses(live.report);
    assert.equal(st['backend.tls'], 'fail');
    assert.equal(st['backend.session'], 'fail');
    assert.equal(st['tpm.key'], 'ok');
    assert.equal(st['mqtt.listeners'], 'ok');
    assert.match(result(live.report, 'backend.tls').message, /not trusted/);
    assert.match(result(live.report, 'backend.tls').action ?? '', /backend\.caFile/);
    assert.equal(offline.code, 1, JSON.stringify(offline.report));
    assert.equal(statuses(offline.report)['backend.tls'], 'fail');
    assert.match(result(offline.report, 'backend.tls').message, /not trusted/);
  });

  it('missing TPM key: the daemon refuses to start with a clear error; check --offline FAILs tpm.key', async () => {
    const swtpm = rig.system.swtpm;
    assert.ok(swtpm !== undefined, 'the rig runs swtpm');
    await run('tpm2_evictcontrol', ['-C', 'o', '-c', rig.system.config.tpm.handle], { env: { ...process.env, TPM2TOOLS_TCTI: swtpm.tcti }, timeout: 20_000 });

    const child = spawnDaemon(rig.system.configFile);
    const exit = await child.exited(START_TIMEOUT_MS);
    assert.equal(exit.code, 1, child.stderr());
    assert.match(child.stderr(), /gatehouse run: failed to start: .*no key at persistent handle 0x81010001/);

    const offline = await check(['--offline', '--config', rig.system.configFile]);
    assert.equal(offline.code, 1, JSON.stringify(offline.report));
    const key = result(offline.report, 'tpm.key');
    assert.equal(key.status, 'fail');
    assert.match(key.message, /no usable gateway key at 0x81010001/);
    assert.match(key.action ?? '', /provision/);
    // The rest is fine: the failure points at the key alone.
    assert.deepEqual(
      offline.report.results.filter((r) => r.status === 'fail').map((r) => r.id),
      ['tpm.key'],
    );
  });
});
