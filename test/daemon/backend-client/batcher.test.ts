import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { Batcher, type BatchItem } from '../../../daemon/backend-client/batcher.js';
import { ManualClock } from '../../../testkit/manual-clock.js';

type Item = BatchItem<string, string>;

/** A batcher whose batches stay in flight until the test answers them; time moves only by hand. */
function rig(o: { flushWhenIdle?: boolean; maxBatch?: number; maxInFlight?: number } = {}) {
  const clock = new ManualClock();
  const sent: Item[][] = [];
  const answer: (() => void)[] = [];
  const b = new Batcher<string, string>({
    clock,
    maxBatch: o.maxBatch ?? 64,
    maxWaitMs: 10,
    maxInFlight: o.maxInFlight ?? 4,
    maxQueue: 100,
    ...(o.flushWhenIdle !== undefined ? { flushWhenIdle: o.flushWhenIdle } : {}),
    run: (items) => {
      sent.push(items);
      return new Promise<void>((resolve) => {
        answer.push(() => {
          for (const i of items) b.settle(i, `ok:${i.req}`);
          resolve();
        });
      });
    },
    onDeadline: () => 'deadline',
    onAbort: () => 'aborted',
  });
  return { b, clock, sent, answer, reqs: (n: number) => sent[n]?.map((i) => i.req) };
}

describe('daemon/backend-client/batcher: when a batch leaves', () => {
  it('sends at the end of the turn when nothing is in flight, with everything that arrived in that turn', async () => {
    const { b, sent, answer, reqs } = rig();
    const a = b.submit('a', 60_000);
    const c = b.submit('c', 60_000);
    assert.equal(sent.length, 0, 'not inside the turn that queued them');
    await turn();
    assert.deepEqual(reqs(0), ['a', 'c'], 'no maxWaitMs wait: the clock never moved');
    answer[0]?.();
    assert.deepEqual(await Promise.all([a, c]), ['ok:a', 'ok:c']);
  });

  it('while a batch is in flight, later items wait for maxWaitMs or for the slot, then leave together', async () => {
    const { b, clock, sent, answer, reqs } = rig({ maxInFlight: 1 });
    const first = b.submit('1', 60_000);
    await turn();
    assert.equal(sent.length, 1);
    const later = [b.submit('2', 60_000), b.submit('3', 60_000)];
    await turn();
    clock.advance(10);
    await turn();
    assert.equal(sent.length, 1, 'the one slot is busy: nothing else leaves');
    answer[0]?.();
    assert.equal(await first, 'ok:1');
    await turn();
    assert.deepEqual(reqs(1), ['2', '3'], 'the freed slot takes both at once');
    answer[1]?.();
    assert.deepEqual(await Promise.all(later), ['ok:2', 'ok:3']);
  });

  it('with a free slot, items arriving during a flight leave after maxWaitMs, not before', async () => {
    const { b, clock, sent, answer, reqs } = rig({ maxInFlight: 2 });
    void b.submit('1', 60_000);
    await turn();
    void b.submit('2', 60_000);
    await turn();
    clock.advance(9);
    await turn();
    assert.equal(sent.length, 1, 'held 9 ms of 10');
    clock.advance(1);
    assert.deepEqual(reqs(1), ['2']);
    for (const a of answer) a();
  });

  it('without flushWhenIdle, even an idle link waits maxWaitMs (or a full batch)', async () => {
    const { b, clock, sent, answer, reqs } = rig({ flushWhenIdle: false, maxBatch: 3 });
    void b.submit('x', 60_000);
    await turn();
    assert.equal(sent.length, 0);
    clock.advance(10);
    assert.deepEqual(reqs(0), ['x']);
    for (const r of ['p', 'q', 'r']) void b.submit(r, 60_000);
    assert.deepEqual(reqs(1), ['p', 'q', 'r'], 'a full batch leaves at once');
    for (const a of answer) a();
  });

  it('drain answers what waits for the end of the turn, and nothing is sent after it', async () => {
    const { b, sent } = rig();
    const p = b.submit('d', 60_000);
    b.drain(() => 'drained');
    assert.equal(await p, 'drained');
    await turn();
    assert.equal(sent.length, 0);
  });
});
