import assert from 'node:assert/strict';
import {
  checkClientId,
  checkDeliver,
  checkPublish,
  checkSubscribe,
  checkWillAtConnect,
  type AclConnection,
} from '../../../../daemon/transports/mqtt/acl.js';
import { filterCovers, isValidTopicFilter, parseAuthTopic, topicMatches } from '../../../../daemon/transports/mqtt/topics.js';

const opts = { allowRetain: false };

function fresh(): AclConnection {
  return { boundDev: undefined, policy: undefined, closing: false };
}

function welcomed(dev: string): AclConnection {
  return { boundDev: dev, policy: { pub: [`devices/${dev}/#`], sub: [`devices/${dev}/cmd/#`] }, closing: false };
}

describe('daemon/transports/mqtt topics (MQTT 3.1.1 §4.7)', () => {
  it('matches + and # as the standard says', () => {
    const cases: [string, string, boolean][] = [
      ['sport/tennis/#', 'sport/tennis', true], // [MQTT-4.7.1-2] # includes the parent
      ['sport/tennis/#', 'sport/tennis/player1/ranking', true],
      ['sport/+', 'sport', false],
      ['sport/+', 'sport/', true],
      ['+/+', '/finance', true],
      ['/+', '/finance', true],
      ['+', '/finance', false],
      ['#', '$SYS/x', false], // [MQTT-4.7.2-1]
      ['+/x', '$SYS/x', false],
      ['$SYS/#', '$SYS/x', true],
      ['a/b', 'a/b/c', false],
      ['a/b/c', 'a/b', false],
    ];
    for (const [f, t, want] of cases) assert.equal(topicMatches(f, t), want, `${f} vs ${t}`);
  });

  it('decides whether a granted filter covers a requested one', () => {
    const cases: [string, string, boolean][] = [
      ['devices/a/#', 'devices/a/cmd/#', true],
      ['devices/a/#', 'devices/a', true],
      ['devices/a/#', 'devices/a/+/x', true],
      ['devices/a/cmd/#', 'devices/a/#', false],
      ['devices/a/#', 'devices/+/cmd', false],
      ['devices/a/#', '#', false],
      ['devices/+/cmd', 'devices/a/cmd', true],
      ['devices/+/cmd', 'devices/+/cmd', true],
      ['devices/a/cmd', 'devices/+/cmd', false],
      ['devices/a/cmd', 'devices/a/cmd/x', false],
      ['devices/a/+', 'devices/a/#', false],
    ];
    for (const [g, r, want] of cases) assert.equal(filterCovers(g, r), want, `${g} covers ${r}`);
  });

  it('validates filters and parses only exact auth topics', () => {
    for (const bad of ['', 'a/#/b', 'a/b#', 'a+/b', 'a/\u0000']) assert.equal(isValidTopicFilter(bad), false, bad);
    for (const good of ['#', '+', 'a/+/b', 'a/#', '/']) assert.equal(isValidTopicFilter(good), true, good);
    assert.deepEqual(parseAuthTopic('gatehouse/v1/dev-1/up'), { dev: 'dev-1', direction: 'up', version: 1 });
    assert.deepEqual(parseAuthTopic('gatehouse/v2/dev-1/down'), { dev: 'dev-1', direction: 'down', version: 2 });
    assert.equal(parseAuthTopic('gatehouse/v3/dev-1/up'), undefined);
    assert.equal(parseAuthTopic('gatehouse/v1/+/up'), undefined);
    assert.equal(parseAuthTopic('gatehouse/v1/dev-1/up/x'), undefined);
    assert.equal(parseAuthTopic('gatehouse/v1/a b/up'), undefined);
  });
});

