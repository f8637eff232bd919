/**
 * Work and slots before authentication, attacked black-box with raw MQTT clients on a real
 * broker (security finding 2, as-shipped item 1): a flood of malformed messages is metered and
 * answered unsigned; idle clients of one address cannot hold every slot; unauthenticated
 * connections have their own bound; a connection over capacity hears CONNACK 3, not a reset.
 */
import assert from 'node:assert/strict';
import { parseReject, type Ed25519Signer } from '../../../../protocol/index.js';
import type { MqttReferencePeripheral } from '../../../../peripherals/reference/mqtt-peripheral.js';
import type { FakeVerifier } from '../../../fakes/FakeVerifier.js';
import type { FakeSessionProvider } from '../../../fakes/FakeVerifier.js';
import { RawMqttClient, RawMqttError } from '../../../../testkit/mqtt-wire.js';
import { fakeBackend, peripheralFor, startHarness, within, type Harness } from './harness.js';

const HOST = '127.0.0.1';

describe('daemon/transports/mqtt admission before authentication (raw clients, real aedes on loopback)', () => {
  let backend: FakeVerifier;
  let sessions: FakeSessionProvider;
  let h: Harness | undefined;
  const open: RawMqttClient[] = [];
  const signers = new Map<string, Ed25519Signer>();
  const peripherals: MqttReferencePeripheral[] = [];

  before(async () => {
    const fb = await fakeBackend();
    backend = fb.backend;
    sessions = fb.sessions;
    signers.set('dev-a', await backend.addDevice('dev-a'));
    signers.set('dev-b', await backend.addDevice('dev-b'));
  });

  afterEach(async () => {
    for (const c of open.splice(0)) c.destroy();
    await Promise.all(peripherals.splice(0).map((p) => p.close()));
    await h?.stop();
    h = undefined;
  });

  async function raw(clientId: string, localAddress?: string): Promise<RawMqttClient> {
    const c = await RawMqttClient.connect({ host: HOST, port: h?.port ?? 0, clientId, keepaliveSec: 60, timeoutMs: 10_000, ...(localAddress === undefined ? {} : { localAddress }) });
    open.push(c);
    return c;
  }

  /** The CONNACK refusal (or the close) a connection attempt ends with; undefined when admitted. */
  async function refusal(clientId: string, localAddress?: string): Promise<string | undefined> {
    try {
      await raw(clientId, localAddress);
      return undefined;
    } catch (err) {
      if (err instanceof RawMqttError) return err.message;
      throw err;
    }
  }

  /** A peripheral welcomed as `dev`, left connected (closed after the test). */
  async function welcomed(dev: string): Promise<void> {
    const signer = signers.get(dev);
    assert.ok(signer);
    const p = peripheralFor(h?.url ?? '', signer, backend.backendKeys());
    peripherals.push(p);
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
  }

  it('meters malformed messages before parsing them: 300 one-byte messages get at most 20 answers worth a check, none signed', async () => {
    h = await startHarness(backend, sessions, { pipeline: { rateLimits: { perConnectionPerMin: 20 } }, transport: { maxQueuedPerConnection: 1000 } });
    const c = await raw('flooder');
    assert.equal(await c.subscribe('gatehouse/v1/dev-a/down', 1), 1);
    const replies: Uint8Array[] = [];
    const all = within(
      new Promise<void>((resolve) => {
        c.onMessage = (_topic, payload) => {
          replies.push(new Uint8Array(payload));
          if (replies.length === 300) resolve();
        };
      }),
      20_000,
      '300 replies',
    );
    for (let i = 0; i < 300; i++) c.publish('gatehouse/v1/dev-a/up', new Uint8Array([0x01]), 1);
    await all;
    const reasons = new Map<string, number>();
    for (const bytes of replies) {
      const r = parseReject(bytes);
      assert.equal(r.signed, null, 'a reject of unchecked input carries no session-key signature');
      reasons.set(r.message.reason, (reasons.get(r.message.reason) ?? 0) + 1);
    }
    assert.ok((reasons.get('malformed') ?? 0) <= 20, `at most the connection's 20 tokens reach the parser: ${JSON.stringify([...reasons])}`);
    assert.equal((reasons.get('malformed') ?? 0) + (reasons.get('rate-limited') ?? 0), 300);
    // The device named on the flooded topic still gets in: its allowance was not spent.
    await welcomed('dev-a');
  });

  it('idle clients of one address cannot hold every slot: a peripheral from another address is still welcomed', async () => {
    h = await startHarness(backend, sessions, { transport: { maxConnections: 20, maxUnwelcomed: 20, maxConnectionsPerSource: 5 } });
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => refusal(`idle-${i}`, '127.0.0.2')));
    assert.equal(outcomes.filter((o) => o === undefined).length, 5, 'five held, the others closed at accept');
    assert.ok((h.transport.stats().refused['per-source'] ?? 0) >= 15);
    await welcomed('dev-a');
  });

  it('bounds unauthenticated connections apart from welcomed ones; over the bound a client hears CONNACK 3', async () => {
    h = await startHarness(backend, sessions, { transport: { maxConnections: 20, maxUnwelcomed: 2, maxConnectionsPerSource: 100 } });
    // Welcomed connections do not count against the unauthenticated bound.
    await welcomed('dev-a');
    await welcomed('dev-b');
    for (let i = 0; i < 2; i++) await raw(`idle-${i}`, `127.0.0.${10 + i}`);
    assert.match((await refusal('idle-extra', '127.0.0.20')) ?? 'admitted', /CONNACK return code 3/);
    assert.equal(h.transport.stats().refused['unwelcomed-slots'], 1);
  });

  it('a connection over maxConnections gets CONNACK 3 (server unavailable) and is counted, not reset', async () => {
    h = await startHarness(backend, sessions, { transport: { maxConnections: 3, maxUnwelcomed: 3, maxConnectionsPerSource: 100 } });
    for (let i = 0; i < 3; i++) await raw(`c-${i}`);
    assert.match((await refusal('one-too-many')) ?? 'admitted', /CONNACK return code 3/);
    assert.equal(h.transport.stats().refused.capacity, 1);
  });

  it('refuses connections from one address beyond its accept rate, at accept', async () => {
    h = await startHarness(backend, sessions, { transport: { acceptsPerSourcePerSec: 5, maxConnectionsPerSource: 100 } });
    const outcomes = await Promise.all(Array.from({ length: 15 }, (_, i) => refusal(`burst-${i}`, '127.0.0.3')));
    const admitted = outcomes.filter((o) => o === undefined).length;
    assert.ok(admitted >= 5 && admitted < 15, `admitted ${admitted} of 15`);
    assert.ok(h.transport.stats().refused['accept-rate'] >= 15 - admitted - 1);
    await welcomed('dev-b');
  });
});
