/**
 * The gateway's data plane against the reference backend over real TLS, with real v2 sessions:
 * the reference v2 peripheral on mqtt.js authenticates through aedes, the pipeline and the
 * backend client (the backend records its ok verdict, which it needs to believe the gateway's
 * telemetry), then its pubs are committed to a real SQLite queue before they are receipted,
 * uploaded in signed batches, kept through an outage and a restart, refused with busy when the
 * queue is full, and — for entries the backend does not believe (403 not-granted) — dropped,
 * counted, while the rest of the batch is stored.
 */
import { EventEmitter, once } from 'node:events';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { BackendHttp } from '../../../daemon/backend-client/dispatcher.js';
import type { GatewaySessionV2 } from '../../../daemon/sessions/session.js';
import { QUEUE_FILE } from '../../../daemon/uplink/queue.js';
import { systemClock, type TimerClock } from '../../../common/clock.js';
import type { Ed25519Signer } from '../../../protocol/index.js';
import type { MqttReferencePeripheralV2 } from '../../../peripherals/reference/mqtt-peripheral-v2.js';
import { startTestBackend, type TestBackend } from '../../../testkit/backend.js';
import { backendHttpFor, backendKeysOf, startBackendSide, type GatewayBackendSide } from '../../../testkit/gateway-backend.js';
import type { Harness } from '../transports/mqtt/harness.js';
import { connectV2Peripheral, liveSessionIn, startUplinkGateway, until, type UplinkGateway as Gateway } from './fixture.js';


const GW = 'gw-dp';
const DEVS = ['d-0', 'd-1', 'd-2', 'd-3', 'q-0', 'q-1', 'q-2', 'q-3', 'r-0', 'f-0', 'n-0'];

