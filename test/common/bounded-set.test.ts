import assert from 'node:assert/strict';
import { BoundedSet } from '../../common/bounded-set.js';

describe('common/bounded-set', () => {
  it('holds at most max keys and forgets the least recently added or touched first', () => {
    const s = new BoundedSet(2);
    s.add('a');
    s.add('b');
    assert.equal(s.has('a'), true); // touches a: b is now the oldest
    s.add('c');
    assert.equal(s.size, 2);
    assert.equal(s.has('b'), false);
    assert.equal(s.has('a'), true);
    assert.equal(s.has('c'), true);
  });

  it('refuses a bound that is not a positive integer', () => {
    assert.throws(() => new BoundedSet(0), RangeError);
    assert.throws(() => new BoundedSet(1.5), RangeError);
  });
});
