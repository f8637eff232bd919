/**
 * The gateway's data plane against a backend over real TLS (FakeTelemetryBackend until the
 * reference backend has the v2 routes): pubs committed to a real SQLite queue before they are
 * answered, uploaded in signed batches, kept through an outage and a restart, refused with busy
 * when the queue is full and taken again once it drained.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Agent } from 'undici';
import { BackendHttp, createBackendDispatcher } from '../../../daemon/backend-client/dispatcher.js';
import type { GatewaySessionV2 } from '../../../daemon/sessions/session.js';
import { DataPlane } from '../../../daemon/uplink/data-plane.js';
import { QUEUE_FILE } from '../../../daemon/uplink/queue.js';
import { systemClock, type TimerClock } from '../../../common/clock.js';
import { Ed25519Signer } from '../../../protocol/index.js';
import { FakeTelemetryBackend } from '../../../testkit/fake-telemetry-backend.js';

const GW = 'gw-dp';

/** Polls `cond` every 20 ms until it holds, or fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('daemon/uplink data plane (SQLite queue, uploader over TLS)', function () {
  this.timeout(60_000);
  let dir: string;
  let backend: FakeTelemetryBackend;
  let agent: Agent;
  let http: BackendHttp;
  const session = Ed25519Signer.generate(`session:${GW}`);
  const planes: DataPlane[] = [];
  /** Wall clock with a skew the test moves (busy's retry passes without waiting). */
  let skewMs = 0;
  const clock: TimerClock = { now: () => Date.now() + skewMs, setTimeout: systemClock.setTimeout, clearTimeout: systemClock.clearTimeout };

  function plane(stateDir: string, maxBytes = 64 * 1024 * 1024): DataPlane {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const p = new DataPlane({
      gw: GW,
      stateDir,
      http,
      session: { current: () => ({ signer: session, credential: new Uint8Array(1), notAfter: Math.floor(Date.now() / 1000) + 3600 }) },
      backendKeys: new Map(),
      breaker: { failureThreshold: 3, openMs: 200 },
      requestTimeoutMs: 2000,
      retryBaseMs: 20,
      retryMaxMs: 200,
      queue: { maxBytes, maxAgeSec: 604_800, busyRetrySec: 5 },
      commands: { waitSec: 1, maxPerDevice: 4, resendMs: 30_000 },
      publishLocal: false,
      clock,
    });
    p.start();
    planes.push(p);
    return p;
  }

  /** What a session hands the data plane: its device and sid. */
  const sessionOf = (dev: string): GatewaySessionV2 => ({ dev, sid: new Uint8Array(Buffer.from(`sid-${dev}`)) }) as unknown as GatewaySessionV2;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-uplink-'));
    backend = await FakeTelemetryBackend.create(GW);
    backend.trustSession(session);
    agent = createBackendDispatcher({ url: backend.url, ca: backend.pki.ca.certPem, connectTimeoutMs: 1000 });
    http = new BackendHttp({ url: backend.url, dispatcher: agent });
  });

  afterEach(async () => {
    skewMs = 0;
    await backend.start();
    await Promise.all(planes.splice(0).map((p) => p.stop()));
  });

  after(async () => {
    await agent?.close();
    await backend?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers a pub only after its commit, keeps it through a backend outage, and uploads every one exactly once', async () => {
    const p = plane(join(dir, 'outage'));
    const devs = ['d-0', 'd-1', 'd-2', 'd-3'];
    const before = backend.records.size;
    let seq = 0;
    const send = async (n: number): Promise<void> => {
      const answers = await Promise.all(
        Array.from({ length: n }, () => {
          const s = seq++;
          const dev = devs[s % devs.length] as string;
          return p.pub(sessionOf(dev), s, { topic: `t/${dev}`, body: new Uint8Array(Buffer.from(`m${s}`)) });
        }),
      );
      assert.ok(answers.every((a) => a.stored), 'every pub is stored');
    };
    await send(100);
    await until(() => backend.records.size - before === 100, 'first 100 at the backend');
    await backend.stop();
    await send(300);
    // The queue holds what the backend cannot take: every answered pub is on disk.
    assert.equal(p.stats().queue.records, 300);
    await until(() => p.stats().uploader.failures >= 2, 'the uploader sees the outage');
    await backend.start();
    await until(() => p.stats().queue.records === 0, 'queue drained after recovery');
    assert.equal(backend.records.size - before, 400, 'every stored pub reached the backend');
    for (let s = 0; s < 400; s++) assert.ok(backend.records.has(`${devs[s % 4]}|${Buffer.from(`sid-${devs[s % 4]}`).toString('base64url')}|${s}`), `seq ${s} at the backend`);
    assert.equal(p.stats().uploader.uploaded, 400);
  });

  it('keeps committed records across a restart and the queue file passes integrity_check', async () => {
    const stateDir = join(dir, 'restart');
    await backend.stop();
    const p = plane(stateDir);
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => p.pub(sessionOf('r-0'), i, { topic: 't/r', body: new Uint8Array([i]), mid: 1000 + i })));
    assert.ok(answers.every((a) => a.stored));
    await p.stop();
    planes.splice(planes.indexOf(p), 1);
    const db = new Database(join(stateDir, QUEUE_FILE), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      assert.equal((db.prepare('SELECT count(*) AS n FROM telemetry').get() as { n: number }).n, 50);
    } finally {
      db.close();
    }
    await backend.start();
    const again = plane(stateDir);
    await until(() => again.stats().queue.records === 0, 'queue drained after restart');
    const mine = [...backend.records.values()].filter((r) => r.dev === 'r-0');
    assert.deepEqual(mine.map((r) => r.mid).sort((a, b) => (a ?? 0) - (b ?? 0)), Array.from({ length: 50 }, (_, i) => 1000 + i));
  });

  it('answers busy with a retry when the queue is full, and takes pubs again once it drained and retry passed', async () => {
    await backend.stop();
    const p = plane(join(dir, 'full'), 65_536);
    const body = new Uint8Array(1000);
    const answers = [];
    for (let i = 0; i < 80; i++) answers.push(await p.pub(sessionOf('f-0'), i, { topic: 't/f', body }));
    const stored = answers.filter((a) => a.stored).length;
    const busy = answers.filter((a) => !a.stored);
    assert.ok(stored > 0 && stored < 80, `some stored (${stored}), then busy`);
    assert.ok(busy.every((a) => !a.stored && a.retry === 5), 'busy carries retry');
    assert.ok(answers.slice(stored).every((a) => !a.stored), 'once full, everything after is busy');
    assert.equal(p.stats().queue.busy, 80 - stored);
    await backend.start();
    await until(() => p.stats().queue.records === 0, 'drained');
    // Until retry has passed, still busy (protocol-v2: every pub … until retry has passed).
    assert.equal((await p.pub(sessionOf('f-0'), 100, { topic: 't/f', body })).stored, false);
    skewMs = 6000;
    assert.equal((await p.pub(sessionOf('f-0'), 101, { topic: 't/f', body })).stored, true);
    await until(() => p.stats().queue.records === 0, 'drained again');
    assert.equal([...backend.records.values()].filter((r) => r.dev === 'f-0').length, stored + 1, 'exactly what was stored reached the backend');
  });
});
