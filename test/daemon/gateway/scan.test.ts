/**
 * `gatehouse scan` against the in-process gateway with BLE enabled on the emulated radio (the
 * last layer that cannot run here without a controller): while the adapter is off the command
 * says so in one line (exit 4); once on, the reference peripheral the transport welcomed is
 * listed with its RSSI, v1 and the welcome.
 */
import assert from 'node:assert/strict';
import { main } from '../../../cli/main.js';
import { EXIT_NO_BLE } from '../../../daemon/cli/scan.js';
import { Gateway } from '../../../daemon/gateway.js';
import type { ScanReport } from '../../../daemon/status/types.js';
import { ReferenceBlePeripheral } from '../../../peripherals/reference/ble-peripheral.js';
import { EmulatedNobleBindings } from '../../../peripherals/reference/ble-emulated-bindings.js';
import { captureIO } from '../../../testkit/cli-io.js';
import { FaultEnv } from '../../../testkit/faults.js';

describe('daemon in process: gatehouse scan with the emulated radio', function () {
  this.timeout(60_000);
  let env: FaultEnv | undefined;
  let gateway: Gateway | undefined;

  after(async () => {
    await gateway?.stop();
    await env?.dispose();
  });

  it('adapter off: one line, exit 4; adapter on: the welcomed peripheral with RSSI, v1 and its outcome', async () => {
    env = await FaultEnv.create({ devices: 1 });
    const config = await env.config(await env.stateDir('scan'), { ble: { enabled: true } });
    const radio = new EmulatedNobleBindings({ advertisingIntervalMs: 20, initialState: 'poweredOff' });
    gateway = new Gateway({ config, configFile: '(scan)', drainTimeoutMs: 3000, bleBindings: radio });
    await gateway.start();
    const sock = config.status.socketPath;

    const off = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan'], off), EXIT_NO_BLE);
    assert.equal(off.err(), 'gatehouse scan: no BLE: the BLE adapter is poweredOff\n');

    const d = env.devices[0]!;
    const peripheral = new ReferenceBlePeripheral({ address: 'c0:de:00:00:5c:01', dev: d.dev, signer: d.signer, backendKeys: new Map([[env.backend.kid, env.backend.publicKeyRaw]]), mtu: 185 });
    radio.addPeripheral(peripheral);
    radio.setAdapterState('poweredOn');
    // Ask until the exchange is recorded (each try is a round trip on the socket), within a deadline.
    let report: ScanReport | undefined;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
      const code = await main(['scan', '--json'], io);
      report = JSON.parse(io.out()) as ScanReport;
      if (code === 0 && report.peripherals[0]?.lastOutcome !== undefined) break;
      assert.ok(Date.now() < deadline, `no exchange listed within 30 s: ${io.out()} ${io.err()}`);
    }
    const p = report!.peripherals[0]!;
    assert.equal(p.address, 'c0:de:00:00:5c:01');
    assert.equal(typeof p.rssi, 'number');
    assert.deepEqual([p.versions, p.versionsKnown], [[1], true]);
    assert.deepEqual([p.lastOutcome?.outcome, p.lastOutcome?.dev], ['welcome', d.dev]);
    assert.ok(p.deny.holdOffMs > 0 && p.deny.failures === 0, JSON.stringify(p.deny));
    assert.deepEqual(report!.limits, { maxEntries: 256, ttlSec: 300 });
  });
});