describe('daemon/uplink data plane (reference backend over TLS, v2 sessions over MQTT, SQLite queue)', function () {
  this.timeout(120_000);
  let dir: string;
  let tb: TestBackend;
  let http: BackendHttp;
  let closeAgent: () => Promise<void>;
  let side: GatewayBackendSide;
  const devices = new Map<string, Ed25519Signer>();
  const gateways: Gateway[] = [];
  const peripherals: MqttReferencePeripheralV2[] = [];
  /** Wall clock with a skew the test moves (busy's retry passes without waiting). */
  let skewMs = 0;
  const clock: TimerClock = { now: () => Date.now() + skewMs, setTimeout: systemClock.setTimeout, clearTimeout: systemClock.clearTimeout };
  const backendKeys = (): Map<string, Uint8Array> => backendKeysOf(tb);

  /** The data plane on `stateDir`, with (by default) the MQTT transport in front of it. */
  async function gateway(stateDir: string, o: { maxBytes?: number; transport?: boolean } = {}): Promise<Gateway> {
    const g = await startUplinkGateway({ gw: GW, stateDir, http, side, backendKeys: backendKeys(), clock, requestTimeoutMs: 2000, ...o });
    gateways.push(g);
    return g;
  }

  /** An authenticated reference v2 peripheral for `dev` at `g`. */
  function peripheral(g: Gateway, dev: string): Promise<MqttReferencePeripheralV2> {
    return connectV2Peripheral(peripherals, (g.h as Harness).url, dev, devices.get(dev) as Ed25519Signer, backendKeys());
  }

  /** Sends `n` pubs and waits for the receipts settling them; returns the settled seqs. */
  async function pubAll(p: MqttReferencePeripheralV2, dev: string, n: number, body = (i: number): Uint8Array => new TextEncoder().encode(`m${i}`)): Promise<number[]> {
    for (let i = 0; i < n; i++) await p.pub(`devices/${dev}/t`, body(i));
    const settled: number[] = [];
    while (settled.length < n) {
      const r = await p.nextReceipt();
      assert.deepEqual(r.denied, [], 'nothing denied');
      assert.deepEqual(r.resend, [], 'nothing busy or lost');
      settled.push(...r.settled);
    }
    return settled.sort((a, b) => a - b);
  }

  /** What the backend stored for `dev`, as `seq`s. */
  async function storedSeqs(dev: string): Promise<number[]> {
    return (await tb.backend.store.telemetryLast(100_000, dev)).map((r) => r.seq).sort((a, b) => a - b);
  }

  const liveSession = (g: Gateway, dev: string): Promise<GatewaySessionV2> => liveSessionIn(g.tables, dev);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-uplink-'));
    tb = await startTestBackend();
    const gwKey = await tb.addGateway(GW);
    for (const dev of DEVS) devices.set(dev, await tb.addDevice(dev, { gateways: [GW] }));
    ({ http, close: closeAgent } = backendHttpFor(tb, 1000));
    side = await startBackendSide({ gw: GW, http, tpmSigner: gwKey.tpm, backendKeys: backendKeys(), stateDir: join(dir, 'session') });
  });

  afterEach(async () => {
    skewMs = 0;
    await Promise.all(peripherals.splice(0).map((p) => p.close()));
    for (const g of gateways.splice(0)) await g.stop();
    await tb.start();
  });

  after(async () => {
    await side?.stop();
    await closeAgent?.();
    await tb?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('receipts a pub only after its commit, keeps it through a backend outage, and the backend stores every one exactly once', async () => {
    const g = await gateway(join(dir, 'outage'));
    const devs = ['d-0', 'd-1', 'd-2', 'd-3'];
    const ps = await Promise.all(devs.map((d) => peripheral(g, d)));
    const first = await Promise.all(ps.map((p, i) => pubAll(p, devs[i] as string, 25)));
    await until(() => g.plane.stats().queue.records === 0 && g.plane.stats().uploader.uploaded === 100, 'first 100 uploaded');
    for (const [i, d] of devs.entries()) assert.deepEqual(await storedSeqs(d), first[i], `${d}: the first 25 at the backend`);
    await tb.stop();
    const second = await Promise.all(ps.map((p, i) => pubAll(p, devs[i] as string, 75)));
    // The queue holds what the backend cannot take: every receipted pub is on disk.
    assert.equal(g.plane.stats().queue.records, 300);
    await until(() => g.plane.stats().uploader.failures >= 2, 'the uploader sees the outage');
    await tb.start();
    await until(() => g.plane.stats().queue.records === 0, 'queue drained after recovery');
    for (const [i, d] of devs.entries()) {
      const want = [...(first[i] as number[]), ...(second[i] as number[])].sort((a, b) => a - b);
      assert.equal(want.length, 100);
      assert.deepEqual(await storedSeqs(d), want, `${d}: every receipted pub stored once`);
    }
    assert.equal(g.plane.stats().uploader.uploaded, 400);
    assert.equal(g.plane.stats().uploader.refused, 0);
  });

  it('drains a backlog of full batches with several uploads in flight at once, each record stored once', async () => {
    const g = await gateway(join(dir, 'pipeline'));
    const devs = ['q-0', 'q-1', 'q-2', 'q-3'];
    const ps = await Promise.all(devs.map((d) => peripheral(g, d)));
    await tb.stop();
    const sent = await Promise.all(ps.map((p, i) => pubAll(p, devs[i] as string, 200)));
    assert.equal(g.plane.stats().queue.records, 800);
    await tb.start();
    // Hold each upload at the store until a second one is there too (or 1 s passed: less than the upload timeout, so a retry cannot be the company): one upload
    // at a time never has company, several in flight do.
    const store = tb.backend.store;
    const original = store.storeTelemetry.bind(store);
    let pending = 0;
    let most = 0;
    const company = new EventEmitter();
    store.storeTelemetry = async (gw, records) => {
      pending += 1;
      most = Math.max(most, pending);
      company.emit('arrived');
      if (pending < 2) await Promise.race([once(company, 'arrived'), new Promise((r) => setTimeout(r, 1000).unref())]);
      pending -= 1;
      return original(gw, records);
    };
    await until(() => g.plane.stats().queue.records === 0, 'the backlog drained');
    assert.ok(most >= 2, `uploads in flight at once: at most ${most}`);
    for (const [i, d] of devs.entries()) assert.deepEqual(await storedSeqs(d), [...(sent[i] as number[])].sort((a, b) => a - b), `${d}: every receipted pub stored once`);
  });

  it('keeps committed records across a gateway restart, the queue file passes integrity_check, and they reach the backend after it', async () => {
    const stateDir = join(dir, 'restart');
    const g = await gateway(stateDir);
    const p = await peripheral(g, 'r-0');
    await tb.stop();
    const seqs = await pubAll(p, 'r-0', 50);
    await g.stop();
    const db = new Database(join(stateDir, QUEUE_FILE), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      assert.equal((db.prepare('SELECT count(*) AS n FROM telemetry').get() as { n: number }).n, 50);
    } finally {
      db.close();
    }
    await tb.start();
    const again = await gateway(stateDir, { transport: false });
    await until(() => again.plane.stats().queue.records === 0, 'queue drained after restart');
    assert.deepEqual(await storedSeqs('r-0'), seqs);
  });

  it('answers busy with a retry when the queue is full, and takes pubs again once it drained and retry passed', async () => {
    const g = await gateway(join(dir, 'full'), { maxBytes: 65_536 });
    await peripheral(g, 'f-0');
    const s = await liveSession(g, 'f-0');
    await tb.stop();
    const body = new Uint8Array(1000);
    const answers = [];
    for (let i = 0; i < 80; i++) answers.push(await g.plane.pub(s, i, { topic: 'devices/f-0/t', body }));
    const stored = answers.filter((a) => a.stored).length;
    const busy = answers.filter((a) => !a.stored);
    assert.ok(stored > 0 && stored < 80, `some stored (${stored}), then busy`);
    assert.ok(busy.every((a) => !a.stored && a.retry === 5), 'busy carries retry');
    assert.ok(answers.slice(stored).every((a) => !a.stored), 'once full, everything after is busy');
    assert.equal(g.plane.stats().queue.busy, 80 - stored);
    await tb.start();
    await until(() => g.plane.stats().queue.records === 0, 'drained');
    // Until retry has passed, still busy (protocol-v2: every pub … until retry has passed).
    assert.equal((await g.plane.pub(s, 100, { topic: 'devices/f-0/t', body })).stored, false);
    skewMs = 6000;
    assert.equal((await g.plane.pub(s, 101, { topic: 'devices/f-0/t', body })).stored, true);
    await until(() => g.plane.stats().queue.records === 0, 'drained again');
    assert.deepEqual(await storedSeqs('f-0'), [...Array.from({ length: stored }, (_, i) => i), 101], 'exactly what was stored reached the backend');
  });

  it('drops the records the backend refuses (403 not-granted names them), counts them, and stores the rest of the batch', async () => {
    const g = await gateway(join(dir, 'refused'));
    await peripheral(g, 'n-0');
    const s = await liveSession(g, 'n-0');
    await tb.stop();
    const body = new Uint8Array([1, 2, 3]);
    for (let i = 0; i < 10; i++) assert.ok((await g.plane.pub(s, i, { topic: 'devices/n-0/t', body })).stored);
    // A device never verified here, and a topic outside n-0's policy, in the middle of the batch.
    const now = clock.now();
    assert.ok((await g.plane.queue.offerPub({ dev: 'stranger', sid: new Uint8Array(8), seq: 0, topic: 'devices/stranger/t', body, receivedAt: now })).stored);
    assert.ok((await g.plane.queue.offerPub({ dev: 'n-0', sid: s.sid, seq: 50, topic: 'elsewhere/t', body, receivedAt: now })).stored);
    for (let i = 10; i < 20; i++) assert.ok((await g.plane.pub(s, i, { topic: 'devices/n-0/t', body })).stored);
    const requestsBefore = g.plane.stats().uploader.requests;
    await tb.start();
    await until(() => g.plane.stats().queue.records === 0, 'drained');
    const st = g.plane.stats().uploader;
    assert.equal(st.refused, 2, 'the two refused records counted');
    assert.equal(st.uploaded, 20);
    // The refusal names the records: one refused request and one resend, not one request per record.
    assert.ok(st.requests - requestsBefore <= 4, `${st.requests - requestsBefore} requests after the outage`);
    assert.deepEqual(await storedSeqs('n-0'), Array.from({ length: 20 }, (_, i) => i), 'the rest stored, the refused topic not');
    assert.deepEqual(await storedSeqs('stranger'), []);
  });
});
