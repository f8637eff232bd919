/**
 * Protocol v2 on the BLE v2 characteristic, end to end over noble's HCI and Bumble, with the
 * daemon's v2 host (the pipeline and a session table, as daemon/compose.ts builds it): the
 * gateway prefers the v2 characteristic, writes the pipeline's challenge with a fresh ge, takes
 * the hello, relays the reference backend's grant in its welcome; the Python peripheral
 * (protocol_v2.py, written from the page) checks the grant, derives the keys and streams frames
 * on the link that stays up, until its bye or the gateway's idle time.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { startHciRig, addressOf, GW, type HciRig } from '../../../../../testkit/ble-hci-rig.js';
import { waitForEmitter } from '../../../../../testkit/wait.js';
import type { BleSessionEvent } from '../../../../../daemon/transports/ble/transport.js';
import { bleV2Suite, untilTick } from '../../../../../testkit/ble-v2-host.js';

describe('BLE protocol v2 over a real HCI stack (v2 characteristic, Bumble v2 peripheral)', function () {
  this.timeout(60_000);
  const feed = new EventEmitter();

  const t = bleV2Suite();

  const start = async (ps: Parameters<typeof startHciRig>[1], transport: Parameters<typeof startHciRig>[2] = {}): Promise<HciRig> => {
    t.rig = await startHciRig(t.backend, ps, { transport: { v2: t.host.host, ...transport.transport } });
    t.rig.transport.on('session', (e) => {
      t.sessions.push(e);
      feed.emit('session', e);
    });
    return t.rig;
  };
  const sessionOf = (dev: string, ms = 20_000): Promise<BleSessionEvent> =>
    t.sessions.find((s) => s.dev === dev)
      ? Promise.resolve(t.sessions.find((s) => s.dev === dev) as BleSessionEvent)
      : waitForEmitter<[BleSessionEvent]>(feed, 'session', (e) => e.dev === dev, `session of ${dev}`, ms).then(([e]) => e);

  it('welcomes a v2 peripheral online (grant), keeps the link, takes its pub/ping/bye frames with receipts', async () => {
    await start([
      {
        n: 51,
        name: 'v2',
        versions: [2],
        schedule: [
          { afterMs: 50, frame: { type: 'pub', topic: 'devices/hci-dev-51/temp', body: '21.5' } },
          { afterMs: 50, frame: { type: 'ping' } },
          { afterMs: 50, frame: { type: 'pub', topic: 'devices/hci-dev-51/temp', body: '21.7' } },
          { afterMs: 50, frame: { type: 'bye' } },
        ],
      },
    ]);
    const o = await t.rig!.link.outcomeOf('v2');
    assert.equal(o.outcome, 'welcomed', JSON.stringify(o));
    assert.deepEqual([o.version, o.mode, o.gw], [2, 'online', GW]);
    const e = await t.rig!.exchangeOf(addressOf(51));
    assert.deepEqual([e.outcome, e.dev, e.version], ['welcome', 'hci-dev-51', 2]);
    const s = await sessionOf('hci-dev-51');
    assert.equal(s.end, 'bye');
    assert.equal(s.framesIn, 4);
    const info = t.host.sessions[0]!.info();
    assert.equal(info.sid, o.sid, 'both sides derived the same sid');
    assert.deepEqual([info.transport, info.framesIn, info.offline], ['ble', 4, false]);
    assert.deepEqual(t.host.published, ['devices/hci-dev-51/temp 21.5', 'devices/hci-dev-51/temp 21.7']);
    assert.deepEqual(t.host.drops, []);
    assert.equal(t.host.table.size, 0, 'the session left the table with its bye');
    // The peripheral opened every receipt the gateway sealed.
    const end = await t.rig!.link.waitEvent((x) => x.event === 'session-end' && x.peripheral === 'v2', 'session-end');
    assert.equal(end.drops, 0);
    const receipts = t.rig!.link.events.filter((x) => x.event === 'frame' && x.type === 'receipt').map((x) => x.upto);
    assert.deepEqual(receipts.slice(0, 3), [0, 1, 2]);
  });

  it('ends a v2 session that is idle (bye idle, then disconnects), and the peripheral reads the bye', async () => {
    await start([{ n: 52, name: 'idle', versions: [2], schedule: [{ afterMs: 20, frame: { type: 'ping' } }] }], { transport: { idleTimeoutMs: 1_500 } });
    const s = await sessionOf('hci-dev-52');
    assert.equal(s.end, 'idle');
    assert.ok(s.durationMs >= 1_500, `${s.durationMs}`);
    const bye = await t.rig!.link.waitEvent((x) => x.event === 'frame' && x.type === 'bye', 'bye at the peripheral');
    assert.equal(bye.reason, 'idle');
  });

  it('ends the BLE v2 session of a device revoked at the backend (bye revoked), through the session table', async () => {
    await start([{ n: 56, name: 'revoked', versions: [2], schedule: [{ afterMs: 20, frame: { type: 'ping' } }] }]);
    const o = await t.rig!.link.outcomeOf('revoked');
    assert.equal(o.outcome, 'welcomed', JSON.stringify(o));
    await untilTick(t.host.feed, () => t.host.sessions.length === 1, 'the session open');
    await t.backend.tb.backend.store.revokeDevice('hci-dev-56');
    // The poll the client's timer makes (off in the rig): the revocation reaches the table's listeners.
    assert.deepEqual(await t.backend.client.pollRevocations(), ['hci-dev-56']);
    const s = await sessionOf('hci-dev-56');
    assert.equal(s.end, 'revoked');
    const bye = await t.rig!.link.waitEvent((x) => x.event === 'frame' && x.peripheral === 'revoked' && x.type === 'bye', 'bye at the peripheral');
    assert.equal(bye.reason, 'revoked');
    assert.deepEqual(t.host.table.counters().ended, { revoked: 1 });
  });

  it('says bye shutdown on a live BLE session when the transport stops, and the peripheral reads it', async () => {
    await start([{ n: 57, name: 'stopping', versions: [2], schedule: [{ afterMs: 20, frame: { type: 'ping' } }] }]);
    assert.equal((await t.rig!.link.outcomeOf('stopping')).outcome, 'welcomed');
    await t.rig!.link.waitEvent((x) => x.event === 'frame' && x.peripheral === 'stopping' && x.type === 'receipt' && x.upto === 0, 'the ping receipted');
    await t.rig!.transport.stop();
    const bye = await t.rig!.link.waitEvent((x) => x.event === 'frame' && x.peripheral === 'stopping' && x.type === 'bye', 'bye at the peripheral');
    assert.equal(bye.reason, 'shutdown');
    assert.deepEqual(t.host.table.counters().ended, { shutdown: 1 });
  });

  it('uses v1 for a device that serves both characteristics when the gateway allows only v1, and v2 when it allows both', async () => {
    await start([{ n: 53, name: 'both', versions: [1, 2] }], { transport: { versions: [1] } });
    const o = await t.rig!.link.outcomeOf('both');
    assert.deepEqual([o.outcome, o.version], ['welcomed', 1], JSON.stringify(o));
    await t.rig!.stop();
    await start([{ n: 54, name: 'both2', versions: [1, 2], schedule: [{ afterMs: 10, frame: { type: 'bye' } }] }]);
    const o2 = await t.rig!.link.outcomeOf('both2');
    assert.deepEqual([o2.outcome, o2.version], ['welcomed', 2]);
  });

  it('rejects an unregistered v2 device (the backend gives no grant) and the peripheral gets the reject', async () => {
    await start([{ n: 55, name: 'stranger', versions: [2], register: false }]);
    const o = await t.rig!.link.outcomeOf('stranger');
    assert.deepEqual([o.outcome, o.version], ['rejected', 2]);
    const e = await t.rig!.exchangeOf(addressOf(55));
    assert.equal(e.outcome, 'reject');
  });
});