describe('daemon/transports/mqtt ACL (default deny, no broker)', () => {
  it('lets a fresh connection publish to its up topic at QoS 1 and binds it to that device', () => {
    const c = fresh();
    const d = checkPublish(c, 'gatehouse/v1/dev-a/up', 1, false, opts);
    assert.deepEqual(d, { ok: true, bind: 'dev-a' });
    c.boundDev = 'dev-a';
    assert.deepEqual(checkPublish(c, 'gatehouse/v1/dev-a/up', 1, false, opts), { ok: true });
    assert.equal(checkPublish(c, 'gatehouse/v1/dev-b/up', 1, false, opts).ok, false, 'another device');
    assert.equal(checkSubscribe(c, 'gatehouse/v1/dev-b/down', 1).ok, false, 'another device');
  });

  it('refuses QoS other than 1 and retain on auth topics', () => {
    assert.equal(checkPublish(fresh(), 'gatehouse/v1/dev-a/up', 0, false, opts).ok, false);
    assert.equal(checkPublish(fresh(), 'gatehouse/v1/dev-a/up', 2, false, opts).ok, false);
    assert.equal(checkPublish(fresh(), 'gatehouse/v1/dev-a/up', 1, true, opts).ok, false);
  });

  it('the client id carries no identity: any id is accepted unless a live connection holds it (protocol-v2)', () => {
    for (const id of ['', 'dev-a', '#', 'mosq/x', '__proto__', 'constructor', 'a'.repeat(65), 'ünï code']) {
      assert.equal(checkClientId(id, false).ok, true, id);
      assert.equal(checkClientId(id, true).ok, id === '', `${id} in use`);
    }
  });

  it('only the gateway publishes on down; nobody subscribes to up', () => {
    assert.equal(checkPublish(fresh(), 'gatehouse/v1/dev-a/down', 1, false, opts).ok, false);
    assert.equal(checkPublish(welcomed('dev-a'), 'gatehouse/v1/dev-a/down', 1, false, opts).ok, false);
    assert.equal(checkSubscribe(fresh(), 'gatehouse/v1/dev-a/up', 1).ok, false);
  });

  it('subscribing to a down topic grants at most QoS 1 and does not bind (binding is by publish)', () => {
    assert.deepEqual(checkSubscribe(fresh(), 'gatehouse/v1/dev-a/down', 2), { ok: true, qos: 1 });
    assert.deepEqual(checkSubscribe(fresh(), 'gatehouse/v2/dev-a/down', 0), { ok: true, qos: 0 });
    assert.deepEqual(checkPublish(fresh(), 'gatehouse/v2/dev-a/up', 1, false, opts), { ok: true, bind: 'dev-a' });
  });

  it('refuses wildcards over auth topics, $SYS and everything before a welcome', () => {
    for (const f of ['#', '+/v1/dev-a/down', '+/#', '$SYS/#', '$SYS/broker/uptime', 'gatehouse/#', 'gatehouse/v1/+/down', 'gatehouse/v1/dev-a/+']) {
      assert.equal(checkSubscribe(fresh(), f, 1).ok, false, f);
      assert.equal(checkSubscribe(welcomed('dev-a'), f, 1).ok, false, f);
    }
    assert.equal(checkPublish(fresh(), 'devices/dev-a/x', 1, false, opts).ok, false, 'not welcomed');
    assert.equal(checkSubscribe(fresh(), 'devices/dev-a/cmd/#', 1).ok, false, 'not welcomed');
    assert.equal(checkPublish(fresh(), '$SYS/x', 1, false, opts).ok, false);
    assert.equal(checkPublish(fresh(), 'gatehouse/v3/dev-a/up', 1, false, opts).ok, false, 'reserved namespace');
  });

  it('after a welcome applies the lease policy with filter coverage', () => {
    const c = welcomed('dev-a');
    assert.equal(checkPublish(c, 'devices/dev-a/temp', 0, false, opts).ok, true);
    assert.equal(checkPublish(c, 'devices/dev-a', 1, false, opts).ok, true);
    assert.equal(checkPublish(c, 'devices/dev-b/temp', 1, false, opts).ok, false);
    assert.equal(checkPublish(c, 'devices/dev-a/temp', 1, true, opts).ok, false, 'retain off by default');
    assert.equal(checkPublish(c, 'devices/dev-a/temp', 1, true, { allowRetain: true }).ok, true);
    assert.deepEqual(checkSubscribe(c, 'devices/dev-a/cmd/#', 1), { ok: true, qos: 1 });
    assert.equal(checkSubscribe(c, 'devices/dev-a/cmd/+/x', 1).ok, true);
    assert.equal(checkSubscribe(c, 'devices/dev-a/#', 1).ok, false, 'wider than granted');
    assert.equal(checkSubscribe(c, 'devices/+/cmd/#', 1).ok, false);
    assert.equal(checkSubscribe(c, 'devices/dev-b/cmd/#', 1).ok, false);
  });

  it('delivers down messages only to the bound connection, others only within policy', () => {
    const a = welcomed('dev-a');
    assert.equal(checkDeliver(a, 'gatehouse/v1/dev-a/down'), true);
    assert.equal(checkDeliver(a, 'gatehouse/v1/dev-b/down'), false);
    assert.equal(checkDeliver(a, 'devices/dev-a/cmd/reboot'), true);
    assert.equal(checkDeliver(a, 'devices/dev-a/status'), false);
    assert.equal(checkDeliver(a, '$SYS/x'), false);
    a.closing = true;
    assert.equal(checkDeliver(a, 'devices/dev-a/cmd/reboot'), false);
  });

  it('checks wills at CONNECT and again at publish time; a closing connection publishes nothing', () => {
    assert.equal(checkWillAtConnect('gatehouse/v1/dev-a/up', false, opts).ok, false);
    assert.equal(checkWillAtConnect('gatehouse/v1/dev-b/down', false, opts).ok, false);
    assert.equal(checkWillAtConnect('$SYS/x', false, opts).ok, false);
    assert.equal(checkWillAtConnect('devices/dev-a/status', true, opts).ok, false);
    assert.equal(checkWillAtConnect('devices/dev-a/status', false, opts).ok, true);
    const c = welcomed('dev-a');
    assert.equal(checkPublish(c, 'devices/dev-a/status', 0, false, opts).ok, true);
    assert.equal(checkPublish(c, 'devices/dev-b/status', 0, false, opts).ok, false);
    c.closing = true;
    assert.equal(checkPublish(c, 'devices/dev-a/status', 0, false, opts).ok, false);
  });
});
