/**
 * Protocol v2 over MQTT end to end, with the real parts: the reference backend over HTTPS
 * (grants), the backend client and session manager, the gateway key in swtpm, the pipeline, aedes
 * on loopback, and the reference v2 peripheral on mqtt.js. Includes the relay attack (a
 * forwarding MQTT client pair between a real peripheral and the gateway) and foreign gateways.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import {
  decodeChallengeV2,
  encodeChallengeRequest,
  encodeChallengeRequestV2,
  parseReject,
  parseRejectV2,
  randomNonce,
  signHelloV2,
  type Ed25519Signer,
  type Signer,
} from '../../../../protocol/index.js';
import { startTestBackend, type TestBackend } from '../../../../testkit/backend.js';
import { backendHttpFor, backendKeysOf, startBackendSide, startTpmGatewayKey, type GatewayBackendSide, type TpmGatewayKey } from '../../../../testkit/gateway-backend.js';
import type { BackendHttp } from '../../../../daemon/backend-client/dispatcher.js';
import { MemoryCommandStore } from '../../../../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../../../../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2, type SessionEvent } from '../../../../peripherals/reference/session-v2.js';
import { generateKeyFile } from '../../../../peripherals/reference/keyfile.js';
import { run as peripheralCli } from '../../../../peripherals/cli.js';
import { captureIO } from '../../../../testkit/cli-io.js';
import { GatehouseMetrics } from '../../../../daemon/status/metrics.js';
import { ReferencePeripheral } from '../../../../peripherals/reference/peripheral.js';
import { MqttReferencePeripheral } from '../../../../peripherals/reference/mqtt-peripheral.js';
import { rawClient, nextMessage, startHarness, closed, type Harness } from './harness.js';
import { ManualClock } from '../../../../testkit/manual-clock.js';

const GW = 'gw-v2-1';
const GW_FOREIGN = 'gw-v2-foreign';
/** A gateway whose transport timers run on a ManualClock, with protocol.maxSessionAgeSec 120. */
const GW_CLOCKED = 'gw-v2-clocked';

interface Gateway extends GatewayBackendSide {
  h: Harness;
}

