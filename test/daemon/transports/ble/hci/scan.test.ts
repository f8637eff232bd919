/**
 * `gatehouse scan` against the BLE test stack: the transport's ScanLog, fed by noble's scan over
 * a Bumble controller, lists the Bumble peripherals with their RSSI, the versions learned at
 * connect and the last outcome; the status socket serves it at /v1/scan and the CLI renders it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../../../../cli/main.js';
import { StatusServer } from '../../../../../daemon/status/server.js';
import type { ScanReport } from '../../../../../daemon/status/types.js';
import type { BleTransport } from '../../../../../daemon/transports/ble/transport.js';
import { startBackend, startHciRig, addressOf, type Backend, type HciRig } from '../../../../../testkit/ble-hci-rig.js';
import { captureIO } from '../../../../../testkit/cli-io.js';
import { normaliseCliText } from '../../../../../testkit/cli-text.js';
import { TestSource } from '../../../status/fixtures.js';
import { recordingV2Host, type RecordingV2Host } from '../../../../../testkit/ble-v2-host.js';

/** A status source whose /v1/scan is the live transport's log. */
class ScanSource extends TestSource {
  constructor(readonly ble: BleTransport) {
    super();
  }
  getScan(): ScanReport {
    const s = this.ble.stats();
    return { ble: { available: true, adapterState: s.state, scanning: s.scanning }, ...this.ble.nearby() };
  }
}

describe('gatehouse scan over a real HCI stack (Bumble peripherals)', function () {
  this.timeout(60_000);
  let backend: Backend | undefined;
  let rig: HciRig | undefined;
  let dir: string | undefined;
  let server: StatusServer | undefined;
  let host: RecordingV2Host | undefined;

  before(async () => {
    backend = await startBackend();
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    await rig?.stop();
    rig = undefined;
    host?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });
  after(async () => {
    await backend?.close();
  });

  it('lists each peripheral with RSSI, the versions found at connect, the last outcome and the back-off', async () => {
    host = recordingV2Host(backend!);
    rig = await startHciRig(
      backend!,
      [
        { n: 61, name: 'both', versions: [1, 2] },
        { n: 62, name: 'v1-stranger', versions: [1], register: false },
      ],
      { transport: { v2: host.host } },
    );
    const welcomed = await rig.exchangeOf(addressOf(61));
    const rejected = await rig.exchangeOf(addressOf(62));
    assert.deepEqual([welcomed.outcome, welcomed.version], ['welcome', 2]);
    assert.equal(rejected.outcome, 'reject');

    const { peripherals, limits } = rig.transport.nearby();
    assert.deepEqual(limits, { maxEntries: 256, ttlSec: 300 });
    const byAddress = new Map(peripherals.map((p) => [p.address, p]));
    const both = byAddress.get(addressOf(61));
    const v1 = byAddress.get(addressOf(62));
    assert.ok(both !== undefined && v1 !== undefined, JSON.stringify(peripherals));
    for (const p of [both, v1]) {
      assert.equal(typeof p.rssi, 'number', `RSSI of ${p.address}`);
      assert.ok(p.rssi! < 21 && p.rssi! > -128, `RSSI ${p.rssi} in the HCI range`);
      assert.ok(p.seen >= 1 && p.connectable);
      assert.equal(p.versionsKnown, true);
    }
    // The v2 characteristic was found (and used); a v1-only peripheral lacks it.
    assert.deepEqual(both.versions, [2]);
    assert.deepEqual(v1.versions, [1]);
    assert.deepEqual([both.lastOutcome?.outcome, both.lastOutcome?.dev, both.lastOutcome?.version], ['welcome', 'hci-dev-61', 2]);
    assert.deepEqual([v1.lastOutcome?.outcome, v1.lastOutcome?.reason], ['reject', rejected.reason]);
    // The deny list: the welcomed address rests, the rejected one backs off (rig: 60 s base).
    assert.equal(both.deny.failures, 0);
    assert.ok(both.deny.holdOffMs > 0);
    assert.equal(v1.deny.failures, 1);
    assert.ok(v1.deny.holdOffMs > 50_000 && v1.deny.holdOffMs <= 60_000, String(v1.deny.holdOffMs));

    dir = await mkdtemp(join(tmpdir(), 'gh-scan-'));
    const sock = join(dir, 'status.sock');
    server = new StatusServer({ socketPath: sock, source: new ScanSource(rig.transport) });
    await server.start();
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan'], io), 0, io.err());
    const text = normaliseCliText(io.out())
      .replace(/-?\d+ dBm/g, '<RSSI> dBm')
      .split('\n')
      .sort()
      .join('\n');
    assert.equal(
      text,
      [
        '(NAME -: none advertised; RSSI -: not reported; LAST -: no exchange yet; DENY -: not held off)',
        'ADDRESS  NAME  RSSI  VERSIONS  HEARD  LAST  DENY',
        `c0:de:00:00:01:3d  GH-both  <RSSI> dBm  v2  <AGO>  welcome hci-dev-61 v2, <AGO>  <IN> (after a welcome)`,
        `c0:de:00:00:01:3e  GH-v1-stranger  <RSSI> dBm  v1  <AGO>  reject hci-dev-62 ${rejected.reason ?? '?'}, <AGO>  <IN> (1 failure)`,
      ].join('\n'),
    );

    const json = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan', '--json'], json), 0, json.err());
    const report = JSON.parse(json.out()) as ScanReport;
    assert.deepEqual(report.ble, { available: true, adapterState: 'poweredOn', scanning: true });
    assert.deepEqual(report.peripherals.map((p) => p.address).sort(), [addressOf(61), addressOf(62)]);
  });
});
