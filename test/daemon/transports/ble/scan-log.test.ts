/** The BLE transport's log of nearby peripherals: only our service, bounded by count and age, what was learned. */
import assert from 'node:assert/strict';
import { ScanLog } from '../../../../daemon/transports/ble/scan.js';
import type { BleDiscovery } from '../../../../daemon/transports/ble/port.js';

const SERVICE = 'a1b2';
const noDeny = () => ({ holdOffMs: 0, failures: 0 });

function disc(address: string, rssi: number, services = [SERVICE]): BleDiscovery {
  return { id: address.replaceAll(':', ''), address, connectable: true, rssi, advertisement: { serviceUuids: services, localName: `n-${address.slice(-2)}` }, malformed: false };
}

describe('daemon/transports/ble: ScanLog', () => {
  it('keeps only peripherals advertising the service, the latest RSSI, most recently heard first', () => {
    let t = 1000;
    const log = new ScanLog({ now: () => t });
    log.discovered('aa:00', disc('aa:00', -70), SERVICE);
    t += 10;
    log.discovered('bb:00', disc('bb:00', -50), SERVICE);
    log.discovered('cc:00', disc('cc:00', -40, ['ffff']), SERVICE);
    t += 10;
    log.discovered('aa:00', disc('aa:00', -65), SERVICE);
    const list = log.list(noDeny);
    assert.deepEqual(list.map((p) => [p.address, p.rssi, p.seen, p.firstSeenAt, p.lastSeenAt, p.name]), [
      ['aa:00', -65, 2, 1000, 1020, 'n-00'],
      ['bb:00', -50, 1, 1010, 1010, 'n-00'],
    ]);
    assert.deepEqual([list[0]?.versions, list[0]?.versionsKnown], [[], false]);
  });

  it('evicts the least recently heard beyond maxEntries and forgets entries past the TTL', () => {
    let t = 0;
    const log = new ScanLog({ maxEntries: 2, ttlMs: 1000, now: () => t });
    log.discovered('a', disc('a', -1), SERVICE);
    log.discovered('b', disc('b', -2), SERVICE);
    log.discovered('a', disc('a', -1), SERVICE);
    log.discovered('c', disc('c', -3), SERVICE);
    assert.deepEqual(log.list(noDeny).map((p) => p.address), ['c', 'a']);
    t = 500;
    log.discovered('c', disc('c', -3), SERVICE);
    t = 1001;
    assert.deepEqual(log.list(noDeny).map((p) => p.address), ['c']);
    assert.equal(log.size, 1);
    // Heard again after expiring: a fresh entry, nothing learned carried over.
    log.learned('c', 1, true);
    t = 3000;
    log.discovered('c', disc('c', -3), SERVICE);
    assert.deepEqual(log.list(noDeny).map((p) => [p.seen, p.firstSeenAt, p.versionsKnown]), [[1, 3000, false]]);
  });

  it('records versions found or missing, the last outcome, and asks the deny list', () => {
    const log = new ScanLog({ now: () => 5 });
    log.discovered('a', disc('a', -1), SERVICE);
    log.learned('a', 2, false);
    log.learned('a', 1, true);
    log.outcome('a', { outcome: 'reject', dev: 'd', reason: 'bad-signature', version: 1 });
    log.learned('nobody', 1, true);
    log.outcome('nobody', { outcome: 'failed' });
    const [p] = log.list((a) => ({ holdOffMs: a === 'a' ? 7 : 0, failures: 1 }));
    assert.deepEqual([p?.versions, p?.versionsKnown, p?.lastOutcome, p?.deny], [[1], true, { outcome: 'reject', dev: 'd', reason: 'bad-signature', version: 1, at: 5 }, { holdOffMs: 7, failures: 1 }]);
    assert.equal(log.size, 1);
    assert.throws(() => new ScanLog({ maxEntries: 0 }), RangeError);
    assert.throws(() => new ScanLog({ ttlMs: 1.5 }), RangeError);
  });
});
