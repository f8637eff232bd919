/**
 * Connection limits of the MQTT transport on a real broker, with short injected timeouts:
 * CONNECT timeout, authentication timeout, maximum connections, clean shutdown.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import { getHeapSnapshot } from 'node:v8';
import { createCa, issueCert } from '../../../../backend/pki.js';
import type { FakeVerifier } from '../../../fakes/FakeVerifier.js';
import type { FakeSessionProvider } from '../../../fakes/FakeVerifier.js';
import { closed, fakeBackend, peripheralFor, rawClient, startHarness, within, type Harness } from './harness.js';
import { MQTT_DEFAULTS } from '../../../../testkit/component-defaults.js';

/**
 * Takes a heap snapshot of this process (after a full GC) and answers which of `strings` are
 * held in a `Map` or `Set` (as key or value): where per-connection state of the transport and
 * of aedes lives. Other holders are left out on purpose: bounded ones (the pipeline's ring of
 * recent decisions), V8's table of internalized strings, and this test's own arguments.
 */
async function inMapsOrSets(strings: readonly string[]): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of getHeapSnapshot()) chunks.push(chunk as Buffer);
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; edge_fields: string[]; edge_types: [string[]] } };
    nodes: number[];
    edges: number[];
    strings: string[];
  };
  const { node_fields: nf, edge_fields: ef, edge_types: [edgeTypes] } = snap.snapshot.meta;
  const [nodeLen, edgeLen] = [nf.length, ef.length];
  const [iName, iEdges] = [nf.indexOf('name'), nf.indexOf('edge_count')];
  const [eType, eName, eTo] = [ef.indexOf('type'), ef.indexOf('name_or_index'), ef.indexOf('to_node')];
  const nameOf = (node: number): string => snap.strings[snap.nodes[node + iName] as number] as string;
  const firstEdge = new Map<number, number>();
  for (let node = 0, edge = 0; node < snap.nodes.length; node += nodeLen) {
    firstEdge.set(node, edge);
    edge += (snap.nodes[node + iEdges] as number) * edgeLen;
  }
  const targets = function* (node: number): Generator<[string, number]> {
    const first = firstEdge.get(node) as number;
    for (let k = 0; k < (snap.nodes[node + iEdges] as number); k += 1) {
      const edge = first + k * edgeLen;
      const type = edgeTypes[snap.edges[edge + eType] as number];
      const name = type === 'element' || type === 'hidden' ? '' : (snap.strings[snap.edges[edge + eName] as number] as string);
      yield [name, snap.edges[edge + eTo] as number];
    }
  };
  const wanted = new Set(strings);
  const held = new Set<string>();
  for (let node = 0; node < snap.nodes.length; node += nodeLen) {
    if (nameOf(node) !== 'Map' && nameOf(node) !== 'Set') continue;
    for (const [name, table] of targets(node)) {
      if (name !== 'table') continue;
      for (const [, entry] of targets(table)) if (wanted.has(nameOf(entry))) held.add(nameOf(entry));
    }
  }
  return [...held];
}

function rawSocket(port: number): { socket: net.Socket; gone: Promise<void>; connected: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  return {
    socket,
    gone: within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 10_000, 'socket closed by the broker'),
    connected: within(new Promise<void>((resolve) => socket.once('connect', () => resolve())), 10_000, 'socket connected'),
  };
}

