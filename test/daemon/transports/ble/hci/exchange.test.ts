/**
 * The gateway's BLE transport through noble's own HCI layer, over a Bumble controller's HCI
 * UART, against Bumble peripherals (a second, independent BLE stack running the peripheral side
 * of protocol v1 in Python), with the real pipeline, backend client and reference backend.
 */
import assert from 'node:assert/strict';
import { hciSuite, addressOf, type HciRig } from '../../../../../testkit/ble-hci-rig.js';

describe('BLE over a real HCI stack (noble HCI over a Bumble UART, Bumble peripherals)', function () {
  this.timeout(60_000);
  const suite = hciSuite();
  let rig: HciRig | undefined;

  it('authenticates a registered peripheral end to end, and the run went through noble\'s HCI layer', async () => {
    rig = await suite.start([{ n: 1, name: 'p1', mtu: 247 }]);
    const outcome = await rig.link.outcomeOf('p1');
    assert.equal(outcome.outcome, 'welcomed', JSON.stringify(outcome));
    assert.equal(outcome.gw, 'gw-ble-hci');
    const exchange = await rig.exchangeOf(addressOf(1));
    assert.equal(exchange.outcome, 'welcome');
    assert.equal(exchange.dev, 'hci-dev-1');

    // What noble sent the controller, as Bumble's controller received it.
    const trace = await rig.link.trace();
    const commands = new Set(trace.filter((r) => r.dir === 'host->controller' && r.kind === 'command').map((r) => r.name));
    for (const name of ['HCI_RESET_COMMAND', 'HCI_LE_SET_SCAN_PARAMETERS_COMMAND', 'HCI_LE_SET_SCAN_ENABLE_COMMAND', 'HCI_LE_CREATE_CONNECTION_COMMAND']) {
      assert.ok(commands.has(name), `${name} in the trace: ${[...commands].join(' ')}`);
    }
    const att = trace.filter((r) => r.kind === 'acl' && r.att !== undefined);
    // noble's ATT Exchange MTU Request (client Rx MTU 256), the peripheral's answer (247).
    assert.ok(att.some((r) => r.dir === 'host->controller' && r.head === '020001'), 'Exchange MTU Request for 256');
    assert.ok(att.some((r) => r.dir === 'controller->host' && r.head === '03f700'), 'Exchange MTU Response 247');
    // The challenge and welcome as ATT Write Requests (0x12), the hello as notifications (0x1b).
    assert.ok(att.filter((r) => r.dir === 'host->controller' && r.att === '0x12').length >= 3);
    assert.equal(att.filter((r) => r.dir === 'controller->host' && r.att === '0x1b').length, outcome.notifySizes.length);
  });

  it('delivers the gateway\'s reject for an unregistered device to the peripheral', async () => {
    rig = await suite.start([{ n: 2, name: 'stranger', register: false }]);
    const outcome = await rig.link.outcomeOf('stranger');
    assert.equal(outcome.outcome, 'rejected', JSON.stringify(outcome));
    assert.equal(outcome.reason, 'unknown-device');
    assert.equal((await rig.exchangeOf(addressOf(2))).outcome, 'reject');
  });

  for (const { mtu, negotiated } of [
    { mtu: 23, negotiated: 23 },
    { mtu: 185, negotiated: 185 },
    { mtu: 247, negotiated: 247 },
    // noble asks for 256; a server that offers 517 gets 256, and noble reports 517 (its bug).
    { mtu: 517, negotiated: 256 },
  ]) {
    it(`frames at the negotiated ATT MTU: peripheral offers ${mtu}, both use ${negotiated}`, async () => {
      const n = 10 + (mtu % 200);
      rig = await suite.start([{ n, name: `m${mtu}`, mtu }]);
      const outcome = await rig.link.outcomeOf(`m${mtu}`);
      assert.equal(outcome.outcome, 'welcomed', JSON.stringify(outcome));
      assert.equal(outcome.mtu, negotiated, 'the MTU at the peripheral');
      // Every write fits one ATT Write Request at the negotiated MTU, and the welcome (over 300
      // bytes) fills chunks to exactly MTU-3: the gateway used the negotiated MTU, not more, not less.
      assert.equal(Math.max(...outcome.writeSizes), negotiated - 3, `write sizes ${outcome.writeSizes.join(',')}`);
      // The hello (about 140 bytes) comes back in chunks of at most MTU-3, full ones where it is longer.
      const hello = outcome.notifySizes.reduce((a, b) => a + b - 1, 0);
      assert.equal(Math.max(...outcome.notifySizes), Math.min(negotiated - 3, hello + 1), `notify sizes ${outcome.notifySizes.join(',')}`);
      const trace = await rig.link.trace();
      assert.ok(trace.every((r) => r.kind !== 'acl' || r.att !== '0x12' || (r.len ?? 0) <= negotiated + 4), 'no ATT write over the MTU (+4 bytes of L2CAP header)');
    });
  }
});
