import assert from 'node:assert/strict';
import { CircuitBreaker } from '../../../daemon/backend-client/breaker.js';
import { backoffMs } from '../../../common/clock.js';
import { ManualClock } from '../../../testkit/manual-clock.js';

describe('daemon/backend-client/breaker', () => {
  it('opens after the threshold, lets one probe through when half-open, closes on success', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(clock, { failureThreshold: 3, openMs: 1000 });
    for (let i = 0; i < 2; i += 1) {
      assert.ok(b.tryAcquire());
      b.failure();
    }
    assert.equal(b.current, 'closed');
    assert.ok(b.tryAcquire());
    b.failure();
    assert.equal(b.current, 'open');
    assert.equal(b.opens, 1);
    assert.equal(b.tryAcquire(), false);
    assert.equal(b.retryInMs, 1000);
    clock.advance(999);
    assert.equal(b.tryAcquire(), false);
    clock.advance(1);
    assert.equal(b.current, 'half-open');
    assert.ok(b.tryAcquire(), 'one probe');
    assert.equal(b.tryAcquire(), false, 'only one probe at a time');
    b.success();
    assert.equal(b.current, 'closed');
    assert.ok(b.tryAcquire());
  });

  it('a failed probe opens the circuit again at once', () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker(clock, { failureThreshold: 1, openMs: 500 });
    b.failure();
    clock.advance(500);
    assert.ok(b.tryAcquire());
    b.failure();
    assert.equal(b.current, 'open');
    assert.equal(b.opens, 2);
  });

  it('a success resets the consecutive failure count', () => {
    const b = new CircuitBreaker(new ManualClock(), { failureThreshold: 2, openMs: 10000 });
    b.failure();
    b.success();
    b.failure();
    assert.equal(b.current, 'closed');
  });

  it('backoff is jittered within [d/2, d] and capped', () => {
    assert.equal(backoffMs(0, 100, 2000, () => 0), 50);
    assert.equal(backoffMs(0, 100, 2000, () => 1), 100);
    assert.equal(backoffMs(3, 100, 2000, () => 1), 800);
    assert.equal(backoffMs(10, 100, 2000, () => 1), 2000);
    assert.equal(backoffMs(10, 100, 2000, () => 0), 1000);
  });
});
