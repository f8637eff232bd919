/**
 * The gateway's BLE transport through noble's own HCI layer, over a Bumble controller's HCI
 * UART, against Bumble peripherals (a second, independent BLE stack running the peripheral side
 * of protocol v1 in Python), with the real pipeline, backend client and reference backend.
 */
import assert from 'node:assert/strict';
import { startBackend, startHciRig, addressOf, type Backend, type HciRig } from './rig.js';

describe('BLE over a real HCI stack (noble HCI over a Bumble UART, Bumble peripherals)', function () {
  this.timeout(60_000);
  let backend: Backend | undefined;
  let rig: HciRig | undefined;

  before(async () => {
    backend = await startBackend();
  });
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });
  after(async () => {
    await backend?.close();
  });

  it('authenticates a registered peripheral end to end and the peripheral verifies the welcome', async () => {
    rig = await startHciRig(backend!, [{ n: 1, name: 'p1', mtu: 247 }]);
    const outcome = await rig.link.outcomeOf('p1');
    assert.equal(outcome.outcome, 'welcomed', JSON.stringify(outcome));
    assert.equal(outcome.gw, 'gw-ble-hci');
    const exchange = await rig.exchangeOf(addressOf(1));
    assert.equal(exchange.outcome, 'welcome');
    assert.equal(exchange.dev, 'hci-dev-1');
  });
});