describe('daemon/transports/mqtt connection limits (real aedes on loopback)', () => {
  let backend: FakeVerifier;
  let sessions: FakeSessionProvider;
  let h: Harness | undefined;

  before(async () => {
    ({ backend, sessions } = await fakeBackend());
    await backend.addDevice('dev-a');
  });

  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('closes a connection that says nothing (CONNECT timeout)', async () => {
    h = await startHarness(backend, sessions, { transport: { connectTimeoutMs: 200 } });
    const { gone } = rawSocket(h.port);
    await gone;
  });

  it('closes a connection not welcomed within the authentication timeout, and keeps a welcomed one', async () => {
    h = await startHarness(backend, sessions, { transport: { authTimeoutMs: 400 } });
    const idle = await rawClient(h.url, { clientId: 'dev-a' });
    const signer = backend.devices.get('dev-a');
    assert.ok(signer);
    const p = peripheralFor(h.url, signer, backend.backendKeys());
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
    await closed(idle);
    assert.equal(h.transport.stats().closedByAuthTimeout, 1);
    // The welcomed connection outlives the timeout: a round trip after the idle one was closed.
    await p.client.publishAsync('devices/dev-a/x', 'still here', { qos: 1 });
    assert.ok(p.client.connected);
    await p.close();
  });

  it('closes a TLS connection that never finishes its handshake, and serves one that does', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gh-mqtt-tls-'));
    try {
      const ca = await createCa(dir, { name: 'ca' });
      const cert = await issueCert(dir, ca, { name: 'mqtt', sans: ['127.0.0.1'] });
      h = await startHarness(backend, sessions, {
        transport: { tcp: false, tls: { host: '127.0.0.1', port: 0, cert: cert.certPem, key: cert.keyPem }, connectTimeoutMs: 300 },
      });
      const silent = rawSocket(h.port);
      await silent.gone;
      const secure = tls.connect({ host: '127.0.0.1', port: h.port, ca: ca.certPem });
      secure.on('error', () => undefined);
      await within(new Promise<void>((resolve) => secure.once('secureConnect', () => resolve())), 10_000, 'TLS handshake');
      assert.ok(secure.authorized);
      // Then nothing: the CONNECT timeout applies inside TLS too.
      await within(new Promise<void>((resolve) => secure.once('close', () => resolve())), 10_000, 'closed without CONNECT');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('closes sockets beyond the maximum plus the refusal slots at accept', async () => {
    h = await startHarness(backend, sessions, { transport: { maxConnections: 1, refusalSlots: 1 } });
    const a = rawSocket(h.port);
    const b = rawSocket(h.port);
    await Promise.all([a.connected, b.connected]);
    const c = rawSocket(h.port);
    await c.gone;
    assert.equal(h.transport.stats().refusedAtAccept, 1);
    assert.equal(h.transport.stats().refused.capacity, 1);
    a.socket.destroy();
    b.socket.destroy();
  });

  it('bounds the subscriptions one connection holds; an unsubscribe frees a slot', async () => {
    h = await startHarness(backend, sessions, { transport: { maxSubscriptionsPerConnection: 3 } });
    const signer = backend.devices.get('dev-a');
    assert.ok(signer);
    const p = peripheralFor(h.url, signer, backend.backendKeys());
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
    const grant = async (filter: string): Promise<number | undefined> => {
      try {
        return (await p.client.subscribeAsync(filter, { qos: 1 }))[0]?.qos;
      } catch (err) {
        return (err as { packet?: { granted?: number[] } }).packet?.granted?.[0];
      }
    };
    // The down topic holds the first slot.
    assert.equal(await grant('devices/dev-a/cmd/a'), 1);
    assert.equal(await grant('devices/dev-a/cmd/b'), 1);
    assert.equal(await grant('devices/dev-a/cmd/c'), 128);
    assert.equal(await grant('devices/dev-a/cmd/a'), 1, 'a filter already held is not a new one');
    await p.client.unsubscribeAsync('devices/dev-a/cmd/a');
    assert.equal(await grant('devices/dev-a/cmd/c'), 1);
    await p.close();
  });

  it('keeps no per-connection state of a closed connection that acknowledged QoS 1 messages (no Map or Set holds its broker-side id)', async () => {
    h = await startHarness(backend, sessions);
    const harness = h;
    const signer = backend.devices.get('dev-a');
    assert.ok(signer);
    // Only the numbers are kept here, so the test itself holds no string naming a connection.
    const seqs: number[] = [];
    harness.transport.on('welcomed', (conn) => seqs.push(Number(conn.slice(conn.indexOf(':') + 1))));
    for (let i = 0; i < 3; i += 1) {
      const p = peripheralFor(h.url, signer, backend.backendKeys());
      await p.connect();
      // The challenge and the welcome arrive at QoS 1: the peripheral acknowledges both.
      assert.equal((await p.authenticate()).kind, 'authenticated');
      const gone = within(new Promise<void>((resolve) => harness.transport.once('closed', () => resolve())), 10_000, 'connection closed');
      await p.close();
      await gone;
    }
    assert.equal(seqs.length, 3);
    // Let aedes finish its close callbacks (setImmediate) before the snapshot's full GC.
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(await inMapsOrSets(seqs.map((n) => `mqtt:${n}`)), [], 'broker-side ids of closed connections still held');
  });

  it("writes packets without mqtt-packet's table of 65,536 number Buffers (6.6 MB of heap)", async () => {
    const writeToStream = (createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } }).writeToStream;
    writeToStream.cacheNumbers = true;
    h = await startHarness(backend, sessions);
    assert.equal(writeToStream.cacheNumbers, false, 'the transport switches the table off at start');
    // Packet ids and topic lengths written without the table: a whole exchange still verifies.
    const signer = backend.devices.get('dev-a');
    assert.ok(signer);
    const p = peripheralFor(h.url, signer, backend.backendKeys());
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
    await p.close();
  });

  it('listens with the deepest accept queue the kernel allows (net.core.somaxconn)', async () => {
    h = await startHarness(backend, sessions);
    const somaxconn = Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8')).trim());
    // For a listening socket ss reports the backlog as Send-Q.
    const out = await new Promise<string>((resolve, reject) =>
      execFile('ss', ['-ltnH', `sport = :${h?.port ?? 0}`], { timeout: 5000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    const sendQ = Number(out.trim().split(/\s+/)[2]);
    assert.equal(sendQ, Math.min(somaxconn, 65535));
  });

  it('stops cleanly: listeners first, then the broker closes every connection; the port is free again', async () => {
    h = await startHarness(backend, sessions);
    const port = h.port;
    const client = await rawClient(h.url, { clientId: 'dev-a' });
    const gone = closed(client);
    await h.stop();
    h = undefined;
    await gone;
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((resolve) => again.close(() => resolve()));
  });

  it('validates its options, naming each bad one', async () => {
    const { MqttTransport } = await import('../../../../daemon/transports/mqtt/transport.js');
    const { Pipeline } = await import('../../../../daemon/pipeline/pipeline.js');
    const pipeline = new Pipeline({ gw: 'gw-x', verifier: backend, sessions });
    assert.throws(
      () => new MqttTransport({ pipeline, ...MQTT_DEFAULTS, maxPacketBytes: 100, authTimeoutMs: 0 }),
      (e: Error & { code?: string }) => e.code === 'GH_MQTT_BAD_OPTION' && /maxPacketBytes/.test(e.message) && /authTimeoutMs/.test(e.message),
    );
  });
});
