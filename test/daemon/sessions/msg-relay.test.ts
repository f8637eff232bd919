/**
 * protocol-v2 "msg" end to end: the reference backend over HTTPS verifies every hello (its
 * policies decide the grants), aedes on loopback is the broker, welcomed v1 reference peripherals
 * on mqtt.js publish and subscribe as local clients, and reference v2 peripherals on mqtt.js
 * receive what their `sub` policy grants as msg frames, which they decrypt. mosquitto_pub is the
 * client we did not write: unwelcomed, the ACL refuses its publish and nothing is relayed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { BackendClient } from '../../../daemon/backend-client/client.js';
import type { SessionManager } from '../../../daemon/backend-client/session.js';
import { MsgRelay } from '../../../daemon/sessions/msg-relay.js';
import { GatehouseMetrics } from '../../../daemon/status/metrics.js';
import { checkCommand, type Ed25519Signer, type Policy } from '../../../protocol/index.js';
import { MemoryCommandStore } from '../../../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../../../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2, type PeripheralSessionV2 } from '../../../peripherals/reference/session-v2.js';
import { BackendEnv, GW } from '../../../testkit/backend-env.js';
import { waitUntil } from '../../../testkit/wait.js';
import { captureIO } from '../../../testkit/cli-io.js';
import { generateKeyFile } from '../../../peripherals/reference/keyfile.js';
import { run as peripheralCli } from '../../../peripherals/cli.js';
import { peripheralFor, startHarness, within, type Harness } from '../transports/mqtt/harness.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

describe('daemon/sessions msg relay (aedes on loopback, reference backend over HTTPS, mqtt.js and mosquitto_pub)', function () {
  this.timeout(120_000);
  const suitePki = BackendEnv.suitePki('gh-msg-pki-');
  let env: BackendEnv;
  let session: SessionManager;
  let client: BackendClient;
  let relay: MsgRelay;
  let h: Harness;
  let dir: string;
  const closers: (() => Promise<void>)[] = [];
  /** The reference v2 peripherals by device (their live sessions seal frames). */
  const sessions = new Map<string, ReferencePeripheralV2>();
  const live = (dev: string): PeripheralSessionV2 => sessions.get(dev)?.session as PeripheralSessionV2;

  async function start(maxQueuedPerSession: number, devices: Record<string, Policy>): Promise<void> {
    env = await BackendEnv.create({ pki: suitePki() });
    for (const [dev, policy] of Object.entries(devices)) await env.addDevice(dev, [GW], policy);
    session = env.session();
    assert.equal(await session.start(), true, 'gateway session obtained');
    client = env.client(session);
    await client.start();
    relay = new MsgRelay({ maxQueuedPerSession });
    h = await startHarness(client, session, { gw: GW, transport: { msgRelay: relay } });
  }

  const signer = (dev: string): Ed25519Signer => env.devices.get(dev) as Ed25519Signer;

  /** A welcomed v1 reference peripheral: a local client with its lease policy's broker rights. */
  async function v1(dev: string): Promise<MqttClient> {
    const p = peripheralFor(h.url, signer(dev), env.backendKeys);
    closers.push(() => p.close());
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
    return p.client;
  }

  /** A reference v2 peripheral with a live session whose first frame (a ping) is receipted. */
  async function v2(dev: string, store = new MemoryCommandStore()): Promise<MqttReferencePeripheralV2> {
    const key = signer(dev);
    const peripheral = new ReferencePeripheralV2({ dev, signer: key, devicePublicKey: key.publicKeyRaw, backendKeys: env.backendKeys, commandStore: store });
    sessions.set(dev, peripheral);
    const p = new MqttReferencePeripheralV2({ url: h.url, peripheral, timeoutMs: 15_000 });
    closers.push(() => p.close());
    await p.connect();
    const r = await p.authenticate();
    assert.equal(r.kind, 'established', r.kind === 'established' ? '' : `${r.kind}: ${'reason' in r ? r.reason : r.code}`);
    await p.send(live(dev).sealPing());
    assert.deepEqual((await p.nextReceipt()).settled, [0]);
    return p;
  }

  const publish = (c: MqttClient, topic: string, body: Uint8Array | string): Promise<void> =>
    within(c.publishAsync(topic, Buffer.from(body), { qos: 1 }).then(() => undefined), 10_000, `PUBACK on ${topic}`);

  /** The gateway's view of `dev`'s session (SessionInfo). */
  const info = (dev: string) => {
    const s = h.transport.sessions().find((x) => x.dev === dev);
    assert.ok(s !== undefined, `a live session of ${dev}`);
    return s;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-msg-'));
  });

  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
    await h?.stop();
    await env?.dispose();
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('relays what a v1 device publishes on T to the v2 session whose sub grants T, as msg frames it decrypts with rising seqs; a session without the grant gets nothing, a v2 pub is not echoed to its own session, an unwelcomed mosquitto_pub is relayed to no one', async () => {
    await start(64, {
      'v1-pub': { pub: ['sensors/#', 'devices/#'], sub: [] },
      'v2-sub': { pub: [], sub: ['sensors/+/temp'] },
      'v2-other': { pub: [], sub: ['devices/{dev}/cmd/#'] },
      'v2-pub': { pub: ['sensors/{dev}/temp'], sub: ['sensors/#'] },
    });
    const pub = await v1('v1-pub');
    const sub = await v2('v2-sub');
    const other = await v2('v2-other');
    const own = await v2('v2-pub');

    await publish(pub, 'sensors/room1/temp', '21.5');
    await publish(pub, 'sensors/room1/humidity', '40'); // not granted to v2-sub
    await publish(pub, 'sensors/room2/temp', '19.0');
    const a = await sub.nextMsg();
    const b = await sub.nextMsg();
    assert.deepEqual([a.topic, str(a.body)], ['sensors/room1/temp', '21.5']);
    assert.deepEqual([b.topic, str(b.body)], ['sensors/room2/temp', '19.0']);
    // The session's gateway-side counter: receipt 0, then the msgs.
    assert.deepEqual([a.seq, b.seq], [1, 2]);

    // v2-pub's own pub reaches v2-sub (sensors/+/temp) but is not echoed to v2-pub.
    await own.pub('sensors/v2-pub/temp', text('22.0'));
    const c = await sub.nextMsg();
    assert.deepEqual([c.topic, str(c.body), c.seq], ['sensors/v2-pub/temp', '22.0', 3]);

    // mosquitto_pub without a welcome: its publish is refused by the ACL, nothing is relayed.
    const file = join(dir, 'body.txt');
    await writeFile(file, 'from-mosquitto');
    const mosq = spawn('mosquitto_pub', ['-V', 'mqttv311', '-h', '127.0.0.1', '-p', String(h.port), '-q', '1', '-t', 'sensors/room3/temp', '-f', file], { stdio: 'ignore' });
    const code = await within(new Promise<number | null>((resolve) => mosq.once('exit', resolve)), 10_000, 'mosquitto_pub exit');
    assert.notEqual(code, 0, 'mosquitto_pub sees its publish refused');

    // A marker each session is granted, published after everything above: each one's next msg
    // is the marker, so nothing ungranted (or echoed, or from mosquitto_pub) came before it.
    await publish(pub, 'sensors/marker/temp', 'marker');
    await publish(pub, 'devices/v2-other/cmd/marker', 'marker');
    const m1 = await sub.nextMsg();
    assert.deepEqual([m1.topic, m1.seq], ['sensors/marker/temp', 4]);
    const m2 = await other.nextMsg();
    assert.deepEqual([m2.topic, m2.seq], ['devices/v2-other/cmd/marker', 1]);
    // v2-pub's sub (sensors/#) grants everything the v1 device published there, but not its own pub.
    const ownTopics: string[] = [];
    while (ownTopics.at(-1) !== 'sensors/marker/temp') ownTopics.push((await own.nextMsg()).topic);
    assert.deepEqual(ownTopics, ['sensors/room1/temp', 'sensors/room1/humidity', 'sensors/room2/temp', 'sensors/marker/temp']);
    // Counted once the connection took each frame (its write done), which may follow its arrival.
    await waitUntil(() => h.transport.stats().sessionCounters.msgs.relayed === 9, 'nine msgs counted');
    assert.deepEqual([info('v2-sub').msgs, info('v2-other').msgs, info('v2-pub').msgs], [4, 1, 4]);
    assert.deepEqual(h.transport.stats().sessionCounters.msgs, { relayed: 9, full: 0, unsent: 0 });
  });

  it('drops and counts, for a session that stops reading, what its full queue cannot take, without stalling the broker, a v1 subscriber or another v2 session', async () => {
    await start(8, {
      'v1-pub': { pub: ['bulk/#'], sub: [] },
      'v1-sub': { pub: [], sub: ['bulk/#'] },
      'v2-slow': { pub: [], sub: ['bulk/#'] },
      'v2-fast': { pub: [], sub: ['bulk/#'] },
    });
    const pub = await v1('v1-pub');
    const sub = await v1('v1-sub');
    let subGot = 0;
    sub.on('message', () => (subGot += 1));
    await within(sub.subscribeAsync('bulk/#', { qos: 1 }), 10_000, 'SUBACK');
    const slow = await v2('v2-slow');
    const fast = await v2('v2-fast');
    const fastFrames: Uint8Array[] = [];
    fast.client.on('message', (_t, payload) => fastFrames.push(new Uint8Array(payload)));
    // v2-slow stops reading its socket: the kernel's buffers fill, then the broker's writes to it wait.
    slow.client.stream.pause();
    const body = Buffer.alloc(1000, 0x61);
    let n = 0;
    // Serial QoS 1 publishes: each PUBACK says the broker took the message and went on.
    while (info('v2-slow').msgDrops === 0) {
      assert.ok(n < 50_000, 'v2-slow never filled its queue');
      await publish(pub, `bulk/${n}`, body);
      n += 1;
    }
    for (const end = n + 20; n < end; n++) await publish(pub, `bulk/${n}`, body);
    await waitUntil(() => subGot === n && fastFrames.length === n, `${n} messages at the v1 subscriber and at v2-fast`, 30_000);
    const topics: string[] = [];
    for (const f of fastFrames) {
      const e = await live('v2-fast').open(f);
      assert.equal(e.kind, 'msg');
      if (e.kind === 'msg') topics.push(e.topic);
    }
    assert.deepEqual(topics, Array.from({ length: n }, (_, i) => `bulk/${i}`), 'v2-fast got every message, in order');
    const slowInfo = info('v2-slow');
    assert.equal(info('v2-fast').msgDrops, 0);
    assert.ok(slowInfo.msgDrops >= 20, `the last 20 were dropped for v2-slow (${slowInfo.msgDrops} dropped)`);
    assert.ok(slowInfo.msgs + slowInfo.msgDrops + 8 + 1 >= n, 'every message relayed, dropped, queued (8) or in flight (1)');
    // Counted in /metrics.
    const metrics = new GatehouseMetrics();
    metrics.setSources({ msgs: () => relay.stats() });
    const text = await metrics.registry.metrics();
    const full = relay.stats().full;
    assert.ok(full >= 20);
    assert.match(text, new RegExp(`^gatehouse_v2_msgs_total\\{outcome="full"\\} ${full}$`, 'm'));
    assert.match(text, /^gatehouse_v2_msgs_total\{outcome="relayed"\} \d+$/m);
    // Its connection gone, the session ends: the 8 still queued are never sent, counted.
    slow.client.stream.destroy();
    await waitUntil(() => relay.stats().unsent >= 8, 'the queued msgs of v2-slow counted unsent');
    assert.equal(h.transport.sessions().some((x) => x.dev === 'v2-slow'), false);
  });

  it('hands a msg whose body is a valid command for the session up as data: never acted on, stored or acked', async () => {
    await start(64, { 'v1-pub': { pub: ['devices/#'], sub: [] }, 'v2-dev': { pub: [], sub: ['devices/{dev}/cmd/#'] } });
    const pub = await v1('v1-pub');
    const store = new MemoryCommandStore();
    const dev = await v2('v2-dev', store);
    const issued = await env.backend.issueCommand({ dev: 'v2-dev', topic: 'devices/v2-dev/cmd/reboot', body: text('now') });
    // As a cmd frame these bytes would be acted on: they verify and name this session's hh.
    assert.deepEqual(Buffer.from(issued.hh), Buffer.from(live('v2-dev').hh));
    assert.equal(checkCommand(issued.command, { backendKeys: env.backendKeys, dev: 'v2-dev', hh: issued.hh }).action, 'execute');
    const framesIn = info('v2-dev').framesIn;
    await publish(pub, 'devices/v2-dev/cmd/reboot', issued.command);
    const m = await dev.nextMsg();
    assert.equal(m.kind, 'msg');
    assert.deepEqual(Buffer.from(m.body), Buffer.from(issued.command));
    assert.equal(await store.load(), undefined, 'no cid stored as acted on');
    // Nothing sealed in answer: a ping now is the session's next frame (seq 1) and the gateway
    // has received nothing else from it.
    assert.deepEqual(live('v2-dev').unsettled, []);
    await dev.send(live('v2-dev').sealPing());
    assert.deepEqual((await dev.nextReceipt()).settled, [1]);
    assert.equal(info('v2-dev').framesIn, framesIn + 1);
  });

  it('gatehouse peripheral mqtt --protocol 2 --msgs 2 prints the msgs its sub policy grants, a command-shaped body as data', async () => {
    await start(64, { 'v1-pub': { pub: ['devices/#'], sub: [] } });
    const keyPath = join(dir, 'cli.key');
    const key = await generateKeyFile(keyPath, 'v2-cli');
    await env.backend.store.addDevice({ id: 'v2-cli', publicKey: key.signer.publicKeyRaw, gateways: [GW], policy: { pub: [], sub: ['devices/{dev}/cmd/#'] } });
    const pub = await v1('v1-pub');
    const io = captureIO();
    const args = ['mqtt', '--key', keyPath, '--url', h.url, '--backend-key', Buffer.from(env.backend.publicKeyRaw).toString('hex'), '--backend-kid', env.backend.kid, '--protocol', '2', '--msgs', '2'];
    const exited = peripheralCli(args, io);
    // Its ping receipted (the gateway took a frame from it), it waits for msgs.
    await waitUntil(() => h.transport.sessions().some((x) => x.dev === 'v2-cli' && x.framesOut >= 1), 'the CLI session receipted');
    await publish(pub, 'devices/v2-cli/cmd/hello', 'hi there');
    await publish(pub, 'devices/v2-cli/cmd/reboot', Uint8Array.of(0xd2, 0x84, 0x00));
    assert.equal(await within(exited, 15_000, 'the CLI exits'), 0, io.out() + io.err());
    assert.match(io.out(), /^msg 1 devices\/v2-cli\/cmd\/hello hi there$/m);
    assert.match(io.out(), /^msg 2 devices\/v2-cli\/cmd\/reboot hex:d28400$/m);
    assert.match(io.out(), /; bye sent$/m);
    const bad = captureIO();
    assert.equal(await peripheralCli(['mqtt', '--key', keyPath, '--url', h.url, '--backend-key', 'x', '--backend-kid', 'k', '--msgs', '2'], bad), 2, 'msgs need protocol 2');
  });
});
