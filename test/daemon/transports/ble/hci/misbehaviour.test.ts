/**
 * Peripherals that misbehave, on the HCI stack (noble HCI over a Bumble UART): each exchange
 * fails the right way, the gateway disconnects, and well-behaved peripherals on the same link are
 * still served. Also: five peripherals under a limit of two links.
 */
import assert from 'node:assert/strict';
import { hciSuite, addressOf, type HciRig } from '../../../../../testkit/ble-hci-rig.js';

const SERVICE_LE = Buffer.from('84987abc71fe493ca15d1ddd7d599687', 'hex').reverse();

describe('BLE over a real HCI stack: misbehaving peripherals and the link limit', function () {
  this.timeout(60_000);
  const suite = hciSuite();
  let rig: HciRig | undefined;

  it('serves five peripherals with at most two links open at once, welcoming all five', async () => {
    const ns = [31, 32, 33, 34, 35];
    rig = await suite.start(ns.map((n) => ({ n, name: `p${n}`, mtu: n % 2 === 0 ? 23 : 247 })), { transport: { maxConcurrent: 2 } });
    const outcomes = await Promise.all(ns.map((n) => rig!.link.outcomeOf(`p${n}`, 30_000)));
    assert.deepEqual(outcomes.map((o) => o.outcome), Array(5).fill('welcomed'), JSON.stringify(outcomes));
    const exchanges = await Promise.all(ns.map((n) => rig!.exchangeOf(addressOf(n))));
    assert.deepEqual(exchanges.map((e) => e.outcome), Array(5).fill('welcome'));
    assert.ok(rig.transport.stats().maxActive <= 2, `maxActive ${rig.transport.stats().maxActive}`);
    // The controller's view: LE connections up at once never exceeded two.
    let open = 0;
    let most = 0;
    for (const r of await rig.link.trace()) {
      if (r.dir !== 'controller->host' || r.kind !== 'event') continue;
      if (r.name === 'HCI_LE_CONNECTION_COMPLETE_EVENT' || r.name === 'HCI_LE_ENHANCED_CONNECTION_COMPLETE_EVENT') most = Math.max(most, ++open);
      if (r.name === 'HCI_DISCONNECTION_COMPLETE_EVENT') open--;
    }
    // Never more than the limit. (Whether two were ever up together depends on scheduling: on a
    // loaded machine each exchange can finish before the next link comes up.)
    assert.ok(most >= 1 && most <= 2, `at most two links open together, saw ${most}`);
  });

  it('fails the exchange of a peripheral that drops the link mid-exchange', async () => {
    rig = await suite.start([{ n: 41, name: 'vanish', misbehave: { disconnectAfterChallenge: true, once: true } }]);
    const e = await rig.exchangeOf(addressOf(41));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_DISCONNECTED');
    assert.equal((await rig.link.outcomeOf('vanish')).outcome, 'incomplete');
  });

  it('fails the exchange of a peripheral that never answers, at the exchange deadline, and disconnects it', async () => {
    rig = await suite.start([{ n: 42, name: 'silent', misbehave: { neverAnswer: true, once: true } }], { transport: { exchangeTimeoutMs: 2_500 } });
    const e = await rig.exchangeOf(addressOf(42));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_TIMEOUT');
    const o = await rig.link.outcomeOf('silent');
    assert.equal(o.outcome, 'incomplete', 'the gateway dropped the link');
    assert.match(o.detail ?? '', /reason 0x16|reason 0x13/, 'a disconnect from the central');
  });

  it('fails a peripheral whose service lacks the characteristic, with a GATT mismatch', async () => {
    rig = await suite.start([{ n: 43, name: 'nochar', misbehave: { noCharacteristic: true, once: true } }]);
    const e = await rig.exchangeOf(addressOf(43));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_GATT_MISMATCH');
  });

  it('survives malformed advertisements: garbage is never connected, an odd one is flagged and still judged by its hello', async () => {
    // Service list fine, a name with control characters, then a structure whose length overruns.
    const odd = Buffer.concat([Buffer.from([0x11, 0x07]), SERVICE_LE, Buffer.from([0x05, 0x09, 0x62, 0x00, 0x07, 0x1b]), Buffer.from([0x1e, 0xff, 0x01])]);
    // Garbage from the first byte: noble's parser stops, no service, never reported.
    const garbage = Buffer.from([0x00, 0xff, 0x3f, 0x07, 0x84, 0x98]);
    const flagged: string[] = [];
    rig = await suite.start([
      { n: 44, name: 'garbage', misbehave: { advertisingData: garbage } },
      { n: 45, name: 'odd', misbehave: { advertisingData: odd } },
      { n: 46, name: 'good' },
    ]);
    rig.central.on('discover', (d) => {
      if (d.malformed) flagged.push(d.address);
    });
    const [odd45, good46] = await Promise.all([rig.link.outcomeOf('odd'), rig.link.outcomeOf('good')]);
    assert.equal(odd45.outcome, 'welcomed', 'a peripheral is judged by its hello, not its advertisement');
    assert.equal(good46.outcome, 'welcomed');
    assert.ok(rig.exchanges.every((e) => e.address !== addressOf(44)));
    assert.ok(!rig.link.events.some((e) => e.event === 'connected' && e.peripheral === 'garbage'), 'garbage was never connected');
    // The odd advertisement repeats every 50 ms: at least one was seen after the listener was added.
    if (!flagged.includes(addressOf(45))) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('odd advertisement never flagged malformed')), 5_000);
        const off = rig!.central.on('discover', (d) => {
          if (d.malformed && d.address === addressOf(45)) {
            clearTimeout(timer);
            off();
            resolve();
          }
        });
      });
    }
  });
});
