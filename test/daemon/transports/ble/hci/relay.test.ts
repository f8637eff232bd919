/**
 * A BLE relay gains nothing under v2 (docs/ble.md): the real peripheral advertises without the
 * Gatehouse service, so the gateway reaches it only through a relay, one more Bumble device on
 * the link that is a peripheral toward the gateway and a central toward the real peripheral
 * (gatehouse_bumble/relay.py). The relay forwards the exchange unchanged and the peripheral is
 * welcomed; then it replays and alters frames: the gateway's session (the daemon's v2 host and
 * session table) drops them, the session goes on (or ends after 16 drops), and the relay never
 * sees a plaintext.
 */
import assert from 'node:assert/strict';
import { startHciRig, GW, addressOf, type HciRig } from '../../../../../testkit/ble-hci-rig.js';
import { bleV2Suite, untilTick } from '../../../../../testkit/ble-v2-host.js';

/** Flags and a name only: no service UUID, so the gateway's scan never picks this device. */
function hiddenAdvertising(name: string): Uint8Array {
  const n = Buffer.from(name);
  return new Uint8Array([2, 0x01, 0x06, n.length + 1, 0x09, ...n]);
}

describe('a BLE relay between a real v2 peripheral and the gateway (Bumble relay device, real HCI stack)', function () {
  this.timeout(60_000);

  const t = bleV2Suite();

  const RELAY = addressOf(0x70);
  const start = async (n: number): Promise<HciRig> => {
    t.rig = await startHciRig(
      t.backend,
      [{ n, name: 'real', versions: [2], misbehave: { advertisingData: hiddenAdvertising('REAL-ONLY-RELAY') } }],
      { transport: { v2: t.host.host }, relays: [{ name: 'relay', address: RELAY, target: addressOf(n) }] },
    );
    const feed = t.host.feed;
    t.rig.transport.on('session', (e) => {
      t.sessions.push(e);
      feed.emit('tick');
    });
    t.rig!.transport.on('exchange', () => feed.emit('tick'));
    // Every link event (the peripheral's and the relay's) may settle a condition.
    t.rig!.link.onEvent(() => feed.emit('tick'));
    return t.rig;
  };
  const relayed = (dir: 'p2g' | 'g2p'): Buffer[] =>
    t.rig!.link.events.filter((e) => e.event === 'relay' && e.dir === dir).map((e) => Buffer.from(e.hex as string, 'hex'));
  const drops = (): string[] => t.host.drops;
  /** Frames the gateway's session opened. */
  const framesIn = (): number => t.host.sessions[0]?.info().framesIn ?? 0;
  const until = (check: () => boolean, what: string): Promise<void> => untilTick(t.host.feed, check, what);

  it('forwards the exchange unchanged (welcome), then its replayed and altered frames are dropped and the session goes on', async () => {
    await start(71);
    const o = await t.rig!.link.outcomeOf('real');
    assert.deepEqual([o.outcome, o.version, o.mode, o.gw], ['welcomed', 2, 'online', GW], JSON.stringify(o));
    // The gateway only ever connected to the relay: the exchange is at the relay's address, for the real device.
    const e = await t.rig!.exchangeOf(RELAY);
    assert.deepEqual([e.outcome, e.dev, e.version], ['welcome', 'hci-dev-71', 2]);
    assert.equal(t.rig!.exchanges.some((x) => x.address === addressOf(71)), false, 'the gateway never reached the real peripheral directly');
    assert.equal(t.host.sessions[0]!.info().sid, o.sid, 'gateway and peripheral derived the same session through the relay');

    t.rig!.link.send('real', { type: 'pub', topic: 'devices/hci-dev-71/t', body: 'secret-one' });
    await until(() => framesIn() === 1, 'first frame at the gateway');

    t.rig!.link.relay('relay', 'inject');
    await until(() => drops().length === 1, 'the replayed frame dropped');
    t.rig!.link.relay('relay', 'alter');
    t.rig!.link.send('real', { type: 'pub', topic: 'devices/hci-dev-71/t', body: 'secret-two' });
    await t.rig!.link.waitEvent((x) => x.event === 'relay-altered', 'the relay altered a frame');
    await until(() => drops().length === 2, 'the altered frame dropped');
    assert.deepEqual(drops(), ['GH_FRAME_REPLAY', 'GH_FRAME_DECRYPT']);
    // The table's counters, which /metrics reads (gatehouse_v2_frames_dropped_total), as for MQTT.
    assert.deepEqual(t.host.table.counters().drops, { GH_FRAME_REPLAY: 1, GH_FRAME_DECRYPT: 1 });

    // The session is intact: the next frame and the peripheral's bye are taken, with a receipt.
    t.rig!.link.send('real', { type: 'pub', topic: 'devices/hci-dev-71/t', body: 'secret-three' });
    t.rig!.link.send('real', { type: 'bye' });
    await until(() => t.sessions.length === 1, 'the session ended');
    assert.equal(t.sessions[0]!.end, 'bye');
    // seq 0, 2 and the bye (3) taken; seq 1 was the altered one.
    assert.equal(framesIn(), 3);
    assert.deepEqual(t.host.published, ['devices/hci-dev-71/t secret-one', 'devices/hci-dev-71/t secret-three']);
    // protocol-v2: before erasing the keys on P's bye, G receipts every frame before it; the
    // altered seq 1 never decrypted, so it is settled lost (P may send it again in a new session).
    const receipt = await t.rig!.link.waitEvent((x) => x.event === 'frame' && x.peripheral === 'real' && x.type === 'receipt' && x.upto === 3, 'receipt upto 3');
    assert.deepEqual(receipt.lost, [1]);

    // What the relay saw: the hello and frames one way, the challenge, the welcome and frames the other;
    // every frame is a COSE_Encrypt0 (tag 16) and no plaintext crosses it.
    const up = relayed('p2g');
    const down = relayed('g2p');
    assert.ok(up.length >= 4 && down.length >= 2, `${up.length} up, ${down.length} down`);
    for (const f of [...up.slice(1), ...down.slice(2)]) assert.equal(f[0], 0xd0, `not a COSE_Encrypt0: ${f.subarray(0, 4).toString('hex')}`);
    for (const f of [...up, ...down]) {
      for (const secret of ['secret-one', 'secret-two', 'secret-three']) assert.equal(f.includes(secret), false, `${secret} crossed the relay in clear`);
    }
  });

  it('a relay that injects 16 frames ends the session (bye malformed), which the peripheral reads', async () => {
    await start(72);
    const o = await t.rig!.link.outcomeOf('real');
    assert.equal(o.outcome, 'welcomed', JSON.stringify(o));
    t.rig!.link.send('real', { type: 'ping' });
    await until(() => framesIn() === 1, 'the ping at the gateway');
    t.rig!.link.relay('relay', 'inject', 16);
    await until(() => t.sessions.length === 1, 'the session ended');
    assert.equal(t.sessions[0]!.end, 'malformed');
    assert.equal(drops().length, 16);
    assert.deepEqual(t.host.table.counters().ended, { malformed: 1 });
    assert.ok(drops().every((c) => c === 'GH_FRAME_REPLAY'), drops().join());
    const bye = await t.rig!.link.waitEvent((x) => x.event === 'frame' && x.peripheral === 'real' && x.type === 'bye', 'bye at the peripheral');
    assert.equal(bye.reason, 'malformed');
  });
});
