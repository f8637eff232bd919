/**
 * Protocol v2 over BLE through the daemon's own composition (`Gateway`, daemon/compose.ts): BLE
 * enabled on a Bumble virtual controller (noble's HCI code over the controller's UART), a Bumble
 * v2 peripheral (the Python implementation), swtpm, the reference backend over HTTPS. The
 * peripheral is welcomed with the backend's grant, its pubs reach the backend through the durable
 * queue and are receipted (a pub outside its policy denied), a backend-signed command reaches it
 * and its ack closes the command at the backend; the status socket lists it as a BLE v2 session.
 * Then the same device authenticates over MQTT: the gateway's one session table ends the BLE
 * session (`bye replaced`, read by the peripheral) and /metrics counts it.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { Gateway } from '../../../daemon/gateway.js';
import type { PeripheralInfo } from '../../../daemon/status/types.js';
import { MemoryCommandStore } from '../../../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../../../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2 } from '../../../peripherals/reference/session-v2.js';
import { seedOf } from '../../../testkit/ble-hci-rig.js';
import { startBumbleLink, type BumbleLink } from '../../../testkit/bumble.js';
import { FaultEnv, GW } from '../../../testkit/faults.js';
import { unixRequest } from '../../../testkit/unix-http.js';
import { waitUntil } from '../../../testkit/wait.js';

const ADDRESS = 'c0:de:00:00:02:01';

describe('daemon in process: protocol v2 over BLE on the gateway\'s session table (Bumble controller and v2 peripheral)', function () {
  this.timeout(120_000);
  let env: FaultEnv | undefined;
  let link: BumbleLink | undefined;
  let gateway: Gateway | undefined;
  let mqttPeer: MqttReferencePeripheralV2 | undefined;

  after(async () => {
    await mqttPeer?.close();
    // The gateway first: its central closes the UART before the link process closes the pty.
    await gateway?.stop();
    await link?.stop();
    await env?.dispose();
  });

  it('welcomes, stores and receipts pubs, relays a command and its ack, lists the BLE session; MQTT then replaces it', async () => {
    env = await FaultEnv.create({ devices: 1 });
    const d = env.devices[0]!;
    const dev = d.dev;
    const backendKeys = new Map([[env.backend.kid, env.backend.publicKeyRaw]]);
    link = await startBumbleLink({
      peripherals: [
        {
          name: 'p',
          address: ADDRESS,
          dev,
          seed: seedOf(d.signer),
          versions: [2],
          clock: true,
          schedule: [
            { afterMs: 50, frame: { type: 'pub', topic: `devices/${dev}/temp`, body: '21.5' } },
            { afterMs: 50, frame: { type: 'pub', topic: `devices/${dev}/temp`, body: '21.7' } },
            // Outside the lease policy (devices/{dev}/#): denied, never stored.
            { afterMs: 50, frame: { type: 'pub', topic: 'elsewhere/x', body: 'no' } },
          ],
        },
      ],
      backendKeys,
    });
    const config = await env.config(await env.stateDir('ble-v2'), {
      ble: { enabled: true, denyList: { baseBackoffSec: 600, maxBackoffSec: 3600 } },
      dataPlane: { commands: { waitSec: 1, maxPerDevice: 16 } },
    });
    gateway = new Gateway({ config, configFile: '(ble-v2)', drainTimeoutMs: 5000, bleHciUartPort: link.uartPath });
    await gateway.start();
    const sock = config.status.socketPath;

    // Welcomed online: the gateway relayed the backend's grant.
    const o = await link.outcomeOf('p', 30_000);
    assert.deepEqual([o.outcome, o.version, o.mode, o.gw], ['welcomed', 2, 'online', GW], JSON.stringify(o));

    // Receipts: the two pubs settled (after their commit), the third denied.
    const receipt = await link.waitEvent((e) => e.event === 'frame' && e.peripheral === 'p' && e.type === 'receipt' && e.upto === 2, 'receipt upto 2', 20_000);
    assert.deepEqual(receipt.denied, [2]);
    const settled = link.events.filter((e) => e.event === 'frame' && e.type === 'receipt');
    assert.ok(settled.every((r) => r.busy === undefined && r.lost === undefined), JSON.stringify(settled));
    // …and the backend stored exactly the two allowed pubs, from this gateway.
    const stored = async (): Promise<number[]> => (await env!.backend.store.telemetryLast(100, dev)).map((r) => r.seq).sort((a, b) => a - b);
    await waitUntil(async () => (await stored()).length >= 2, 'the pubs at the backend', 20_000);
    assert.deepEqual(await stored(), [0, 1]);

    // The status socket lists the device as a BLE v2 session with its frame counts.
    const peripherals = async (): Promise<PeripheralInfo[]> => (JSON.parse((await unixRequest(sock, '/v1/peripherals')).body) as { peripherals: PeripheralInfo[] }).peripherals;
    const ble = (await peripherals()).find((p) => p.dev === dev);
    assert.ok(ble?.session !== undefined, JSON.stringify(ble));
    assert.deepEqual([ble.transport, ble.state, ble.session.version, ble.session.sid, ble.session.framesIn, ble.session.denied, ble.session.drops], ['ble', 'welcomed', 2, o.sid, 3, 1, 0]);
    assert.deepEqual(gateway.sessions?.list().map((s) => [s.dev, s.transport]), [[dev, 'ble']]);

    // A backend-signed command reaches the peripheral over BLE; its ack closes it at the backend.
    const issued = await env.backend.issueCommand({ dev, topic: `devices/${dev}/cmd/reboot`, body: new TextEncoder().encode('now') });
    const cmd = await link.waitEvent((e) => e.event === 'command' && e.peripheral === 'p' && e.cid === issued.cid, 'the command at the peripheral', 20_000);
    assert.deepEqual([cmd.action, cmd.status], ['execute', 'done'], JSON.stringify(cmd));
    const command = async () => (await env!.backend.store.listCommands(dev)).find((c) => c.cid === issued.cid);
    await waitUntil(async () => (await command())?.status === 'done', 'the ack at the backend', 20_000);
    assert.equal((await command())?.ackedBy, GW);

    // The same device over MQTT: the newer session ends the BLE one (bye replaced).
    const port = gateway.mqttAddresses().tcp?.port;
    assert.ok(port !== undefined);
    const ref = new ReferencePeripheralV2({ dev, signer: d.signer, devicePublicKey: d.signer.publicKeyRaw, backendKeys, commandStore: new MemoryCommandStore() });
    mqttPeer = new MqttReferencePeripheralV2({ url: `mqtt://127.0.0.1:${port}`, peripheral: ref, timeoutMs: 15_000 });
    await mqttPeer.connect();
    const r = await mqttPeer.authenticate();
    assert.equal(r.kind, 'established', inspect(r));
    const bye = await link.waitEvent((e) => e.event === 'frame' && e.peripheral === 'p' && e.type === 'bye', 'bye at the BLE peripheral', 20_000);
    assert.equal(bye.reason, 'replaced');
    // The MQTT session is live (a pub receipted) and is now the device's only one.
    await mqttPeer.pub(`devices/${dev}/temp`, new TextEncoder().encode('22.0'));
    assert.deepEqual((await mqttPeer.nextReceipt()).settled, [0]);
    assert.deepEqual(gateway.sessions?.list().map((s) => [s.dev, s.transport]), [[dev, 'mqtt']]);
    const now = (await peripherals()).filter((p) => p.dev === dev && p.session !== undefined);
    assert.deepEqual(now.map((p) => p.transport), ['mqtt']);
    const metrics = (await unixRequest(sock, '/metrics')).body;
    assert.match(metrics, /gatehouse_v2_sessions_ended_total\{reason="replaced"\} 1\b/);
  });
});
