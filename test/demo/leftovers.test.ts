/**
 * The demo's reaper (demo/leftovers.ts) against real processes: a real swtpm left behind by a
 * "previous demo" is killed; a process that merely holds a recorded pid is not; a demo still
 * running in the directory makes the new one refuse. And the overrides merge (demo/overrides.ts).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Swtpm } from '../../testkit/swtpm.js';
import { tempDirEach } from '../../testkit/temp-dir.js';
import { DemoError, PID_FILE, processGone, reapLeftovers } from '../../demo/leftovers.js';
import { applyOverrides, mergeInput } from '../../demo/overrides.js';

/** A long-running process with argv `extra`, reaped by this test process. */
function idle(extra: string[]): { child: ChildProcess; pid: number; gone: Promise<void> } {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', ...extra], { stdio: 'ignore' });
  if (child.pid === undefined) throw new Error('spawn failed');
  return { child, pid: child.pid, gone: new Promise((r) => child.once('exit', () => r())) };
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const p = idle([]);
  p.child.kill('SIGKILL');
  await p.gone;
  return p.pid;
}

describe('demo leftovers: the pid file and the reaper', function () {
  this.timeout(30_000);
  const tmp = tempDirEach('gh-demo-reap-');
  const started: { child: ChildProcess; gone: Promise<void> }[] = [];
  let swtpm: Swtpm | undefined;

  afterEach(async () => {
    for (const p of started.splice(0)) {
      p.child.kill('SIGKILL');
      await p.gone;
    }
    await swtpm?.dispose();
    swtpm = undefined;
  });

  it('kills the swtpm a dead demo left in its directory, and spares a process that holds a recorded pid but is not its backend', async () => {
    swtpm = await Swtpm.start({ stateDir: join(tmp.path, 'swtpm') });
    const swtpmPid = swtpm.pid ?? 0;
    const decoy = idle(['serve', '--data-dir', join(tmp.path, 'elsewhere')]);
    started.push(decoy);
    await writeFile(join(tmp.path, PID_FILE), JSON.stringify({ demo: await deadPid(), swtpm: swtpmPid, backend: decoy.pid }));

    const reaped = await reapLeftovers(tmp.path);

    assert.deepEqual(reaped, [{ role: 'swtpm', pid: swtpmPid }]);
    assert.ok(processGone(swtpmPid), 'the leftover swtpm is gone');
    assert.ok(!processGone(decoy.pid), 'the decoy is alive');
    assert.ok(!existsSync(join(tmp.path, PID_FILE)), 'the stale pid file is removed');
  });

  it('refuses while the demo that wrote the pid file is still running', async () => {
    const other = idle(['gatehouse', 'demo']);
    started.push(other);
    await writeFile(join(tmp.path, PID_FILE), JSON.stringify({ demo: other.pid }));
    await assert.rejects(reapLeftovers(tmp.path), (err: unknown) => err instanceof DemoError && err.code === 'GH_DEMO_RUNNING' && err.message.includes(String(other.pid)));
    assert.ok(existsSync(join(tmp.path, PID_FILE)), 'the running demo keeps its pid file');
  });

  it('ignores a torn or foreign pid file, and a recorded pid that is no process', async () => {
    await writeFile(join(tmp.path, PID_FILE), '{"demo": 12');
    assert.deepEqual(await reapLeftovers(tmp.path), []);
    await writeFile(join(tmp.path, PID_FILE), JSON.stringify({ demo: await deadPid(), swtpm: await deadPid() }));
    assert.deepEqual(await reapLeftovers(tmp.path), []);
    assert.ok(!existsSync(join(tmp.path, PID_FILE)), 'a pid file naming only dead processes is removed');
  });
});

describe('demo overrides: merge and validation', () => {
  const base = {
    gateway: { id: 'gw-demo', production: false, stateDir: '/tmp/x/gateway', runtimeDir: '/tmp/x/run' },
    tpm: { kind: 'tpm', tcti: 'swtpm:host=127.0.0.1,port=2321' },
    backend: { url: 'https://127.0.0.1:8443', caFile: '/tmp/x/pki/ca.pem', backendPublicKey: Buffer.alloc(32).toString('base64url'), backendKid: 'S-0000000000000000' },
    mqtt: { tcp: { enabled: true, host: '127.0.0.1', port: 1883 } },
    status: { socketPath: '/tmp/x/run/status.sock' },
  };

  it('merges mapping by mapping: a partial override keeps its siblings', () => {
    const m = mergeInput(base, { mqtt: { tcp: { port: 1999 } }, pipeline: { rateLimits: { perDevicePerMin: 600 } } });
    assert.deepEqual(m.mqtt, { tcp: { enabled: true, host: '127.0.0.1', port: 1999 } });
    const r = applyOverrides(base, { pipeline: { rateLimits: { perDevicePerMin: 600 } } });
    assert.ok(r.ok);
    if (!r.ok) return;
    assert.equal(r.config.pipeline.rateLimits.perDevicePerMin, 600);
    assert.equal(r.config.pipeline.rateLimits.perConnectionPerMin, 20, 'the default of the sibling stays');
    assert.equal(base.mqtt.tcp.port, 1883, 'the base is not changed');
  });

  it('reports every problem at once, the wired keys among them', () => {
    const r = applyOverrides(base, { pipeline: { rateLimits: { perDevicePerMin: 'lots' }, nope: 1 }, backend: { url: 'https://elsewhere.example' }, log: { level: 'chatty' } });
    assert.ok(!r.ok);
    if (r.ok) return;
    const paths = r.issues.map((i) => i.path).sort();
    assert.deepEqual(paths, ['backend.url', 'log.level', 'pipeline.nope', 'pipeline.rateLimits.perDevicePerMin']);
  });
});