describe('daemon/transports/mqtt protocol v2 end to end (reference backend, swtpm, aedes)', function () {
  this.timeout(120_000);
  let dir: string;
  let tpm: TpmGatewayKey;
  let tb: TestBackend;
  let http: BackendHttp;
  let closeAgent: () => Promise<void>;
  let gw: Gateway;
  let foreign: Gateway;
  let clocked: Gateway;
  const clock = new ManualClock(Date.now());
  const devices = new Map<string, Ed25519Signer>();
  const open: { close(): Promise<void> }[] = [];
  const raw: MqttClient[] = [];

  const backendKeys = (): Map<string, Uint8Array> => backendKeysOf(tb);

  async function startGateway(id: string, signer: Signer, spki: Uint8Array | undefined, clocked?: { clock: ManualClock; maxSessionAgeSec: number }): Promise<Gateway> {
    const side = await startBackendSide({ gw: id, http, tpmSigner: signer, ...(spki === undefined ? {} : { tpmPublicKeySpki: spki }), backendKeys: backendKeys(), stateDir: join(dir, `state-${id}`) });
    const { client, sessions } = side;
    const h = await startHarness(client, sessions, {
      gw: id,
      ...(clocked === undefined ? {} : { transport: { clock: clocked.clock }, pipeline: { maxSessionAgeSec: clocked.maxSessionAgeSec } }),
    });
    return { ...side, h };
  }

  async function stopGateway(g: Gateway | undefined): Promise<void> {
    await g?.h.stop();
    await g?.stop();
  }

  function v2Peripheral(url: string, dev: string): MqttReferencePeripheralV2 {
    const signer = devices.get(dev) as Ed25519Signer;
    const peripheral = new ReferencePeripheralV2({ dev, signer, devicePublicKey: signer.publicKeyRaw, backendKeys: backendKeys(), commandStore: new MemoryCommandStore() });
    const p = new MqttReferencePeripheralV2({ url, peripheral, timeoutMs: 15_000 });
    open.push(p);
    return p;
  }

  async function client(url: string): Promise<MqttClient> {
    const c = await rawClient(url, { clientId: '' });
    raw.push(c);
    return c;
  }

  /** Resolves once `cond()` holds (checked on every metric-relevant tick, bounded). */
  async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-mqtt-v2-'));
    tpm = await startTpmGatewayKey(dir);
    const { keyStore } = tpm;
    tb = await startTestBackend();
    await tb.addGateway(GW, { tpmPublicKeyPem: keyStore.publicKeyPem() });
    const other = await tb.addGateway(GW_FOREIGN);
    const third = await tb.addGateway(GW_CLOCKED);
    for (const dev of ['v2-a', 'v2-again', 'v2-relay', 'v2-drops', 'v2-foreign', 'v2-mix', 'v1-relay']) devices.set(dev, await tb.addDevice(dev, { gateways: [GW] }));
    for (const dev of ['v2-expire', 'v1-expire']) devices.set(dev, await tb.addDevice(dev, { gateways: [GW_CLOCKED] }));
    ({ http, close: closeAgent } = backendHttpFor(tb, 3000));
    gw = await startGateway(GW, keyStore.signer(`tpm:${GW}`), keyStore.publicKeySpkiDer());
    foreign = await startGateway(GW_FOREIGN, other.tpm, undefined);
    clocked = await startGateway(GW_CLOCKED, third.tpm, undefined, { clock, maxSessionAgeSec: 120 });
  });

  afterEach(async () => {
    for (const c of raw.splice(0)) c.end(true);
    await Promise.all(open.splice(0).map((p) => p.close()));
  });

  after(async () => {
    await stopGateway(clocked);
    await stopGateway(foreign);
    await stopGateway(gw);
    await closeAgent?.();
    await tb?.close();
    await tpm?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('authenticates a v2 peripheral (grant in the welcome) and streams pub frames with receipts; the session shows in the transport', async () => {
    const p = v2Peripheral(gw.h.url, 'v2-a');
    await p.connect();
    const r = await p.authenticate();
    assert.equal(r.kind, 'established', r.kind === 'established' ? '' : JSON.stringify(r));
    assert.ok(r.kind === 'established' && r.session.mode === 'online');
    // A local subscriber (another welcomed v1 device would need rights: use the broker's own view).
    for (let i = 0; i < 3; i++) await p.pub('devices/v2-a/t', new TextEncoder().encode(`m${i}`));
    const settled: number[] = [];
    while (settled.length < 3) settled.push(...(await p.nextReceipt()).settled);
    assert.deepEqual(settled, [0, 1, 2]);
    // A topic outside the lease policy is denied, not dropped.
    await p.pub('devices/other/t', new Uint8Array([1]));
    const denied = await p.nextReceipt();
    assert.deepEqual(denied.denied, [3]);
    const info = gw.h.transport.sessions().find((s) => s.dev === 'v2-a');
    assert.ok(info !== undefined);
    assert.equal(info.version, 2);
    assert.equal(info.framesIn, 4);
    assert.ok(info.framesOut >= 2);
    assert.equal(gw.h.transport.stats().sessionCounters.denied >= 1, true);
  });

  it('a challenge-request on the connection that owns the session ends it with bye replaced and the connection stays open for the new exchange', async () => {
    const p = v2Peripheral(gw.h.url, 'v2-again');
    await p.connect();
    const first = await p.authenticate();
    assert.equal(first.kind, 'established', first.kind === 'established' ? '' : JSON.stringify(first));
    const replaced = gw.h.transport.stats().sessionCounters.ended.replaced ?? 0;
    // The second exchange reads past the old session's bye (a frame) to its challenge.
    const second = await p.authenticate();
    assert.equal(second.kind, 'established', second.kind === 'established' ? '' : JSON.stringify(second));
    assert.ok(first.kind === 'established' && second.kind === 'established');
    assert.notDeepEqual(second.session.sid, first.session.sid);
    assert.equal(p.closed, false);
    assert.equal(gw.h.transport.stats().sessionCounters.ended.replaced, replaced + 1);
    // The gateway opens the session once the welcome is out: wait for it.
    const sidHex = Buffer.from(second.session.sid).toString('hex');
    await until(() => gw.h.transport.sessions().some((s) => s.dev === 'v2-again' && s.sid === sidHex), 'the new session in the table');
    const live = gw.h.transport.sessions().filter((s) => s.dev === 'v2-again');
    assert.equal(live.length, 1);
    // The new session carries frames on the same connection.
    await p.pub('devices/v2-again/t', new Uint8Array([1]));
    assert.deepEqual((await p.nextReceipt()).settled, [0]);
  });

  it('relay attack against v1: a relay between a real peripheral and the gateway obtains the device\'s broker rights (the v1 limit)', async () => {
    // The relay: its own connection to the gateway, and a forwarding pair towards the peripheral.
    // The peripheral talks to the relay's broker; here the relay forwards by hand on its gateway
    // connection what the peripheral publishes, and back — the peripheral is the v1 reference one.
    const dev = 'v1-relay';
    const relay = await client(gw.h.url);
    await relay.subscribeAsync(`gatehouse/v1/${dev}/down`, { qos: 1 });
    // The victim: the real v1 reference peripheral, fed what the relay carries (it signs whatever
    // gn it is shown, and accepts the welcome: it authenticated the gateway, not the path).
    const victim = new ReferencePeripheral({ dev, signer: devices.get(dev) as Ed25519Signer, backendKeys: backendKeys() });
    const gotCh = nextMessage(relay, `gatehouse/v1/${dev}/down`);
    await relay.publishAsync(`gatehouse/v1/${dev}/up`, Buffer.from(victim.challengeRequest()), { qos: 1 });
    const hello = await victim.hello(new Uint8Array(await gotCh));
    const gotWelcome = nextMessage(relay, `gatehouse/v1/${dev}/down`);
    await relay.publishAsync(`gatehouse/v1/${dev}/up`, Buffer.from(hello), { qos: 1 });
    assert.equal(victim.receive(new Uint8Array(await gotWelcome)).kind, 'authenticated', 'the victim accepts the relayed welcome');

    // The relay's connection now holds the device's plaintext rights: it subscribes within the
    // policy (SUBACK granted) and publishes under the device's name without being closed.
    const granted = await relay.subscribeAsync(`devices/${dev}/cmd/#`, { qos: 1 });
    assert.equal(granted[0]?.qos, 1, 'v1: the relay got the device\'s sub rights');
    await relay.publishAsync(`devices/${dev}/injected`, Buffer.from('by the relay'), { qos: 1 });
    assert.ok(relay.connected, 'v1: the relay publishes under the device\'s lease policy');
  });

  it('relay attack against v2: the peripheral authenticates through the relay, but injected or altered frames are dropped, the relay gets no broker rights, and 16 bad frames end the session', async () => {
    const dev = 'v2-relay';
    const up = `gatehouse/v2/${dev}/up`;
    const down = `gatehouse/v2/${dev}/down`;
    // The relay's in-test "broker side": the peripheral's messages reach the relay, which
    // republishes them on its own gateway connection, and forwards the gateway's answers back.
    const relay = await client(gw.h.url);
    await relay.subscribeAsync(down, { qos: 1 });
    const signer = devices.get(dev) as Ed25519Signer;
    const victim = new ReferencePeripheralV2({ dev, signer, devicePublicKey: signer.publicKeyRaw, backendKeys: backendKeys(), commandStore: new MemoryCommandStore() });
    const next = (): Promise<Uint8Array> => nextMessage(relay, down).then((b) => new Uint8Array(b));
    let got = next();
    await relay.publishAsync(up, Buffer.from(victim.challengeRequest()), { qos: 1 });
    const challenge = await got;
    got = next();
    await relay.publishAsync(up, Buffer.from(await victim.hello(challenge)), { qos: 1 });
    const ev = victim.receive(await got);
    assert.equal(ev.kind, 'established', 'the real peripheral accepts the welcome it was relayed');
    assert.ok(ev.kind === 'established');
    const session = ev.session;
    // The peripheral's own frame, relayed intact, is accepted and receipted.
    got = next();
    await relay.publishAsync(up, Buffer.from(session.sealPub(`devices/${dev}/t`, new Uint8Array([1]))), { qos: 1 });
    const receipt = await session.open(await got);
    assert.equal(receipt.kind, 'receipt');
    // Altered frames: a bit flipped in the ciphertext, a replay, a truncation, injected garbage.
    const frame = session.sealPub(`devices/${dev}/t`, new Uint8Array([2]));
    const flipped = Uint8Array.from(frame);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 1;
    const dropsBefore = sumDrops();
    const bad: Uint8Array[] = [flipped, frame.subarray(0, frame.length - 3), Uint8Array.of(0xd0, 0x83, 0x43, 0xa1, 0x01, 0x0a, 0xa1, 0x06, 0x41, 0x07, 0x48, 1, 2, 3, 4, 5, 6, 7, 8)];
    for (const b of bad) await relay.publishAsync(up, Buffer.from(b), { qos: 1 });
    await until(() => sumDrops() >= dropsBefore + 3, 'three drops counted');
    const info = gw.h.transport.sessions().find((s) => s.dev === dev);
    assert.equal(info?.drops, 3, 'each altered frame dropped, none answered');
    // The relay's connection has no plaintext rights: the lease's sub filter is refused (SUBACK 0x80).
    const refused = await relay.subscribeAsync(`devices/${dev}/cmd/#`, { qos: 1 }).then(
      (g) => g[0]?.qos,
      (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0],
    );
    assert.equal(refused, 128, 'v2: no plaintext broker rights for the session\'s connection');
    // 13 more injected frames: the 16th drop ends the session (bye malformed), then the connection.
    const endedBefore = gw.h.transport.stats().sessionCounters.ended.malformed ?? 0;
    const relayGone = closed(relay);
    for (let i = 0; i < 13; i++) await relay.publishAsync(up, Buffer.from(bad[i % bad.length] as Uint8Array), { qos: 1 }).catch(() => undefined);
    await relayGone;
    assert.equal(gw.h.transport.stats().sessionCounters.ended.malformed, endedBefore + 1);
    assert.equal(gw.h.transport.sessions().some((s) => s.dev === dev), false, 'the session ended');
  });

  it('ends a v2 session at its life with bye expired and closes the connection; a v1 welcome on the same gateway is closed at protocol.maxSessionAgeSec too', async () => {
    const p = v2Peripheral(clocked.h.url, 'v2-expire');
    await p.connect();
    const r = await p.authenticate();
    assert.ok(r.kind === 'established', r.kind);
    // The session opens once its welcome is out.
    await until(() => clocked.h.transport.sessions().some((s) => s.dev === 'v2-expire'), 'session opened');
    const info = clocked.h.transport.sessions().find((s) => s.dev === 'v2-expire');
    assert.equal(info?.lifeSeconds, 120, 'life = min(maxSessionAgeSec, grant life, lease)');
    // A v1 device on the same gateway, welcomed by the reference backend's lease.
    const v1Signer = devices.get('v1-expire') as Ed25519Signer;
    const v1 = new MqttReferencePeripheral({ url: clocked.h.url, peripheral: new ReferencePeripheral({ dev: 'v1-expire', signer: v1Signer, backendKeys: backendKeys() }), timeoutMs: 15_000 });
    open.push(v1);
    await v1.connect();
    assert.equal((await v1.authenticate()).kind, 'authenticated');
    // A frame keeps the v2 session past its first-frame deadline (which runs on the same clock).
    await p.send(r.session.sealPing());
    await p.nextReceipt();
    clock.advance(119_000);
    assert.ok(!p.closed && v1.client.connected, 'both live before their life runs out');
    const before = clocked.h.transport.stats();
    const v1Closed = closed(v1.client);
    clock.advance(1000);
    const bye = await p.nextEvent();
    assert.ok(bye.kind === 'ended' && bye.reason === 'expired', bye.kind === 'ended' ? bye.reason : bye.kind);
    await until(() => p.closed, 'gateway closes the connection after bye expired');
    await v1Closed;
    const after = clocked.h.transport.stats();
    assert.equal((after.sessionCounters.ended.expired ?? 0) - (before.sessionCounters.ended.expired ?? 0), 1);
    assert.equal(after.closedExpired - before.closedExpired, 1, 'the v1 connection is counted as expired');
  });

  it('ends a v2 session with bye malformed after 16 dropped frames (replayed, bit-flipped, truncated, wrong-key, oversized) and counts them by reason', async () => {
    const p = v2Peripheral(gw.h.url, 'v2-drops');
    await p.connect();
    const r = await p.authenticate();
    assert.ok(r.kind === 'established');
    const good = r.session.sealPing();
    await p.send(good);
    await p.nextReceipt();
    const other = v2Peripheral(gw.h.url, 'v2-a');
    await other.connect();
    const ro = await other.authenticate();
    assert.ok(ro.kind === 'established');
    const wrongKey = ro.session.sealPing();
    const flipped = Uint8Array.from(r.session.sealPing());
    flipped[flipped.length - 2] = (flipped[flipped.length - 2] as number) ^ 0x80;
    const kinds: Uint8Array[] = [good, flipped, good.subarray(0, good.length - 1), wrongKey, new Uint8Array(1300).fill(0xd0)];
    const before = gw.h.transport.stats().sessionCounters;
    for (let i = 0; i < 16; i++) await p.send(kinds[i % kinds.length] as Uint8Array);
    const bye = await p.nextEvent();
    assert.equal(bye.kind, 'ended');
    assert.ok(bye.kind === 'ended' && bye.reason === 'malformed');
    await until(() => p.closed, 'gateway closes the connection after its bye');
    const after = gw.h.transport.stats().sessionCounters;
    assert.ok((after.ended.malformed ?? 0) > (before.ended.malformed ?? 0));
    assert.ok((after.drops.GH_FRAME_REPLAY ?? 0) > (before.drops.GH_FRAME_REPLAY ?? 0));
    assert.ok((after.drops.GH_FRAME_DECRYPT ?? 0) > (before.drops.GH_FRAME_DECRYPT ?? 0));
  });

  it('refuses an all-zero X25519 point, a v2 message on a v1 topic and the reverse (unsupported-version), and another connection\'s garbage cannot abort D\'s login', async () => {
    const dev = 'v2-mix';
    const signer = devices.get(dev) as Ed25519Signer;
    const c = await client(gw.h.url);
    const up = `gatehouse/v2/${dev}/up`;
    const down = `gatehouse/v2/${dev}/down`;
    await c.subscribeAsync([down, `gatehouse/v1/${dev}/down`], { qos: 1 });
    // A v2 challenge-request on the v1 topic, and a v1 one on the v2 topic.
    let got = nextMessage(c, `gatehouse/v1/${dev}/down`);
    await c.publishAsync(`gatehouse/v1/${dev}/up`, Buffer.from(encodeChallengeRequestV2({ type: 'challenge-request', version: 2, dev })), { qos: 1 });
    const r1 = parseReject(new Uint8Array(await got)).message;
    assert.equal(r1.reason, 'unsupported-version');
    assert.equal(r1.version, 1, 'a v1 reject on the v1 topic');
    assert.equal(r1.dev, dev);
    got = nextMessage(c, down);
    await c.publishAsync(up, Buffer.from(encodeChallengeRequest({ type: 'challenge-request', version: 1, dev })), { qos: 1 });
    const r2 = parseRejectV2(new Uint8Array(await got)).message;
    assert.equal(r2.reason, 'unsupported-version');
    assert.equal(r2.version, 2, 'a reject carries the version of the topic it answers on');
    // All-zero pe: malformed, nothing goes to the backend.
    got = nextMessage(c, down);
    await c.publishAsync(up, Buffer.from(encodeChallengeRequestV2({ type: 'challenge-request', version: 2, dev })), { qos: 1 });
    const ch = decodeChallengeV2(new Uint8Array(await got));
    const zero = await signHelloV2({ type: 'hello', version: 2, dev, pn: randomNonce(16), gn: ch.gn, gw: ch.gw, ge: ch.ge, pe: new Uint8Array(32) }, signer);
    got = nextMessage(c, down);
    await c.publishAsync(up, Buffer.from(zero), { qos: 1 });
    assert.equal(parseRejectV2(new Uint8Array(await got)).message.reason, 'malformed');
    c.end(true);
    // Finding 1: another connection's garbage on D's up topic cannot abort D's login.
    const p = v2Peripheral(gw.h.url, dev);
    await p.connect();
    const attacker = await client(gw.h.url);
    const auth = p.authenticate();
    for (let i = 0; i < 4; i++) await attacker.publishAsync(up, Buffer.from([0xa1, 0x01, 0x66, 0x72, 0x65, 0x6a, 0x65, 0x63, 0x74]), { qos: 1 });
    assert.equal((await auth).kind, 'established');
  });

  it('a foreign gateway the backend refuses for the device (not-allowed-here), and a revoked gateway, produce no welcome the peripheral accepts', async () => {
    const p = v2Peripheral(foreign.h.url, 'v2-foreign');
    await p.connect();
    const r = await p.authenticate();
    assert.equal(r.kind, 'rejected');
    assert.ok(r.kind === 'rejected' && r.reason === 'not-allowed-here');
    await p.close();
    // Revoked: the backend no longer answers this gateway's requests; no grant, no welcome.
    assert.equal(await tb.backend.store.revokeGateway(GW_FOREIGN), true);
    const q = v2Peripheral(foreign.h.url, 'v2-foreign');
    await q.connect();
    const rq = await q.authenticate();
    assert.notEqual(rq.kind, 'established');
  });

  it('/metrics counts dropped frames by reason, sessions by end reason and v2 refusals', async () => {
    const metrics = new GatehouseMetrics();
    metrics.setSources({ sessions: () => gw.h.transport.stats().sessionCounters });
    const off = gw.h.pipeline.events.subscribe((e) => metrics.recordDecision(e));
    try {
      // A v1 message on the v2 topic: a v2 refusal.
      const c = await client(gw.h.url);
      const got = nextMessage(c, 'gatehouse/v2/v2-mix/down');
      await c.subscribeAsync('gatehouse/v2/v2-mix/down', { qos: 1 });
      await c.publishAsync('gatehouse/v2/v2-mix/up', Buffer.from(encodeChallengeRequest({ type: 'challenge-request', version: 1, dev: 'v2-mix' })), { qos: 1 });
      await got;
      const text = await metrics.registry.metrics();
      assert.match(text, /gatehouse_v2_frames_dropped_total\{reason="GH_FRAME_DECRYPT"\} [1-9]/);
      assert.match(text, /gatehouse_v2_sessions_ended_total\{reason="malformed"\} [1-9]/);
      assert.match(text, /gatehouse_v2_rejects_total\{reason="unsupported-version"\} 1/);
    } finally {
      off();
    }
  });

  it('gatehouse peripheral mqtt --protocol 2 authenticates, has a ping receipted and says bye', async () => {
    const keyPath = join(dir, 'cli-v2.key');
    const key = await generateKeyFile(keyPath, 'v2-cli');
    await tb.backend.store.addDevice({ id: 'v2-cli', publicKey: key.signer.publicKeyRaw, gateways: [GW] });
    const io = captureIO();
    const code = await peripheralCli(
      ['mqtt', '--key', keyPath, '--url', gw.h.url, '--backend-key', Buffer.from(tb.backend.publicKeyRaw).toString('hex'), '--backend-kid', tb.backend.kid, '--protocol', '2'],
      io,
    );
    assert.equal(code, 0, io.out() + io.err());
    assert.match(io.out(), /^welcomed \(v2, online\): gateway gw-v2-1 authenticated to v2-cli; session [0-9a-f]{16}, life \d+ s; ping receipted \(1 settled\); bye sent$/m);
    const bad = captureIO();
    assert.equal(await peripheralCli(['mqtt', '--key', keyPath, '--url', gw.h.url, '--backend-key', 'x', '--backend-kid', 'k', '--protocol', '3'], bad), 2);
  });

  it('protocol.versions [2] answers v1 with a v1 reject unsupported-version, and still serves v2', async () => {
    const only2 = await startHarness(gw.client, gw.sessions, { gw: GW, transport: { versions: [2] } });
    try {
      const c = await rawClient(only2.url, { clientId: '' });
      raw.push(c);
      const got = nextMessage(c, 'gatehouse/v1/v2-mix/down');
      await c.publishAsync('gatehouse/v1/v2-mix/up', Buffer.from(encodeChallengeRequest({ type: 'challenge-request', version: 1, dev: 'v2-mix' })), { qos: 1 });
      const r = parseReject(new Uint8Array(await got)).message;
      assert.equal(r.reason, 'unsupported-version');
      assert.equal(r.version, 1);
      const p = v2Peripheral(only2.url, 'v2-mix');
      await p.connect();
      assert.equal((await p.authenticate()).kind, 'established');
    } finally {
      for (const c of raw.splice(0)) c.end(true);
      await Promise.all(open.splice(0).map((p) => p.close()));
      await only2.stop();
    }
  });

  it('accepts frames reordered inside the window, and settles a seq that never arrives as lost after 5 s', async function () {
    this.timeout(30_000);
    const p = v2Peripheral(gw.h.url, 'v2-a');
    await p.connect();
    const r = await p.authenticate();
    assert.ok(r.kind === 'established');
    const f = [0, 1, 2, 3].map(() => r.session.sealPing());
    // 2, 0, 1: reordered, all accepted (none dropped).
    const dropsBefore = sumDrops();
    for (const i of [2, 0, 1]) await p.send(f[i] as Uint8Array);
    const settled: number[] = [];
    while (!settled.includes(2)) settled.push(...(await p.nextReceipt()).settled);
    assert.deepEqual(settled.sort(), [0, 1, 2]);
    assert.equal(sumDrops(), dropsBefore, 'reordered frames inside the window are not drops');
    // seq 3 never sent, seq 4 arrives: after 5 s the gateway settles 3 as lost.
    const f4 = r.session.sealPing();
    await p.send(f4);
    let lostSeen: SessionEvent | undefined;
    while (lostSeen === undefined) {
      const e = await p.nextReceipt();
      if (e.settled.includes(4)) lostSeen = e;
    }
    // seq 3 was a ping: nothing to resend, and it is no longer outstanding.
    assert.deepEqual(r.session.unsettled, []);
  });

  function sumDrops(): number {
    return Object.values(gw.h.transport.stats().sessionCounters.drops).reduce((a, b) => a + (b ?? 0), 0);
  }
});
