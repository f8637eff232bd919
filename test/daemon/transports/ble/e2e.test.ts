/**
 * One BLE exchange end to end with every real part that runs here: the reference backend over
 * HTTPS (certificates made now, SQLite registry), the project's dispatcher, session manager and
 * backend client, the pipeline, the BLE transport, real noble over the emulated radio, and the
 * reference peripheral checking the welcome under the backend's pinned key. The gateway's TPM
 * key is a software P-256 key here (the backend sees only its public key and signatures).
 */
import assert from 'node:assert/strict';
import { Ed25519Signer } from '../../../../protocol/index.js';
import { NobleCentral } from '../../../../daemon/transports/ble/noble-adapter.js';
import { BleTransport, type BleExchangeEvent } from '../../../../daemon/transports/ble/transport.js';
import { EmulatedNobleBindings } from '../../../../peripherals/reference/ble-emulated-bindings.js';
import { ReferenceBlePeripheral } from '../../../../peripherals/reference/ble-peripheral.js';
import { startBackend, type Backend } from '../../../../testkit/ble-hci-rig.js';
import { resultOf, waitForEvent } from './rig.js';

const GW = 'gw-ble-e2e';

describe('BLE end to end (reference backend, backend client, pipeline, real noble on the emulated radio)', function () {
  let backend: Backend | undefined;
  let transport: BleTransport | undefined;

  after(async () => {
    await transport?.stop();
    await backend?.close();
  });

  it('welcomes a registered peripheral and rejects an unknown one, each verified at the peripheral', async () => {
    // The reference backend over HTTPS, the gateway's session with it, the backend client and the pipeline.
    backend = await startBackend(GW);
    const { tb, backendKeys, pipeline, client } = backend;

    const radio = new EmulatedNobleBindings({ advertisingIntervalMs: 20 });
    transport = new BleTransport({ central: new NobleCentral({ bindings: radio }), pipeline, exchangeTimeoutMs: 15_000 });
    const exchanges: BleExchangeEvent[] = [];
    transport.on('exchange', (e) => exchanges.push(e));
    await transport.start();

    const known = new ReferenceBlePeripheral({
      address: 'c0:de:00:00:e2:01',
      dev: 'ble-e2e-1',
      signer: await tb.addDevice('ble-e2e-1', { gateways: [GW] }),
      backendKeys,
      mtu: 23,
    });
    const stranger = new ReferenceBlePeripheral({
      address: 'c0:de:00:00:e2:02',
      dev: 'ble-e2e-2',
      signer: Ed25519Signer.generate('ble-e2e-2'),
      backendKeys,
      mtu: 247,
    });
    radio.addPeripheral(known);
    radio.addPeripheral(stranger);

    const ok = await resultOf(known, 20_000);
    assert.ok(ok.kind === 'welcome' && ok.check.ok, JSON.stringify(ok));
    assert.equal(ok.check.credential.gw, GW);
    const no = await resultOf(stranger, 20_000);
    assert.equal(no.kind === 'reject' && no.reason, 'unknown-device');

    if (exchanges.length < 2) {
      await waitForEvent<[BleExchangeEvent]>((l) => transport!.on('exchange', l), () => exchanges.length >= 2, 'both exchange events');
    }
    const byDev = new Map(exchanges.map((e) => [e.dev, e]));
    assert.equal(byDev.get('ble-e2e-1')?.outcome, 'welcome');
    assert.equal(byDev.get('ble-e2e-2')?.outcome, 'reject');
    assert.ok(client.stats().hellos >= 2);
    assert.deepEqual(radio.violations, []);
  });
});
