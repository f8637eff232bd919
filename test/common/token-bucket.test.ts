/** The one token bucket (common/token-bucket.ts) that the TPM store and the pipeline share. */
import assert from 'node:assert/strict';
import { TokenBucket } from '../../common/token-bucket.js';

function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('common/token-bucket', () => {
  it('starts full, allows the burst back to back, then answers the seconds until the next token', () => {
    const clock = manualClock();
    const b = new TokenBucket({ burst: 2, perSecond: 0.5 }, clock);
    assert.equal(b.take(), 0);
    assert.equal(b.take(), 0);
    assert.equal(b.take(), 2, 'one token at 0.5/s is 2 s away');
    clock.advance(500);
    assert.equal(b.take(), 1.5, 'a refused take spends nothing; the wait shrinks with time');
    clock.advance(1500);
    assert.equal(b.take(), 0);
  });

  it('never holds more than its burst, however long it idles', () => {
    const clock = manualClock();
    const b = new TokenBucket({ burst: 3, perSecond: 10 }, clock);
    clock.advance(3_600_000);
    for (let i = 0; i < 3; i++) assert.equal(b.take(), 0);
    assert.ok(b.take() > 0);
  });

  it('ignores a clock that steps back', () => {
    const clock = manualClock();
    const b = new TokenBucket({ burst: 1, perSecond: 1 }, clock);
    assert.equal(b.take(), 0);
    clock.advance(-60_000);
    assert.equal(b.take(), 1, 'no tokens appear from a backward step');
    clock.advance(1000);
    assert.equal(b.take(), 0);
  });

  it('gives back a token, capped at the burst', () => {
    const clock = manualClock();
    const b = new TokenBucket({ burst: 1, perSecond: 1 }, clock);
    b.giveBack();
    assert.equal(b.take(), 0);
    assert.ok(b.take() > 0, 'the give-back on a full bucket did not overfill it');
    b.giveBack();
    assert.equal(b.take(), 0);
  });

  it('takes new limits keeping its tokens, capped at the new burst', () => {
    const clock = manualClock();
    const b = new TokenBucket({ burst: 5, perSecond: 1 }, clock);
    b.setSpec({ burst: 1, perSecond: 0.25 });
    assert.deepEqual(b.spec, { burst: 1, perSecond: 0.25 });
    assert.equal(b.take(), 0);
    assert.equal(b.take(), 4, 'the new rate sets the wait');
  });
});
