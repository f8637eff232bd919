/**
 * The MQTT connection table without TCP: connections over in-process streams, a real aedes
 * broker (no listener) for the client lookups.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { Aedes } from 'aedes';
import winston from 'winston';
import { MqttConnectionTable } from '../../../../daemon/transports/mqtt/connection-table.js';
import type { MqttConnection } from '../../../../daemon/transports/mqtt/connection.js';
import type { Policy } from '../../../../protocol/index.js';
import { MAX_TIMER_MS } from '../../../../common/clock.js';
import { ManualClock } from '../../../../testkit/manual-clock.js';

const POLICY: Policy = { pub: ['devices/d1/#'], sub: ['devices/d1/cmd/#'] };

describe('daemon/transports/mqtt/connection-table', () => {
  let welcomed: string[];
  let closed: string[];
  let tables: MqttConnectionTable[];

  function table(authTimeoutMs = 60_000, clock?: ManualClock): MqttConnectionTable {
    const t = new MqttConnectionTable({
      log: winston.createLogger({ silent: true }),
      authTimeoutMs,
      ...(clock === undefined ? {} : { clock }),
      events: {
        welcomed: (conn, dev) => welcomed.push(`${conn.id}=${dev}`),
        closed: (conn) => closed.push(conn.id),
      },
    });
    tables.push(t);
    return t;
  }

  /** Resolves when the stream of a connection has emitted 'close' and the table was told. */
  let reported: Map<MqttConnection, Promise<void>>;

  /** A connection whose stream, once closed, tells the table (as the transport wires it). */
  function open(t: MqttConnectionTable): MqttConnection {
    const stream = new PassThrough();
    const conn = t.open('127.0.0.1:1', stream);
    reported.set(conn, once(stream, 'close').then(() => void t.closed(conn)));
    return conn;
  }

  /** Waits (bounded) until the table was told that `conn` closed. */
  async function streamClosed(conn: MqttConnection): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${conn.id} did not close within 2 s`)), 2000);
    });
    try {
      await Promise.race([reported.get(conn), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  beforeEach(() => {
    welcomed = [];
    closed = [];
    tables = [];
    reported = new Map();
  });

  afterEach(() => {
    for (const t of tables) t.destroyAll();
  });

  it('numbers connections in order, predicts the next id, and forgets a closed one exactly once', async () => {
    const t = table();
    assert.equal(t.nextId(), 'mqtt:1');
    const a = open(t);
    const b = open(t);
    assert.deepEqual([a.id, b.id, t.nextId()], ['mqtt:1', 'mqtt:2', 'mqtt:3']);
    assert.equal(t.size, 2);
    assert.ok(t.isLive(a));
    t.close(a);
    assert.equal(a.closing, true);
    assert.equal(t.isLive(a), false, 'a connection being closed is no longer live');
    await streamClosed(a);
    assert.equal(t.size, 1);
    assert.deepEqual(closed, ['mqtt:1']);
    assert.equal(t.closed(a), false, 'a second close report is ignored');
    assert.deepEqual(closed, ['mqtt:1']);
    assert.deepEqual([...t.connections()].map((c) => c.id), ['mqtt:2']);
  });

  it('closes a connection not welcomed within the auth timeout, and counts it', async () => {
    const t = table(20);
    const late = open(t);
    await streamClosed(late);
    assert.equal(late.closing, true);
    assert.equal(t.counters.closedByAuthTimeout, 1);
    assert.deepEqual(closed, [late.id]);
  });

  it('a welcome stops the auth timer, sets the policy and is reported', async () => {
    const t = table(20);
    const c = open(t);
    c.bind('d1');
    t.welcome(c, 'd1', POLICY);
    assert.equal(c.welcomed, true);
    assert.deepEqual(c.policy, POLICY);
    assert.equal(t.welcomedCount(), 1);
    assert.equal(t.byDevice('d1'), c);
    assert.deepEqual(welcomed, [`${c.id}=d1`]);
    // A connection opened after it times out; the welcomed one's timer, started first, would have fired first.
    const witness = open(t);
    await streamClosed(witness);
    assert.equal(c.closing, false);
    assert.equal(t.counters.closedByAuthTimeout, 1);
  });

  it('a later welcome of the same device closes the older connection; a re-welcome on the same one does not', async () => {
    const t = table();
    const older = open(t);
    const newer = open(t);
    const other = open(t);
    for (const [c, dev] of [[older, 'd1'], [newer, 'd1'], [other, 'd2']] as const) c.bind(dev);
    t.welcome(older, 'd1', POLICY);
    t.welcome(other, 'd2', POLICY);
    t.welcome(newer, 'd1', POLICY);
    await streamClosed(older);
    assert.equal(older.closing, true);
    assert.equal(t.counters.closedSuperseded, 1);
    assert.equal(t.byDevice('d1'), newer);
    t.welcome(newer, 'd1', POLICY);
    assert.equal(newer.closing, false);
    assert.equal(t.counters.closedSuperseded, 1);
    assert.equal(other.closing, false, 'another device is untouched');
    // The superseded connection's close does not forget the newer one.
    assert.equal(t.byDevice('d1'), newer);
    t.close(newer);
    await streamClosed(newer);
    assert.equal(t.byDevice('d1'), undefined);
  });

  it('closes a v1 welcome when its life runs out (a re-welcome restarts it; a v2 welcome arms nothing); lives beyond one timer are armed in steps', async () => {
    const clock = new ManualClock();
    const t = table(60_000, clock);
    const [v1, v2, long] = [open(t), open(t), open(t)];
    v1.bind('d1');
    v2.bind('d2');
    long.bind('d3');
    t.welcome(v1, 'd1', POLICY, 1, 100);
    t.welcome(v2, 'd2', POLICY, 2, 100);
    const longLife = Math.ceil((2 * MAX_TIMER_MS) / 1000);
    t.welcome(long, 'd3', POLICY, 1, longLife);
    clock.advance(60_000);
    t.welcome(v1, 'd1', POLICY, 1, 100);
    clock.advance(99_000);
    assert.equal(v1.closing, false, 're-welcomed at 60 s: its life starts again');
    clock.advance(1000);
    await streamClosed(v1);
    assert.equal(t.counters.closedExpired, 1);
    assert.equal(v2.closing, false, 'a v2 session ends itself (bye expired)');
    clock.advance(MAX_TIMER_MS);
    assert.equal(long.closing, false, 'not closed when the first step of a long life fires');
    clock.advance(longLife * 1000 - MAX_TIMER_MS - 160_000);
    await streamClosed(long);
    assert.equal(t.counters.closedExpired, 2);
  });

  it('revokes the connections bound to the named devices only, once each', async () => {
    const t = table();
    const [a, b, c, unbound] = [open(t), open(t), open(t), open(t)];
    a.bind('d1');
    b.bind('d1');
    c.bind('d2');
    const revoked = t.revoke(['d1', 'd9']);
    assert.deepEqual(revoked.map((x) => x.id), [a.id, b.id]);
    await Promise.all([streamClosed(a), streamClosed(b)]);
    assert.deepEqual(t.revoke(['d1']), [], 'closed connections are not revoked twice');
    assert.equal(t.counters.closedRevoked, 2);
    assert.equal(c.closing || unbound.closing, false);
    assert.equal(t.size, 2);
  });

  it('finds a connection by its aedes client, and nothing for the broker itself (null)', async () => {
    const broker = await Aedes.createBroker();
    try {
      const t = table();
      const c = open(t);
      const client = broker.handle(c.stream);
      t.attach(c, client);
      assert.equal(t.byClient(client), c);
      assert.equal(c.client, client);
      assert.equal(t.byClient(null), undefined);
      t.close(c);
      await streamClosed(c);
      assert.equal(t.size, 0);
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    }
  });
});
