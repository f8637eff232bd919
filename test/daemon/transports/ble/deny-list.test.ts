import assert from 'node:assert/strict';
import { DenyList } from '../../../../daemon/transports/ble/deny-list.js';

describe('daemon/transports/ble/deny-list', () => {
  let now = 1_000_000;
  const clock = (): number => now;

  it('backs off exponentially up to the ceiling, and forgives on success', () => {
    const d = new DenyList({ baseMs: 1_000, maxMs: 8_000, afterSuccessMs: 500, now: clock });
    assert.equal(d.holdOff('a'), 0);
    assert.deepEqual([1, 2, 3, 4, 5].map(() => d.recordFailure('a')), [1_000, 2_000, 4_000, 8_000, 8_000]);
    assert.equal(d.holdOff('a'), 8_000);
    now += 3_000;
    assert.equal(d.holdOff('a'), 5_000);
    assert.equal(d.holdOff('b'), 0, 'addresses are independent');
    d.recordSuccess('a');
    assert.equal(d.failures('a'), 0);
    assert.equal(d.holdOff('a'), 500);
    assert.equal(d.recordFailure('a'), 1_000);
  });

  it("honours a reject's retry as a minimum, within the ceiling", () => {
    const d = new DenyList({ baseMs: 1_000, maxMs: 60_000, now: clock });
    assert.equal(d.recordFailure('a', 30_000), 30_000);
    assert.equal(d.recordFailure('b', 3_600_000), 60_000);
  });

  it('is bounded: the least recently touched address is evicted', () => {
    const d = new DenyList({ maxEntries: 2, now: clock });
    d.recordFailure('a');
    d.recordFailure('b');
    d.recordFailure('c');
    assert.equal(d.size, 2);
    assert.equal(d.holdOff('a'), 0);
    assert.ok(d.holdOff('c') > 0);
  });
});
