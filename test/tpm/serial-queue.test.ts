/** The serial queue every TPM call goes through; the token bucket in front of signing. */
import assert from 'node:assert/strict';
import { TpmError } from '../../tpm/errors.js';
import { systemClock } from '../../common/clock.js';
import { SignRateLimiter } from '../../tpm/rate-limiter.js';
import { SerialQueue } from '../../tpm/serial-queue.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('tpm/serial-queue', () => {
  it('never runs two jobs at once and keeps order', async () => {
    const q = new SerialQueue({ maxPending: 10, timeoutMs: 10_000 });
    let running = 0;
    const order: number[] = [];
    const gates = [deferred(), deferred(), deferred()];
    const jobs = gates.map((g, i) =>
      q.run(async () => {
        running++;
        assert.equal(running, 1, 'one job at a time');
        await g.promise;
        order.push(i);
        running--;
        return i;
      }, `job${i}`),
    );
    gates[2]?.resolve();
    gates[1]?.resolve();
    gates[0]?.resolve();
    assert.deepEqual(await Promise.all(jobs), [0, 1, 2]);
    assert.deepEqual(order, [0, 1, 2]);
  });

  it('answers GH_TPM_BUSY when full (backpressure)', async () => {
    const q = new SerialQueue({ maxPending: 2, timeoutMs: 10_000 });
    const gate = deferred();
    const a = q.run(() => gate.promise, 'a');
    const b = q.run(() => gate.promise, 'b');
    await assert.rejects(q.run(async () => undefined, 'c'), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_BUSY');
    gate.resolve();
    await Promise.all([a, b]);
    await q.run(async () => undefined, 'd');
  });

  it('times a stuck job out, skips jobs whose caller gave up, and still serialises', async () => {
    const q = new SerialQueue({ maxPending: 10, timeoutMs: 50 });
    const gate = deferred();
    let timedOut = 0;
    let secondRan = false;
    const stuck = q.run(() => gate.promise, 'stuck', () => timedOut++);
    const second = q.run(async () => {
      secondRan = true;
    }, 'second');
    await assert.rejects(stuck, (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_TIMEOUT');
    await assert.rejects(second, (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_TIMEOUT');
    assert.equal(timedOut, 1);
    gate.resolve();
    await q.drain();
    assert.equal(secondRan, false, 'a job whose caller timed out before it started is skipped');
    assert.equal(q.size, 0);
  });
});

describe('tpm/rate-limiter (SignRateLimiter over common/token-bucket)', () => {
  it('allows a burst, then refills at the configured rate (injected clock)', () => {
    let now = 0;
    const b = new SignRateLimiter({ burst: 3, perSecond: 0.5 }, { now: () => now });
    b.take();
    b.take();
    b.take();
    assert.throws(() => b.take(), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_RATE_LIMITED' && /retry in 2000 ms/.test(e.message));
    now += 1999;
    assert.throws(() => b.take(), TpmError);
    now += 1;
    b.take();
    now += 3_600_000;
    for (let i = 0; i < 3; i++) b.take();
    assert.throws(() => b.take(), TpmError, 'the bucket never holds more than its burst');
  });

  it('refuses a nonsensical configuration', () => {
    assert.throws(() => new SignRateLimiter({ burst: 0, perSecond: 1 }, systemClock), (e: unknown) => e instanceof TpmError && e.code === 'GH_TPM_BAD_CONFIG');
    assert.throws(() => new SignRateLimiter({ burst: 1, perSecond: 0 }, systemClock), TpmError);
  });
});
