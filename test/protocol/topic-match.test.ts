/** MQTT 3.1.1 §4.7 topic-filter matching (protocol/topic-match.ts), as the lease policy uses it. */
import assert from 'node:assert/strict';
import { anyTopicMatches, topicMatches } from '../../protocol/index.js';

describe('protocol: topic-filter matching', () => {
  const cases: [string, string, boolean][] = [
    ['devices/d1/#', 'devices/d1', true],
    ['devices/d1/#', 'devices/d1/temp', true],
    ['devices/d1/#', 'devices/d1/a/b', true],
    ['devices/d1/#', 'devices/d2/temp', false],
    ['devices/+/temp', 'devices/d1/temp', true],
    ['devices/+/temp', 'devices/d1/x/temp', false],
    ['devices/+', 'devices', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/', false],
    ['+/x', '$SYS/x', false],
    ['#', '$SYS/x', false],
    ['#', 'anything/at/all', true],
  ];
  for (const [filter, topic, want] of cases) {
    it(`${filter} ${want ? 'matches' : 'does not match'} ${topic}`, () => assert.equal(topicMatches(filter, topic), want));
  }
  it('anyTopicMatches is true when one filter of several matches, false for none', () => {
    assert.equal(anyTopicMatches(['x/#', 'devices/d1/#'], 'devices/d1/t'), true);
    assert.equal(anyTopicMatches([], 'devices/d1/t'), false);
  });
});
