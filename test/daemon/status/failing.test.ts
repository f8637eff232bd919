import assert from 'node:assert/strict';
import type { DecisionEvent } from '../../../daemon/pipeline/types.js';
import { FailingTracker } from '../../../daemon/status/failing.js';
import { REASON_ADVICE, adviceFor } from '../../../daemon/status/reason-advice.js';
import { REASON_CODES } from '../../../protocol/index.js';

let seq = 0;
function ev(dev: string | undefined, outcome: DecisionEvent['outcome'], at: number, more: Partial<DecisionEvent> = {}): DecisionEvent {
  seq += 1;
  return { seq, at, transport: 'mqtt', connection: `mqtt:${seq}`, ...(dev === undefined ? {} : { dev }), outcome, latencyMs: 1, offline: false, ...(outcome === 'reject' ? { reason: 'bad-signature' as const } : {}), ...more };
}

describe('daemon/status/failing', () => {
  it('counts rejects per device since its last welcome, with the last reason, its advice and the retry', () => {
    const t = new FailingTracker();
    t.record(ev('d1', 'challenge', 0));
    t.record(ev('d1', 'reject', 1000, { remote: '10.0.0.1:1' }));
    t.record(ev('d1', 'reject', 2000, { reason: 'rate-limited', retry: 30, remote: '10.0.0.1:2' }));
    const [d1] = t.list(3000);
    assert.deepEqual(d1, {
      dev: 'd1', transport: 'mqtt', connection: `mqtt:${seq}`, remote: '10.0.0.1:2', failures: 2, firstAt: 1000, lastAt: 2000,
      lastReason: 'rate-limited', reasons: { 'bad-signature': 1, 'rate-limited': 1 }, nextAttemptAt: 32_000, nextAttemptBy: 'retry', advice: REASON_ADVICE['rate-limited'],
    });
    t.record(ev('d1', 'welcome', 4000));
    assert.deepEqual(t.list(5000), []);
  });

  it('ignores rejects before a device id is known and ids that are not ids', () => {
    const t = new FailingTracker();
    const e = ev(undefined, 'reject', 0);
    t.record({ ...e, dev: e.connection });
    t.record(ev('not an id', 'reject', 0));
    t.record(ev(undefined, 'reject', 0));
    assert.equal(t.size, 0);
  });

  it('is bounded by device count: the least recently failing device is evicted', () => {
    const t = new FailingTracker({ maxDevices: 3 });
    for (const [i, d] of ['a', 'b', 'c', 'a', 'd'].entries()) t.record(ev(d, 'reject', i));
    assert.equal(t.size, 3);
    assert.deepEqual(t.list(10).map((f) => f.dev), ['d', 'a', 'c']);
    for (let i = 0; i < 10_000; i++) t.record(ev(`flood-${i}`, 'reject', 100 + i));
    assert.equal(t.size, 3);
  });

  it('forgets a device that has not failed within the window, and starts its count over', () => {
    const t = new FailingTracker({ windowMs: 1000 });
    t.record(ev('a', 'reject', 0));
    t.record(ev('a', 'reject', 500));
    assert.equal(t.get('a', 1400)?.failures, 2);
    assert.equal(t.get('a', 1501), undefined);
    t.record(ev('a', 'reject', 3000, { reason: 'revoked' }));
    assert.deepEqual([t.get('a', 3000)?.failures, t.get('a', 3000)?.reasons], [1, { revoked: 1 }]);
    assert.deepEqual(t.list(5000), []);
    assert.equal(t.size, 0);
  });

  it('the BLE back-off moves the next attempt later, never earlier', () => {
    const t = new FailingTracker();
    t.record(ev('tag', 'reject', 0, { transport: 'ble', retry: 10 }));
    t.holdOff('tag', 5000);
    assert.deepEqual([t.get('tag', 1)?.nextAttemptAt, t.get('tag', 1)?.nextAttemptBy], [10_000, 'retry']);
    t.holdOff('tag', 60_000);
    assert.deepEqual([t.get('tag', 1)?.nextAttemptAt, t.get('tag', 1)?.nextAttemptBy], [60_000, 'ble-hold-off']);
    t.holdOff('unknown', 1);
    assert.equal(t.size, 1);
  });

  it('has advice for every reason code, and a generic line for an unknown one', () => {
    for (const r of REASON_CODES) {
      assert.ok(REASON_ADVICE[r].meaning.length > 10 && REASON_ADVICE[r].action.length > 10, r);
    }
    assert.match(adviceFor('toString').meaning, /not known/);
  });
});
