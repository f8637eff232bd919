/**
 * Hostile MQTT against the real broker on loopback: each attempt is refused as protocol-v1 and
 * docs/mqtt.md say, while legitimate peripherals in parallel are still welcomed and the broker
 * stays up. The backend here is the FakeVerifier (real keys, real signatures); the end-to-end
 * suite runs the same exchange against the reference backend.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { MqttClient } from 'mqtt';
import { decodeChallenge, decodeDownMessage, encodeCbor, encodeChallengeRequest, parseReject, randomNonce, sha256, signHello, type Ed25519Signer } from '../../../../protocol/index.js';
import type { DecisionEvent } from '../../../../daemon/pipeline/types.js';
import type { FakeVerifier } from '../../../fakes/FakeVerifier.js';
import { MqttReferencePeripheral } from '../../../../peripherals/reference/mqtt-peripheral.js';
import { ReferencePeripheral } from '../../../../peripherals/reference/peripheral.js';
import { closed, fakeBackend, nextMessage, peripheralFor, rawClient, startHarness, within, type Harness } from './harness.js';

const up = (dev: string): string => `gatehouse/v1/${dev}/up`;
const down = (dev: string): string => `gatehouse/v1/${dev}/down`;

describe('daemon/transports/mqtt hostile clients (real aedes on loopback)', function () {
  let backend: FakeVerifier;
  let h: Harness;
  const open: MqttClient[] = [];
  const signers = new Map<string, Ed25519Signer>();

  before(async () => {
    const fb = await fakeBackend();
    backend = fb.backend;
    for (const dev of ['dev-a', 'dev-b', 'dev-c', 'flood', '__proto__', 'constructor']) signers.set(dev, await backend.addDevice(dev));
    signers.set('observer', await backend.addDevice('observer', { pub: [], sub: ['devices/#'] }));
    signers.set('dev-empty', await backend.addDevice('dev-empty', { pub: [], sub: [] }));
    // Many tests welcome the same few devices: the per-device bucket is widened; the flood test
    // relies on the per-connection one (20 per minute).
    h = await startHarness(backend, fb.sessions, { pipeline: { rateLimits: { perDevicePerMin: 500 } } });
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  });

  after(async () => {
    await h?.stop();
  });

  function signer(dev: string): Ed25519Signer {
    const s = signers.get(dev);
    if (s === undefined) throw new Error(`no device ${dev}`);
    return s;
  }

  async function client(opts: Parameters<typeof rawClient>[1] = {}): Promise<MqttClient> {
    const c = await rawClient(h.url, opts);
    open.push(c);
    return c;
  }

  /** SUBACK granted QoS per filter (mqtt.js rejects the promise when one is 0x80). */
  async function granted(c: MqttClient, filters: string[]): Promise<number[]> {
    try {
      return (await c.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
    } catch (err) {
      const packet = (err as { packet?: { granted?: number[] } }).packet;
      if (packet?.granted === undefined) throw err;
      return packet.granted;
    }
  }

  /** Subscribes to the down topic (bound to dev) and returns a client ready to talk. */
  /** A connection bound to `dev` by what it publishes (a challenge-request), not by a SUBSCRIBE. */
  async function bound(dev: string, clientId = ''): Promise<MqttClient> {
    const c = await client({ clientId });
    const granted = await c.subscribeAsync(down(dev), { qos: 1 });
    assert.equal(granted[0]?.qos, 1);
    await challenge(c, dev);
    return c;
  }

  /**
   * Publishes on up and returns the reply meant for it: down is a topic, so every connection
   * bound to the device sees every reply; a hello's reply is the one carrying its hh.
   */
  async function ask(c: MqttClient, dev: string, payload: Uint8Array): Promise<Uint8Array> {
    const isHello = payload[0] === 0xd2;
    const hh = sha256(payload);
    const reply = nextMessage(c, down(dev), 10_000, (bytes) => {
      try {
        const m = decodeDownMessage(bytes);
        const got = m.type === 'welcome' ? m.signed.payload.hh : m.type === 'reject' ? m.message.hh : undefined;
        // Anything else than a hello is answered by a challenge or a reject without hh.
        if (!isHello) return got === undefined;
        return got !== undefined && Buffer.from(got).equals(Buffer.from(hh));
      } catch {
        return false;
      }
    });
    await c.publishAsync(up(dev), Buffer.from(payload), { qos: 1 });
    return new Uint8Array(await reply);
  }

  async function challenge(c: MqttClient, dev: string): Promise<Uint8Array> {
    const ch = decodeChallenge(await ask(c, dev, encodeChallengeRequest({ type: 'challenge-request', version: 1, dev })));
    return ch.gn;
  }

  async function helloFor(dev: string, gn: Uint8Array, as = dev): Promise<Uint8Array> {
    return signHello({ type: 'hello', version: 1, dev: as, pn: randomNonce(16), gn }, signer(as));
  }

  function rejectReason(bytes: Uint8Array): string {
    return parseReject(bytes).message.reason;
  }

  /** The observer device, welcomed and subscribed to devices/#; `seen` collects topics it receives. */
  async function observer(): Promise<{ obs: MqttReferencePeripheral; seen: string[] }> {
    const obs = peripheralFor(h.url, signer('observer'), backend.backendKeys());
    await obs.connect();
    assert.equal((await obs.authenticate()).kind, 'authenticated');
    await obs.client.subscribeAsync('devices/#', { qos: 1 });
    const seen: string[] = [];
    obs.client.on('message', (t) => seen.push(t));
    return { obs, seen };
  }

  /** A legitimate peripheral, welcomed in parallel with the attack. */
  async function legit(dev: string): Promise<void> {
    const p = peripheralFor(h.url, signer(dev), backend.backendKeys());
    try {
      await p.connect();
      const r = await p.authenticate();
      assert.equal(r.kind, 'authenticated', JSON.stringify(r));
    } finally {
      await p.close();
    }
  }

  it('welcomes a peripheral that then gets exactly its lease policy', async () => {
    const p = peripheralFor(h.url, signer('dev-a'), backend.backendKeys());
    await p.connect();
    const r = await p.authenticate();
    assert.equal(r.kind, 'authenticated');
    assert.deepEqual(await granted(p.client, ['devices/dev-a/cmd/#', 'devices/dev-a/#', 'devices/dev-b/cmd/#']), [1, 128, 128]);
    // The observer is granted devices/# and sees what dev-a publishes inside its policy.
    const obs = peripheralFor(h.url, signer('observer'), backend.backendKeys());
    await obs.connect();
    assert.equal((await obs.authenticate()).kind, 'authenticated');
    await obs.client.subscribeAsync('devices/#', { qos: 1 });
    const seen = nextMessage(obs.client, 'devices/dev-a/temp');
    await p.client.publishAsync('devices/dev-a/temp', '21.5', { qos: 1 });
    assert.equal((await seen).toString(), '21.5');
    await Promise.all([p.close(), obs.close()]);
  });

  it('grants nothing beyond the auth topics when the lease policy is empty (default deny, never widened)', async () => {
    const p = peripheralFor(h.url, signer('dev-empty'), backend.backendKeys());
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
    assert.deepEqual(await granted(p.client, ['devices/dev-empty/cmd/#', 'devices/dev-empty/#']), [128, 128]);
    const gone = closed(p.client);
    p.client.publish('devices/dev-empty/temp', '1', { qos: 1 });
    await gone;
    await p.close();
  });

  it('closes a connection that publishes on another device\'s up topic or on a down topic', async () => {
    const attack = async (topic: string): Promise<void> => {
      const c = await bound('dev-b');
      const gone = closed(c);
      c.publish(topic, Buffer.from([0xa0]), { qos: 1 });
      await gone;
    };
    await Promise.all([attack(up('dev-a')), attack(down('dev-b')), attack(down('dev-a')), legit('dev-c')]);
  });

  it('refuses subscriptions to #, +/…, $SYS/# and others\' down topics with SUBACK 0x80, keeping the connection', async () => {
    const c = await bound('dev-b');
    assert.deepEqual(
      await granted(c, ['#', '+/v1/dev-a/down', '$SYS/#', 'gatehouse/v1/+/down', down('dev-a'), up('dev-b')]),
      [128, 128, 128, 128, 128, 128],
    );
    assert.ok(c.connected);
    await legit('dev-c');
    // Still usable: its own exchange works.
    const gn = await challenge(c, 'dev-b');
    assert.ok(decodeDownMessage(await ask(c, 'dev-b', await helloFor('dev-b', gn))).type === 'welcome');
  });

  // protocol-v2 "MQTT transport" (applied to v1): the client id carries no identity. This test
  // used to refuse these ids at CONNECT; now any id is accepted unless a live connection holds it.
  it('accepts client ids #, a/b, __proto__, constructor; a second CONNECT with a live id gets CONNACK 2 and the first survives', async () => {
    for (const clientId of ['#', 'a/b', '__proto__', 'constructor', 'toString', 'dev-a']) {
      const first = await client({ clientId });
      await assert.rejects(client({ clientId }), (e: Error & { code?: number }) => e.code === 2, clientId);
      assert.ok(first.connected, `${clientId}: the first connection survives`);
      await first.subscribeAsync(down('dev-x'), { qos: 1 });
      first.end(true);
    }
    for (const dev of ['__proto__', 'constructor']) {
      // The id is a valid protocol-v1 id: bound via its topics, looked up in Maps only.
      const own = await bound(dev, '');
      const gn = await challenge(own, dev);
      assert.equal(decodeDownMessage(await ask(own, dev, await helloFor(dev, gn))).type, 'welcome');
      // And it cannot reach another device's topics.
      const gone = closed(own);
      own.publish(up('dev-a'), Buffer.from([0xa0]), { qos: 1 });
      await gone;
    }
    await legit('dev-c');
  });

  it('refuses a will on a forbidden topic at CONNECT (not authorized)', async () => {
    for (const topic of [down('dev-a'), up('dev-a'), '$SYS/x']) {
      await assert.rejects(
        client({ clientId: 'dev-b', will: { topic, payload: Buffer.from('x'), qos: 1, retain: false } }),
        (e: Error & { code?: number }) => e.code === 5,
      );
    }
    await assert.rejects(
      client({ clientId: 'dev-b', will: { topic: 'devices/dev-b/status', payload: Buffer.from('x'), qos: 1, retain: true } }),
      (e: Error & { code?: number }) => e.code === 5,
    );
  });

  it('publishes a welcomed connection\'s will inside its policy, and never a will outside it', async () => {
    const { obs, seen } = await observer();
    const dieWith = async (dev: string, willTopic: string): Promise<void> => {
      const c = await client({ clientId: dev, will: { topic: willTopic, payload: Buffer.from('gone'), qos: 1, retain: false } });
      await c.subscribeAsync(down(dev), { qos: 1 });
      const gn = await challenge(c, dev);
      assert.equal(decodeDownMessage(await ask(c, dev, await helloFor(dev, gn))).type, 'welcome');
      const gone = closed(c);
      c.stream.destroy();
      await gone;
    };
    await dieWith('dev-b', 'devices/dev-a/status');
    const willSeen = nextMessage(obs.client, 'devices/dev-c/status');
    await dieWith('dev-c', 'devices/dev-c/status');
    await willSeen;
    assert.ok(!seen.includes('devices/dev-a/status'), 'dev-b may not publish its will on dev-a\'s topic');
    await obs.close();
  });

  it('answers stale-challenge to a reused challenge and to a hello replayed on another connection', async () => {
    const c = await bound('dev-b');
    const gn = await challenge(c, 'dev-b');
    const hello = await helloFor('dev-b', gn);
    assert.equal(decodeDownMessage(await ask(c, 'dev-b', hello)).type, 'welcome');
    assert.equal(rejectReason(await ask(c, 'dev-b', await helloFor('dev-b', gn))), 'stale-challenge');
    const other = await bound('dev-b', '');
    assert.equal(rejectReason(await ask(other, 'dev-b', hello)), 'stale-challenge');
    // A hello with a gn issued to another connection is not usable there either.
    const gn2 = await challenge(c, 'dev-b');
    assert.equal(rejectReason(await ask(other, 'dev-b', await helloFor('dev-b', gn2))), 'stale-challenge');
  });

  it('refuses dev A\'s hello on dev B\'s topic as malformed', async () => {
    const c = await bound('dev-b', '');
    const gn = await challenge(c, 'dev-b');
    const reply = await ask(c, 'dev-b', await helloFor('dev-b', gn, 'dev-a'));
    assert.equal(rejectReason(reply), 'malformed');
    assert.equal(parseReject(reply).message.dev, 'dev-b');
  });

  it('answers malformed to oversized payloads and garbage CBOR, and closes on a packet over the limit', async () => {
    const c = await bound('dev-b');
    assert.equal(rejectReason(await ask(c, 'dev-b', new Uint8Array(2000).fill(0xa1))), 'malformed');
    assert.equal(rejectReason(await ask(c, 'dev-b', new Uint8Array([0xff, 0xfe, 0x00]))), 'malformed');
    assert.equal(rejectReason(await ask(c, 'dev-b', encodeCbor(new Map<number, string | number>([[1, 'challenge-request'], [2, 1], [3, 'dev-a']])))), 'malformed');
    assert.equal(rejectReason(await ask(c, 'dev-b', new Uint8Array([0xbf, 0x01, 0x02, 0xff]))), 'malformed');
    const before = h.transport.stats().frameViolations;
    const gone = closed(c);
    c.publish(up('dev-b'), Buffer.alloc(70_000), { qos: 1 });
    await gone;
    assert.equal(h.transport.stats().frameViolations, before + 1);
    await legit('dev-c');
  });

  it('rate-limits a burst of 1,000 challenge-requests from one connection, bounded, while others are welcomed', async () => {
    const c = await bound('flood');
    const conn = await new Promise<string>((resolve, reject) => {
      const off = h.pipeline.events.subscribe((e) => {
        if (e.dev === 'flood') {
          off();
          resolve(e.connection);
        }
      });
      c.publishAsync(up('flood'), Buffer.from(encodeChallengeRequest({ type: 'challenge-request', version: 1, dev: 'flood' })), { qos: 1 }).catch(reject);
    });
    const events: DecisionEvent[] = [];
    const droppedBefore = h.transport.stats().droppedAuthMessages;
    const total = 1000;
    const settled = within(
      new Promise<void>((resolve) => {
        const off = h.pipeline.events.subscribe((e) => {
          if (e.connection !== conn) return;
          events.push(e);
          if (events.length + h.transport.stats().droppedAuthMessages - droppedBefore >= total) {
            off();
            resolve();
          }
        });
      }),
      30_000,
      'all 1000 messages decided or dropped',
    );
    const creq = Buffer.from(encodeChallengeRequest({ type: 'challenge-request', version: 1, dev: 'flood' }));
    const publishes: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) publishes.push(c.publishAsync(up('flood'), creq, { qos: 1 }));
    await Promise.all([within(Promise.all(publishes), 30_000, 'PUBACKs'), legit('dev-c')]);
    await settled;
    const issued = events.filter((e) => e.outcome === 'challenge').length;
    const limited = events.filter((e) => e.reason === 'rate-limited').length;
    const dropped = h.transport.stats().droppedAuthMessages - droppedBefore;
    assert.ok(issued < 20, `at most the burst of 20 minus the first: ${issued}`);
    assert.equal(events.length + dropped, total);
    assert.ok(limited + dropped >= total - 20, `rate-limited ${limited}, dropped ${dropped}`);
    assert.ok(h.pipeline.stats().outstandingChallenges <= 4 + 8, 'challenge store bounded');
    assert.ok(c.connected, 'the flooding connection is rate limited, not dropped');
    await legit('dev-a');
  });

  it('closes the older connection when a device is welcomed again (its will dropped), and a revoked device\'s connection', async () => {
    const { obs, seen } = await observer();
    const first = new MqttReferencePeripheral({
      url: h.url,
      peripheral: new ReferencePeripheral({ dev: 'dev-b', signer: signer('dev-b'), backendKeys: backend.backendKeys() }),
      will: { topic: 'devices/dev-b/status', payload: 'first gone' },
    });
    await first.connect();
    assert.equal((await first.authenticate()).kind, 'authenticated');
    const firstGone = closed(first.client);
    const second = peripheralFor(h.url, signer('dev-b'), backend.backendKeys());
    await second.connect();
    assert.equal((await second.authenticate()).kind, 'authenticated');
    await firstGone;
    assert.ok(second.client.connected);
    // A message published after the close arrives; the superseded connection's will never does.
    const marker = nextMessage(obs.client, 'devices/dev-b/marker');
    await second.client.publishAsync('devices/dev-b/marker', 'm', { qos: 1 });
    await marker;
    assert.ok(!seen.includes('devices/dev-b/status'), 'will of a superseded connection dropped');
    await obs.close();
    const secondGone = closed(second.client);
    h.revocations.revoke(['dev-b']);
    await secondGone;
    await Promise.all([first.close(), second.close()]);
    await legit('dev-c');
  });

  it('closes a welcomed connection whose device is refused as revoked on a new hello, after delivering the reject', async () => {
    const c = await bound('dev-c');
    assert.equal(decodeDownMessage(await ask(c, 'dev-c', await helloFor('dev-c', await challenge(c, 'dev-c')))).type, 'welcome');
    backend.revoked.add('dev-c');
    try {
      const gone = closed(c);
      const reply = await ask(c, 'dev-c', await helloFor('dev-c', await challenge(c, 'dev-c')));
      assert.equal(rejectReason(reply), 'revoked');
      await gone;
    } finally {
      backend.revoked.delete('dev-c');
    }
    await legit('dev-c');
  });

  it('does not let a connection that left while its hello was decided close the live one', async () => {
    const live = await bound('dev-c');
    assert.equal(decodeDownMessage(await ask(live, 'dev-c', await helloFor('dev-c', await challenge(live, 'dev-c')))).type, 'welcome');
    const leaving = await bound('dev-c', '');
    const gn = await challenge(leaving, 'dev-c');
    let release: () => void = () => undefined;
    backend.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const asked = within(
        new Promise<void>((resolve) => {
          backend.onRequest = () => resolve();
        }),
        10_000,
        'hello reached the verifier',
      );
      await leaving.publishAsync(up('dev-c'), Buffer.from(await helloFor('dev-c', gn)), { qos: 1 });
      await asked;
      const left = within(new Promise<void>((resolve) => h.transport.once('closed', () => resolve())), 10_000, 'closed event');
      leaving.stream.destroy();
      await left;
      const decided = within(
        new Promise<void>((resolve) => {
          const off = h.pipeline.events.subscribe((e) => {
            if (e.outcome === 'welcome' && e.dev === 'dev-c') {
              off();
              resolve();
            }
          });
        }),
        10_000,
        'welcome decided',
      );
      release();
      await decided;
    } finally {
      backend.gate = undefined;
      backend.onRequest = undefined;
      release();
    }
    // The live connection still works: a full exchange on it.
    assert.equal(decodeDownMessage(await ask(live, 'dev-c', await helloFor('dev-c', await challenge(live, 'dev-c')))).type, 'welcome');
    assert.ok(live.connected);
  });

  it('closes a raw connection whose first packet is not CONNECT, or whose CONNECT announces a huge length', async () => {
    for (const header of [Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), Buffer.from([0x82, 0x05])]) {
      const before = h.transport.stats().frameViolations;
      const socket = net.connect(h.port, '127.0.0.1');
      socket.on('error', () => undefined);
      const gone = within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 10_000, 'raw socket closed');
      socket.write(header);
      // Keep sending: the broker must not buffer what the header announced.
      const chunk = Buffer.alloc(64 * 1024);
      for (let i = 0; i < 16 && !socket.destroyed; i++) socket.write(chunk);
      await gone;
      assert.equal(h.transport.stats().frameViolations, before + 1);
    }
    await legit('dev-c');
  });

  it('closes a CONNECT with will QoS 3 or a password without a user name, without a CONNACK', async () => {
    const connect = (flags: number, payload: number[]): Buffer => {
      const variable = [0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, flags, 0x00, 0x3c];
      const body = [...variable, ...payload];
      return Buffer.from([0x10, body.length, ...body]);
    };
    const willQos3 = connect(0x02 | 0x04 | 0x18, [0x00, 0x00, 0x00, 0x03, 0x77, 0x2f, 0x74, 0x00, 0x01, 0x78]);
    const passwordOnly = connect(0x02 | 0x40, [0x00, 0x00, 0x00, 0x02, 0x70, 0x77]);
    for (const packet of [willQos3, passwordOnly]) {
      const socket = net.connect(h.port, '127.0.0.1');
      socket.on('error', () => undefined);
      const received: Buffer[] = [];
      socket.on('data', (d: Buffer) => received.push(d));
      const gone = within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 10_000, 'raw socket closed');
      socket.write(packet);
      await gone;
      assert.equal(Buffer.concat(received).length, 0, 'no CONNACK');
    }
    await legit('dev-c');
  });

  it('refuses an MQTT 5 client with CONNACK "unacceptable protocol version"', async () => {
    // aedes serves MQTT 3.1.1 only: CONNACK return code 1 [MQTT-3.2.2-5], which mqtt.js names.
    await assert.rejects(client({ protocolVersion: 5, clientId: 'dev-b' }), (e: Error & { code?: number }) => {
      return e.code === 1 && /unacceptable protocol version/i.test(e.message);
    });
  });

  it('refuses keepalive 0 and keepalive above the limit at CONNECT', async () => {
    await assert.rejects(client({ clientId: 'dev-b', keepalive: 0 }), (e: Error & { code?: number }) => e.code === 2);
    await assert.rejects(client({ clientId: 'dev-b', keepalive: 301 }), (e: Error & { code?: number }) => e.code === 2);
  });
});
