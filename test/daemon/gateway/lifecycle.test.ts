/**
 * `gatehouse run` as a child process under a stand-in for systemd (our own NOTIFY_SOCKET):
 * READY=1 only once the MQTT listener accepts and the status socket answers; a reference
 * peripheral authenticates through it and the CLI shows it; SIGTERM sends STOPPING=1 and exits 0.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { writeFile } from 'node:fs/promises';
import type { StatusReport } from '../../../daemon/status/types.js';
import type { PeripheralInfo } from '../../../daemon/status/types.js';
import { killAllChildren, runCli, spawnDaemon } from '../../../testkit/daemon.js';
import { unixRequest } from '../../../testkit/unix-http.js';
import { openNotifySocket } from '../../../testkit/notify-socket.js';
import { authenticate, deriveConfig, device, mqttPeripheral, notifyFields, sectionOf, START_TIMEOUT_MS, startDaemon, startRig, stopDaemon, STOP_TIMEOUT_MS, tcpConnects, waitForNotify, type Rig, type RunningDaemon } from './fixture.js';

describe('daemon as a child process: readiness, status, stop', function () {
  this.timeout(120_000);
  let rig: Rig;
  let daemon: RunningDaemon | undefined;

  before(async () => {
    rig = await startRig('life', { devices: 2 });
  });

  after(async () => {
    await killAllChildren();
    await daemon?.ns.close();
    await rig?.close();
  });

  it('sends READY=1 only when MQTT accepts and the status socket answers; a peripheral is welcomed and listed; SIGTERM → STOPPING=1, exit 0', async () => {
    const socketPath = rig.system.config.status.socketPath;
    daemon = await startDaemon(rig.system.configFile);
    // The moment READY=1 arrives, both must answer: no retry, no wait.
    const [, status] = await Promise.all([tcpConnects(rig.mqttPort), unixRequest(socketPath, '/v1/status')]);
    assert.equal(status.status, 200, status.body);
    const report = JSON.parse(status.body) as StatusReport;
    assert.equal(report.gateway.id, rig.system.gw);
    assert.equal(report.gateway.pid, daemon.child.pid);
    assert.equal(report.tpm.kind, 'tpm');
    assert.deepEqual(report.session, { held: true, notAfter: report.session.notAfter });
    assert.ok(report.transports.mqtt.listeners.some((l) => l.port === rig.mqttPort), JSON.stringify(report.transports));

    // READY=1 came with a STATUS= line, and it was the first datagram (nothing claimed readiness earlier).
    const ready = notifyFields(daemon.ready);
    assert.equal(daemon.seen.indexOf(daemon.ready), 0, JSON.stringify(daemon.seen));
    assert.match(ready.get('STATUS') ?? '', /^0 MQTT connections, 0 welcomed \(0 offline\), 0 rejected, session ok$/);

    // A reference peripheral authenticates through the child and verifies its welcome.
    const dev = device(rig.system, 0);
    const p = mqttPeripheral(rig.system, dev, rig.mqttPort);
    try {
      const r = await authenticate(p);
      assert.equal(r.kind, 'authenticated', JSON.stringify(r));
      if (r.kind !== 'authenticated') return;
      assert.equal(r.welcome.gw, rig.system.gw);
      assert.equal(r.welcome.dev, dev.dev);
      // systemd's STATUS= follows along (the daemon refreshes it every 5 s).
      await waitForNotify(daemon.ns, (d) => /^STATUS=1 MQTT connections, 1 welcomed \(0 offline\), 0 rejected, session ok$/m.test(d), 20_000, daemon.seen, daemon.child);

      // The CLI, itself a child, shows it.
      const st = await runCli(['status', '--json', '--socket', socketPath]);
      assert.equal(st.code, 0, st.stderr);
      const s = JSON.parse(st.stdout) as StatusReport;
      assert.equal(s.decisions.welcome, 1);
      assert.equal(s.transports.mqtt.connections, 1);
      assert.equal(s.state, 'running');

      const pl = await runCli(['peripherals', '--json', '--socket', socketPath]);
      assert.equal(pl.code, 0, pl.stderr);
      const list = (JSON.parse(pl.stdout) as { peripherals: PeripheralInfo[] }).peripherals;
      assert.equal(list.length, 1, pl.stdout);
      assert.equal(list[0]?.dev, dev.dev);
      assert.equal(list[0]?.transport, 'mqtt');
      assert.equal(list[0]?.state, 'welcomed');
      assert.equal(list[0]?.offline, false);

      // Metrics: one TPM signature (the session), the connection, the credential expiry, the welcome.
      const m = await unixRequest(socketPath, '/metrics');
      assert.equal(m.status, 200);
      assert.match(m.body, /^gatehouse_tpm_sign_duration_seconds_count 1$/m);
      assert.match(m.body, /^gatehouse_connections\{transport="mqtt"\} 1$/m);
      assert.match(m.body, new RegExp(`^gatehouse_credential_expiry_timestamp_seconds ${report.session.notAfter ?? 'x'}$`, 'm'));
      assert.match(m.body, /^gatehouse_decisions_total\{transport="mqtt",outcome="welcome",reason=""\} 1$/m);
      // Backend requests are timed by call: the session grant and the one verify batch.
      assert.match(m.body, /^gatehouse_backend_request_duration_seconds_count\{call="session"\} 1$/m);
      assert.match(m.body, /^gatehouse_backend_request_duration_seconds_count\{call="verify"\} 1$/m);
      assert.doesNotMatch(m.body, /^gatehouse_backend_errors_total\{/m);
    } finally {
      await p.close();
    }

    const { code, stopping } = await stopDaemon(daemon);
    assert.equal(code, 0, daemon.child.stderr());
    assert.equal(notifyFields(stopping).get('STOPPING'), '1');
    assert.ok(notifyFields(stopping).has('STATUS'), stopping);
    // The status socket is gone with the daemon, and the MQTT port is free again.
    assert.equal(existsSync(socketPath), false);
    await assert.rejects(tcpConnects(rig.mqttPort), /ECONNREFUSED/);
    daemon = undefined;
  });

  it('stops on SIGINT as on SIGTERM: STOPPING=1, exit 0', async () => {
    daemon = await startDaemon(rig.system.configFile);
    daemon.child.signal('SIGINT');
    const stopping = await waitForNotify(daemon.ns, (d) => notifyFields(d).get('STOPPING') === '1', STOP_TIMEOUT_MS, daemon.seen);
    assert.ok(stopping.length > 0);
    assert.equal((await daemon.child.exited(STOP_TIMEOUT_MS)).code, 0, daemon.child.stderr());
    await daemon.ns.close();
    daemon = undefined;
    await assert.rejects(tcpConnects(rig.mqttPort), /ECONNREFUSED/);
  });

  it('exits 0 when SIGTERM arrives while it is still starting, leaving nothing listening', async () => {
    const ns = await openNotifySocket(5);
    try {
      const child = spawnDaemon(rig.system.configFile, { env: { NOTIFY_SOCKET: ns.path } });
      // The session is granted before the transports start: stop right there.
      await child.waitForStderr(/gateway session renewed/, START_TIMEOUT_MS);
      child.signal('SIGTERM');
      const exit = await child.exited(STOP_TIMEOUT_MS);
      assert.equal(exit.code, 0, child.stderr());
      // systemd hears STOPPING=1 whether or not READY=1 went out first.
      assert.ok(ns.drain().some((d) => notifyFields(d).get('STOPPING') === '1'), 'STOPPING=1 sent');
      assert.doesNotMatch(child.stderr(), /failed to start/);
      await assert.rejects(tcpConnects(rig.mqttPort), /ECONNREFUSED/);
    } finally {
      await ns.close();
    }
  });

  it('SIGHUP reloads log.level from the file; a broken file on SIGHUP changes nothing and the daemon keeps serving', async () => {
    const file = await deriveConfig(rig, 'hup.yaml', () => undefined);
    daemon = await startDaemon(file);
    await deriveConfig(rig, 'hup.yaml', (c) => {
      sectionOf(c, 'log').level = 'debug';
    });
    daemon.child.signal('SIGHUP');
    await daemon.child.waitForStderr(/log level changed from=info to=debug/, 20_000);

    await writeFile(file, 'log: [broken\n', { mode: 0o600 });
    daemon.child.signal('SIGHUP');
    await daemon.child.waitForStderr(/SIGHUP: config reload failed, log level unchanged/, 20_000);
    const r = await unixRequest(rig.system.config.status.socketPath, '/v1/status');
    assert.equal(r.status, 200, r.body);
    assert.equal((JSON.parse(r.body) as StatusReport).state, 'running');

    assert.equal((await stopDaemon(daemon)).code, 0, daemon.child.stderr());
    daemon = undefined;
  });

  it('exits 1 with the reason when its MQTT port is taken, without READY=1 and without leaving its status socket', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen({ host: '127.0.0.1', port: rig.mqttPort, exclusive: true }, () => resolve());
    });
    const ns = await openNotifySocket(5);
    try {
      const child = spawnDaemon(rig.system.configFile, { env: { NOTIFY_SOCKET: ns.path } });
      const exit = await child.exited(START_TIMEOUT_MS);
      assert.equal(exit.code, 1, child.stderr());
      assert.match(child.stderr(), new RegExp(`gatehouse run: failed to start: cannot listen on 127\\.0\\.0\\.1:${rig.mqttPort}`));
      assert.equal(ns.drain().some((d) => notifyFields(d).get('READY') === '1'), false);
      assert.equal(existsSync(rig.system.config.status.socketPath), false);
    } finally {
      await ns.close();
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
    // What it started was stopped (the TPM connection too): the next start works.
    daemon = await startDaemon(rig.system.configFile);
    assert.equal((await stopDaemon(daemon)).code, 0, daemon.child.stderr());
    daemon = undefined;
  });
});
