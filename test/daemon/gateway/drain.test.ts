/**
 * SIGTERM drain (issue acceptance: "SIGTERM drain loses no in-flight exchange"). Twenty
 * peripherals have their hellos PUBACKed and their verify request caught in flight (a TCP
 * pass-through in front of the backend holds it); then the daemon gets SIGTERM. Every
 * peripheral must still get a welcome that verifies, and the daemon must exit 0.
 */
import assert from 'node:assert/strict';
import { freePort } from '../../../demo/embedded.js';
import { killAllChildren } from '../../../testkit/daemon.js';
import { HoldProxy } from './hold-proxy.js';
import { deriveConfig, notifyFields, sectionOf, startDaemon, startRig, STOP_TIMEOUT_MS, StepPeripheral, tcpConnects, waitForNotify, type Rig, type RunningDaemon } from './fixture.js';

const N = 20;

describe('daemon as a child process: SIGTERM drain', function () {
  this.timeout(120_000);
  let rig: Rig;
  let proxy: HoldProxy;
  let daemon: RunningDaemon | undefined;
  const peripherals: StepPeripheral[] = [];

  before(async () => {
    // The gateway signs for the proxy's origin, so the backend must verify against it.
    const proxyPort = await freePort();
    rig = await startRig('drain', { devices: N, backendOrigin: `https://127.0.0.1:${proxyPort}` });
    proxy = new HoldProxy({ host: '127.0.0.1', port: rig.system.backend.port }, proxyPort);
    await proxy.start();
  });

  after(async () => {
    proxy?.release();
    await Promise.all(peripherals.map((p) => p.close()));
    await killAllChildren();
    await daemon?.ns.close();
    await proxy?.close();
    await rig?.close();
  });

  it('welcomes every peripheral whose hello was in flight at SIGTERM, then exits 0', async () => {
    const config = await deriveConfig(rig, 'drain.yaml', (c) => {
      const b = sectionOf(c, 'backend');
      b.url = `https://127.0.0.1:${proxy.port}`;
      // No background requests: what the proxy holds is the hellos' verify.
      b.revocationPollSec = 3600;
    });
    daemon = await startDaemon(config);

    for (const dev of rig.system.devices) peripherals.push(new StepPeripheral(rig.system, dev));
    await Promise.all(peripherals.map((p) => p.connect(rig.mqttPort)));
    const challenges = await Promise.all(peripherals.map((p) => p.challenge()));

    proxy.hold();
    // Each hello is PUBACKed: the gateway has it.
    await Promise.all(peripherals.map((p, i) => p.hello(challenges[i] ?? new Uint8Array())));
    await proxy.caughtSomething(20_000);

    daemon.child.signal('SIGTERM');
    const stopping = await waitForNotify(daemon.ns, (d) => notifyFields(d).get('STOPPING') === '1', STOP_TIMEOUT_MS, daemon.seen, daemon.child);
    assert.ok(stopping.length > 0);
    // Intake is closed first: once the transport says it drains, new connections are refused.
    await daemon.child.waitForStderr(/draining in-flight auth messages/, STOP_TIMEOUT_MS);
    await assert.rejects(tcpConnects(rig.mqttPort), /ECONNREFUSED/);
    // The daemon is draining with every verify still held: let the backend answer now.
    assert.equal(daemon.child.exit, undefined, 'the daemon exited before its in-flight exchanges were answered');
    proxy.release();

    const answers = await Promise.all(peripherals.map(async (p) => ({ dev: p.device.dev, event: p.ref.receive(await p.next(30_000)) })));
    const notWelcomed = answers.filter((a) => a.event.kind !== 'authenticated');
    assert.deepEqual(notWelcomed, [], 'every in-flight exchange ends in a verified welcome');

    const exit = await daemon.child.exited(STOP_TIMEOUT_MS);
    assert.equal(exit.code, 0, daemon.child.stderr());
    await daemon.ns.close();
    daemon = undefined;
  });
});
