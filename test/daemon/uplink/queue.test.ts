/**
 * The uplink queue's record and byte counts (what the `maxBytes` bound and busy are decided on)
 * are kept from what each commit added and each removal took away, without counting the file
 * again: they must stay equal to the file's own totals through repeated records and removals of
 * records already gone.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { QUEUE_FILE, UplinkQueue } from '../../../daemon/uplink/queue.js';
import { recordSize, type TelemetryRecord } from '../../../daemon/uplink/queue-store.js';
import { tempDirEach } from '../../../testkit/temp-dir.js';

const sid = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
const rec = (seq: number, bodyBytes = 10 + seq): TelemetryRecord => ({ dev: 'd-1', sid, seq, topic: 'devices/d-1/t', body: new Uint8Array(bodyBytes), receivedAt: Date.now() });

describe('daemon/uplink queue counts', () => {
  const dir = tempDirEach('gh-uplink-queue-');
  let q: UplinkQueue | undefined;
  afterEach(() => q?.close());

  function open(): UplinkQueue {
    q = new UplinkQueue({ stateDir: dir.path, maxBytes: 1 << 20, maxAgeSec: 3600, busyRetrySec: 5, now: () => Date.now() });
    q.open();
    return q;
  }

  function assertMatchesFile(queue: UplinkQueue, records: number, bytes: number): void {
    const file = queue.store.totals();
    assert.equal(queue.stats().records, records);
    assert.equal(queue.stats().bytes, bytes);
    assert.equal(file.records, records, 'the file holds as many records as counted');
    assert.equal(file.bytes, bytes, 'the file holds as many bytes as counted');
  }

  it('counts what commits added (a record queued twice once) and what removals took (a record removed twice once)', async () => {
    const queue = open();
    const all = Array.from({ length: 10 }, (_, i) => rec(i));
    for (const r of await Promise.all(all.map((r) => queue.offerPub(r)))) assert.deepEqual(r, { stored: true });
    const size = (rs: TelemetryRecord[]): number => rs.reduce((a, r) => a + recordSize(r), 0);
    assertMatchesFile(queue, 10, size(all));
    // The same (dev, sid, seq) again is stored already: answered stored, not added.
    assert.deepEqual(await queue.offerPub(rec(3)), { stored: true });
    assertMatchesFile(queue, 10, size(all));
    const oldest = queue.oldest(4);
    assert.deepEqual(oldest.map((r) => r.seq), [0, 1, 2, 3]);
    queue.remove(oldest);
    assertMatchesFile(queue, 6, size(all.slice(4)));
    queue.remove(oldest);
    assertMatchesFile(queue, 6, size(all.slice(4)));
    queue.remove(queue.oldest(100));
    assertMatchesFile(queue, 0, 0);
  });

  it('a removal between commits holds after reopening, and the reopened queue counts what the file holds', async () => {
    const queue = open();
    await Promise.all([0, 1, 2].map((i) => queue.offerPub(rec(i))));
    queue.remove(queue.oldest(1));
    await queue.offerPub(rec(3));
    queue.close();
    q = undefined;
    const db = new Database(join(dir.path, QUEUE_FILE), { readonly: true });
    try {
      assert.deepEqual((db.prepare('SELECT seq FROM telemetry ORDER BY seq').all() as { seq: number }[]).map((r) => r.seq), [1, 2, 3]);
    } finally {
      db.close();
    }
    const again = open();
    assertMatchesFile(again, 3, [1, 2, 3].reduce((a, i) => a + recordSize(rec(i)), 0));
  });
});
