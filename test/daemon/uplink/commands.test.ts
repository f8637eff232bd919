/**
 * Commands end to end (protocol-v2 "Commands") with the real parts: the reference backend over
 * HTTPS signs and queues them (`RunningBackend.issueCommand`), the gateway's command relay long
 * polls, holds and relays them as `cmd` frames over MQTT, the reference v2 peripheral checks and
 * answers them, and the ack goes back through the durable queue and the uploader to the backend.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GatewaySessionV2 } from '../../../daemon/sessions/session.js';
import type { DataPlane } from '../../../daemon/uplink/data-plane.js';
import { systemClock, type TimerClock } from '../../../common/clock.js';
import type { Ed25519Signer } from '../../../protocol/index.js';
import { signCommand } from '../../../protocol/v2/index.js';
import { MemoryCommandStore } from '../../../peripherals/reference/command-store.js';
import type { MqttReferencePeripheralV2 } from '../../../peripherals/reference/mqtt-peripheral-v2.js';
import type { SessionEvent } from '../../../peripherals/reference/session-v2.js';
import { startTestBackend, type TestBackend } from '../../../testkit/backend.js';
import { ShiftedClock } from '../../../testkit/backend-env.js';
import { backendHttpFor, backendKeysOf, startBackendSide, type GatewayBackendSide } from '../../../testkit/gateway-backend.js';
import type { Harness } from '../transports/mqtt/harness.js';
import { connectV2Peripheral, liveSessionIn, startUplinkGateway, until, type UplinkGateway } from './fixture.js';


const GW = 'gw-cmd';

describe('daemon/uplink commands end to end (reference backend, command relay, reference v2 peripheral)', function () {
  this.timeout(120_000);
  let dir: string;
  let tb: TestBackend;
  let closeAgent: () => Promise<void>;
  let side: GatewayBackendSide;
  let g: UplinkGateway;
  let plane: DataPlane;
  const devices = new Map<string, Ed25519Signer>();
  /** Each device's command store: it outlives the device's connections, as a file would. */
  const stores = new Map<string, MemoryCommandStore>();
  const peripherals: MqttReferencePeripheralV2[] = [];
  /** The backend's and the gateway's clocks move together (expiry without waiting). */
  const backendClock = new ShiftedClock();
  const clock: TimerClock = { now: () => backendClock.now(), setTimeout: systemClock.setTimeout, clearTimeout: systemClock.clearTimeout };
  const backendKeys = (): Map<string, Uint8Array> => backendKeysOf(tb);

  async function connect(dev: string): Promise<MqttReferencePeripheralV2> {
    let store = stores.get(dev);
    if (store === undefined) stores.set(dev, (store = new MemoryCommandStore()));
    return connectV2Peripheral(peripherals, (g.h as Harness).url, dev, devices.get(dev) as Ed25519Signer, backendKeys(), store);
  }

  async function disconnect(p: MqttReferencePeripheralV2, dev: string): Promise<void> {
    await p.close();
    peripherals.splice(peripherals.indexOf(p), 1);
    await until(() => g.tables.every((t) => t.byDevice(dev) === undefined), `${dev}'s session gone at the gateway`);
  }

  const liveSession = (dev: string): Promise<GatewaySessionV2> => liveSessionIn(g.tables, dev);

  /** The next command-related event at the peripheral (receipts skipped). */
  async function nextCommandEvent(p: MqttReferencePeripheralV2): Promise<Extract<SessionEvent, { kind: 'command' | 'command-answered' }>> {
    for (;;) {
      const e = await p.nextEvent();
      if (e.kind === 'command' || e.kind === 'command-answered') return e;
      assert.ok(e.kind === 'receipt', `unexpected ${e.kind}`);
    }
  }

  const commandOf = async (dev: string, cid: number) => (await tb.backend.store.listCommands(dev)).find((c) => c.cid === cid);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-commands-'));
    tb = await startTestBackend({ clock: backendClock });
    const gwKey = await tb.addGateway(GW);
    for (const dev of ['c-off', 'c-exp', 'c-anchor', 'c-forge']) devices.set(dev, await tb.addDevice(dev, { gateways: [GW] }));
    const { http, close } = backendHttpFor(tb, 1000);
    closeAgent = close;
    side = await startBackendSide({ gw: GW, http, tpmSigner: gwKey.tpm, backendKeys: backendKeys(), stateDir: join(dir, 'session'), clock });
    g = await startUplinkGateway({ gw: GW, stateDir: join(dir, 'state'), http, side, backendKeys: backendKeys(), clock, requestTimeoutMs: 5000 });
    plane = g.plane;
  });

  afterEach(async () => {
    await Promise.all(peripherals.splice(0).map((p) => p.close()));
  });

  after(async () => {
    await g?.stop();
    await side?.stop();
    await closeAgent?.();
    await tb?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a command issued while its device is offline is delivered when it reconnects, and its ack closes it at the backend (done)', async () => {
    const first = await connect('c-off');
    await disconnect(first, 'c-off');
    const issued = await tb.backend.issueCommand({ dev: 'c-off', topic: 'devices/c-off/cmd/reboot', body: new TextEncoder().encode('now') });
    assert.equal((await commandOf('c-off', issued.cid))?.status, undefined, 'open while the device is away');
    const p = await connect('c-off');
    const ev = await nextCommandEvent(p);
    assert.equal(ev.kind, 'command');
    assert.ok(ev.kind === 'command');
    assert.equal(ev.command.cid, issued.cid);
    assert.equal(ev.command.topic, 'devices/c-off/cmd/reboot');
    assert.deepEqual(Buffer.from(ev.command.body).toString(), 'now');
    await p.send(await ev.answer('done'));
    await until(async () => (await commandOf('c-off', issued.cid))?.status === 'done', 'the ack reached the backend: done');
    assert.equal((await commandOf('c-off', issued.cid))?.ackedBy, GW);
    assert.ok(plane.stats().commands.acked >= 1);
    // The backend stores the ack before its answer reaches the uploader, which counts it then.
    await until(() => plane.stats().uploader.acksUploaded >= 1, 'the uploader counted the uploaded ack');

    // Replayed (same cid, the backend's bytes) on the live session: answered with the stored status, not run again.
    const replay = (await commandOf('c-off', issued.cid))?.command as Uint8Array;
    assert.equal(await (await liveSession('c-off')).sendCommand(replay), true);
    const again = await nextCommandEvent(p);
    assert.ok(again.kind === 'command-answered', again.kind);
    assert.equal(again.cid, issued.cid);
    assert.equal(again.status, 'done');
    const acksBefore = plane.stats().uploader.acksUploaded;
    await p.send(again.ack);
    await until(() => plane.stats().uploader.acksUploaded > acksBefore && plane.stats().queue.acks === 0, 'the repeated ack uploaded');
    assert.equal((await commandOf('c-off', issued.cid))?.status, 'done', 'still done');
  });

  it('a command that expired before its device came back is never delivered (the next one is)', async () => {
    // An anchor device keeps a session live, so the gateway polls and holds c-exp's command.
    await connect('c-anchor');
    const first = await connect('c-exp');
    await disconnect(first, 'c-exp');
    const received = plane.stats().commands.received;
    const expiredBefore = plane.stats().commands.expired;
    const old = await tb.backend.issueCommand({ dev: 'c-exp', topic: 'devices/c-exp/cmd/a', body: Uint8Array.of(1), ttlSeconds: 60 });
    await until(() => plane.stats().commands.received > received, 'the gateway holds the command');
    backendClock.offsetMs += 120_000;
    try {
      const p = await connect('c-exp');
      await until(() => plane.stats().commands.expired > expiredBefore, 'the held command dropped as expired');
      const next = await tb.backend.issueCommand({ dev: 'c-exp', topic: 'devices/c-exp/cmd/b', body: Uint8Array.of(2) });
      const ev = await nextCommandEvent(p);
      assert.ok(ev.kind === 'command', ev.kind);
      assert.equal(ev.command.cid, next.cid, 'the first command the device sees is the one issued after the expiry');
      assert.notEqual(next.cid, old.cid);
      await p.send(await ev.answer('done'));
      await until(async () => (await commandOf('c-exp', next.cid))?.status === 'done', 'next acked');
      const stale = await commandOf('c-exp', old.cid);
      assert.equal(stale?.status, undefined, 'the expired command was never acknowledged');
    } finally {
      backendClock.offsetMs -= 120_000;
    }
  });

  it('a cmd frame carrying a gateway-signed or a device-signed command is refused by the peripheral; the refused ack does not close a command', async () => {
    const p = await connect('c-forge');
    const s = await liveSession('c-forge');
    const open = await tb.backend.issueCommand({ dev: 'c-forge', topic: 'devices/c-forge/cmd/x', body: Uint8Array.of(9) });
    // The real one arrives first: hold its answer, so it stays open at the backend meanwhile.
    const real = await nextCommandEvent(p);
    assert.ok(real.kind === 'command' && real.command.cid === open.cid);
    const now = Math.floor(backendClock.now() / 1000);
    const m = { type: 'command' as const, version: 2 as const, dev: 'c-forge', hh: s.hh, cid: open.cid, topic: 'devices/c-forge/cmd/x', body: Uint8Array.of(6), iat: now, exp: now + 600 };
    const gatewaySession = side.sessions.current();
    assert.ok(gatewaySession !== undefined);
    for (const [who, signer] of [
      ['gateway', gatewaySession.signer],
      ['device', devices.get('c-forge') as Ed25519Signer],
    ] as const) {
      assert.equal(await s.sendCommand(await signCommand(m, signer)), true);
      const ev = await nextCommandEvent(p);
      assert.ok(ev.kind === 'command-answered', `${who}-signed: ${ev.kind}`);
      assert.equal(ev.status, 'refused', `${who}-signed command refused`);
      assert.equal(ev.cid, open.cid);
      await p.send(ev.ack);
    }
    await until(async () => (await commandOf('c-forge', open.cid))?.refusedCount === 2, 'both refused acks at the backend');
    assert.equal((await commandOf('c-forge', open.cid))?.status, undefined, 'refused acks do not close the command');
    await p.send(await real.answer('done'));
    await until(async () => (await commandOf('c-forge', open.cid))?.status === 'done', 'the real ack closes it');
  });
});
