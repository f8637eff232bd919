import assert from 'node:assert/strict';
import { EventRing } from '../../../daemon/status/events.js';

const base = { at: 0, transport: 'ble' as const, connection: 'ble:1', outcome: 'welcome' as const, latencyMs: 1, offline: false };

describe('daemon/status/events', () => {
  it('keeps the newest events and pages by sequence', () => {
    const ring = new EventRing(3);
    assert.deepEqual(ring.since(0, 10), { events: [], next: 0, truncated: false });
    for (let i = 0; i < 5; i++) ring.push(base);
    const page = ring.since(0, 10);
    assert.deepEqual(page.events.map((e) => e.seq), [3, 4, 5]);
    assert.equal(page.truncated, true);
    assert.deepEqual(ring.since(3, 1).events.map((e) => e.seq), [4]);
    assert.equal(ring.since(3, 1).truncated, false);
  });

  it('restarts a cursor from before a daemon restart', () => {
    const ring = new EventRing(8);
    ring.push(base);
    const page = ring.since(500, 10);
    assert.deepEqual(page.events.map((e) => e.seq), [1]);
    assert.equal(page.truncated, true);
    assert.equal(page.next, 1);
  });

  it('filters by device; next is the last event looked at', () => {
    const ring = new EventRing(8);
    for (const dev of ['a', 'b', 'a', 'b', 'b']) ring.push({ ...base, dev });
    assert.deepEqual(ring.since(0, 10, 'a'), { events: [ring.since(0, 1).events[0], ring.since(2, 1).events[0]], next: 5, truncated: false });
    assert.deepEqual([ring.since(0, 1, 'b').events.map((e) => e.seq), ring.since(0, 1, 'b').next], [[2], 2]);
    assert.deepEqual(ring.since(0, 10, 'c'), { events: [], next: 5, truncated: false });
  });

  it('refuses a zero capacity', () => {
    assert.throws(() => new EventRing(0), RangeError);
  });
});
