/**
 * Faults of the backend past one machine (docs/backend.md "Deployment"): two `gatehouse-backend
 * serve` replicas (child processes, real HTTPS under the CA the gateway pins) on one PostgreSQL
 * (Debian's server, testkit/postgres.ts), behind one address (a TCP round-robin balancer,
 * testkit/tcp-round-robin.ts). The daemon (`gatehouse run` as a child process, its key on
 * swtpm) knows only the balancer's address; what it saw is read from its `/metrics`. During a
 * storm of v1 peripherals, each a raw MQTT connection, and a telemetry stream of v2 peripherals:
 *
 * - one replica is killed with SIGKILL: every peripheral is welcomed (after retries) and every
 *   receipted frame is stored exactly once;
 * - PostgreSQL is stopped (fast shutdown) and started again on its data directory and port:
 *   while it is down the gateway gets only retryable answers (503 store-unavailable), after it
 *   everything succeeds, and nothing is lost or duplicated.
 *
 * The storm size is GATEHOUSE_FAULT_STORM (default 2000).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { MemoryCommandStore } from '../../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2 } from '../../peripherals/reference/session-v2.js';
import { ReplicaSet } from '../../testkit/backend-replicas.js';
import { FaultEnv, GW, exited, pool, startDaemon, type Device, type FaultPeripheral, type Outcome } from '../../testkit/faults.js';
import { TestPostgres } from '../../testkit/postgres.js';
import { parseSamples, sumOf, type Sample } from '../../testkit/prometheus-text.js';
import { unixRequest } from '../../testkit/unix-http.js';

const STORM = Number(process.env.GATEHOUSE_FAULT_STORM ?? 2000);
/** v2 peripherals streaming telemetry through the storm. */
const STREAMERS = 16;
/** Pubs a streamer sends before it waits for their receipts. */
const BATCH = 8;
/**
 * Pause between a streamer's batches: the stream is steady load beside the storm (16 × 8 frames
 * about every 0.5 s, some 200 frames/s), not a flood that starves the storm of the two cores.
 */
const STREAM_PAUSE_MS = 500;
/** Welcomes after which the fault is injected. */
const FAULT_AFTER = Math.floor(STORM / 4);
/** Rejects a peripheral may be answered `retry` to before the test gives up on it. */
const MAX_ATTEMPTS = 60;
/** What a gateway answers while the backend cannot decide: the peripheral retries. */
const RETRYABLE = new Set(['backend-unavailable', 'busy']);
/** Backend error kinds that are retryable (5xx, no connection, no answer in time, the breaker). */
const RETRYABLE_KINDS = new Set(['server', 'connect', 'network', 'timeout', 'circuit-open']);

interface Rig {
  set: ReplicaSet;
  daemon: ChildProcess;
  /** Its MQTT port. */
  port: number;
  /** Its status socket. */
  socket: string;
}

interface StormResult {
  final: Outcome[];
  /** Exchanges answered with a retryable reject (and retried). */
  retried: number;
  /** Exchanges cut short (no answer, connection lost) and retried on a new connection. */
  cut: number;
  /** Why exchanges were cut, with counts. */
  cutWhy: Map<string, number>;
}

interface Stream {
  /** Ends the stream; resolves once every streamer has settled its last batch. */
  stop(): Promise<void>;
  /** Receipted seqs per device, and each device's session id. */
  receipted: Map<string, { sid: Uint8Array; seqs: Set<number> }>;
  total(): number;
}

/** A scrape of the daemon's `/metrics`. */
async function metrics(r: Rig): Promise<Sample[]> {
  const res = await unixRequest(r.socket, '/metrics', { timeoutMs: 10_000 });
  assert.equal(res.status, 200, res.body);
  return parseSamples(res.body);
}

/** `label=value…` → count of the samples of `name` that are above 0. */
function byLabels(samples: readonly Sample[], name: string, keys: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const x of samples) if (x.name === name && x.value > 0) out.set(keys.map((k) => x.labels[k] ?? '').join('/'), x.value);
  return out;
}

describe('faults: backend replicas on PostgreSQL during a storm', function () {
  this.timeout(240_000);
  let pgs: TestPostgres;
  let env: FaultEnv;
  let rigs = 0;
  let stormDevices: Device[];
  let streamDevices: Device[];
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    pgs = await TestPostgres.start();
    env = await FaultEnv.create({ devices: STORM + STREAMERS });
    stormDevices = env.devices.slice(0, STORM);
    streamDevices = env.devices.slice(STORM);
  });

  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  });

  after(async () => {
    await env?.dispose();
    await pgs?.stop();
  });

  /** A fresh database with the replicas and balancer on it, the gateway pointed at the balancer. */
  async function rig(): Promise<Rig> {
    const name = `rig${++rigs}`;
    const set = await ReplicaSet.start({ pg: pgs, dir: join(env.dir, name), server: env.serverCert });
    closers.push(() => set.close());
    await set.store.addGateway({ id: GW, tpmPublicKeyPem: env.tpmPem });
    await set.store.addDevices(env.devices.map((d) => ({ id: d.dev, publicKey: d.signer.publicKeyRaw, gateways: [GW] })));
    const config = await env.config(
      await env.stateDir(name),
      {
        backend: { queueLimit: 100_000, circuit: { failureThreshold: 3, openMs: 500 }, connectTimeoutMs: 1000, requestTimeoutMs: 5000 },
        log: { level: 'info', format: 'json' },
      },
      set,
    );
    const configFile = join(env.dir, `${name}.yaml`);
    await writeFile(configFile, stringify(config), { mode: 0o600 });
    const { child, port } = await startDaemon(configFile);
    closers.push(async () => {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited(child);
      clearTimeout(timer);
    });
    return { set, daemon: child, port, socket: config.status.socketPath };
  }

  /** v2 peripherals, established now, then publishing batches until stopped. */
  async function stream(r: Rig): Promise<Stream> {
    const backendKeys = new Map([[r.set.kid, r.set.publicKeyRaw]]);
    const receipted = new Map<string, { sid: Uint8Array; seqs: Set<number> }>();
    const streamers = await Promise.all(
      streamDevices.map(async (d) => {
        const peripheral = new ReferencePeripheralV2({ dev: d.dev, signer: d.signer, devicePublicKey: d.signer.publicKeyRaw, backendKeys, commandStore: new MemoryCommandStore() });
        const p = new MqttReferencePeripheralV2({ url: `mqtt://127.0.0.1:${r.port}`, peripheral, timeoutMs: 20_000 });
        closers.push(() => p.close());
        await p.connect();
        const a = await p.authenticate();
        assert.equal(a.kind, 'established', `${d.dev}: ${a.kind}`);
        if (a.kind === 'established') receipted.set(d.dev, { sid: a.session.sid, seqs: new Set() });
        return p;
      }),
    );
    let stopping = false;
    let total = 0;
    const running = Promise.all(
      streamers.map(async (p) => {
        const mine = receipted.get(p.dev)?.seqs as Set<number>;
        for (let b = 0; !stopping; b++) {
          for (let i = 0; i < BATCH; i++) await p.pub(`devices/${p.dev}/t`, new TextEncoder().encode(`b${b}-${i}`));
          for (let settled = 0; settled < BATCH; ) {
            const rc = await p.nextReceipt();
            settled += rc.settled.length + rc.denied.length + rc.resend.length;
            for (const seq of rc.settled) mine.add(seq);
            total += rc.settled.length;
          }
          await new Promise((res) => setTimeout(res, STREAM_PAUSE_MS));
        }
      }),
    );
    return {
      receipted,
      total: () => total,
      stop: async () => {
        stopping = true;
        await running;
      },
    };
  }

  /**
   * Every storm peripheral connects and authenticates at once; a retryable reject is retried
   * after its `retry` (scaled down for the test), a cut exchange on a new connection. `onWelcome`
   * sees the running count of welcomes, `onReject` each retryable reject's reason.
   */
  async function storm(r: Rig, onWelcome: (n: number) => void, onReject: (reason: string) => void = () => undefined): Promise<StormResult> {
    let welcomed = 0;
    let retried = 0;
    let cut = 0;
    const cutWhy = new Map<string, number>();
    const peripherals = stormDevices.map((d) => env.peripheral(d, r.set));
    closers.push(async () => peripherals.forEach((p) => p.close()));
    const final = await pool(peripherals, peripherals.length, async (p: FaultPeripheral): Promise<Outcome> => {
      let last: Outcome = { kind: 'no-answer', why: 'never tried' };
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        try {
          await p.connect(r.port);
          last = await p.authenticate(20_000);
        } catch (err) {
          last = { kind: 'no-answer', why: (err as Error).message };
        }
        if (last.kind === 'welcome') {
          p.close();
          onWelcome(++welcomed);
          return last;
        }
        if (last.kind === 'reject' && RETRYABLE.has(last.reason) && last.retry > 0) {
          retried += 1;
          onReject(last.reason);
          p.close();
          // The reject's `retry` is the wait; a quarter of at most a second here.
          await new Promise((res) => setTimeout(res, Math.min(last.kind === 'reject' ? last.retry : 1, 1) * 250));
          continue;
        }
        if (last.kind === 'no-answer') {
          cut += 1;
          cutWhy.set(last.why, (cutWhy.get(last.why) ?? 0) + 1);
          p.close();
          continue;
        }
        return last;
      }
      return last;
    });
    return { final, retried, cut, cutWhy };
  }

  /** Rows of the shared store per (dev, sid, seq), and whether each receipted frame is there exactly once. */
  async function storedOnce(r: Rig, s: Stream): Promise<{ missing: number; duplicated: number; rows: number }> {
    const c = new pg.Client({ connectionString: r.set.storeUrl, connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      const rows = (await c.query<{ device_id: string; sid: Buffer; seq: string; n: string }>('SELECT device_id, sid, seq, count(*) AS n FROM telemetry GROUP BY device_id, sid, seq')).rows;
      const have = new Map(rows.map((x) => [`${x.device_id}/${x.sid.toString('hex')}/${x.seq}`, Number(x.n)]));
      let missing = 0;
      for (const [dev, { sid, seqs }] of s.receipted) for (const seq of seqs) if (!have.has(`${dev}/${Buffer.from(sid).toString('hex')}/${seq}`)) missing += 1;
      return { missing, duplicated: rows.filter((x) => Number(x.n) > 1).length, rows: rows.length };
    } finally {
      await c.end();
    }
  }

  /** Waits (bounded) until the gateway's queue drained and every receipted frame is in PostgreSQL. */
  async function drained(r: Rig, s: Stream): Promise<{ rows: number; duplicated: number }> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const queued = sumOf(await metrics(r), 'gatehouse_uplink_queue', { what: 'records' });
      const got = await storedOnce(r, s);
      if (queued === 0 && got.missing === 0) return got;
      if (Date.now() > deadline) throw new Error(`after 90 s: ${queued} records still queued, ${got.missing} receipted frames not stored`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  /** The common verdict: all welcomed, only retryable rejects, every receipted frame stored once. */
  async function assertOutcome(r: Rig, s: Stream, result: StormResult): Promise<{ rows: number; duplicates: number; errors: Map<string, number> }> {
    assert.deepEqual(result.final.filter((o) => o.kind !== 'welcome'), [], 'every storm peripheral is welcomed');
    assert.ok(s.total() > 0, 'frames were receipted during the storm');
    const stored = await drained(r, s);
    assert.equal(stored.duplicated, 0, 'no frame stored twice');
    const m = await metrics(r);
    const rejects = byLabels(m, 'gatehouse_decisions_total', ['outcome', 'reason']);
    assert.deepEqual([...rejects.keys()].filter((k) => k.startsWith('reject/') && !RETRYABLE.has(k.slice('reject/'.length))), [], 'every reject the daemon answered was retryable');
    assert.ok(sumOf(m, 'gatehouse_decisions_total', { outcome: 'welcome' }) >= STORM + STREAMERS, 'the daemon counted the welcomes');
    const errors = byLabels(m, 'gatehouse_backend_errors_total', ['call', 'kind']);
    assert.deepEqual([...errors.keys()].filter((k) => !RETRYABLE_KINDS.has(k.split('/')[1] ?? '')), [], 'the daemon saw only retryable backend failures');
    assert.equal(sumOf(m, 'gatehouse_uplink_records_total', { outcome: 'refused' }), 0, 'no record refused for good');
    for (const i of [0, 1]) if (r.set.running(i)) assert.equal(await r.set.logCount(i, 'request failed'), 0, `replica ${i} answered no 500`);
    return { rows: stored.rows, duplicates: sumOf(m, 'gatehouse_uplink_records_total', { outcome: 'duplicate' }), errors };
  }

  it(`welcomes all ${STORM} peripherals and stores every receipted frame once when a replica is killed (-9) mid-storm`, async () => {
    const started = Date.now();
    const r = await rig();
    const s = await stream(r);
    let killed: Promise<void> | undefined;
    const result = await storm(r, (n) => {
      if (n !== FAULT_AFTER) return;
      killed = r.set.kill(1);
      // Awaited below; marked handled so a failure cannot surface as an unhandled rejection first.
      killed.catch(() => undefined);
    });
    assert.ok(killed !== undefined, 'the replica was killed mid-storm');
    await killed;
    assert.equal(r.set.running(1), false);
    await s.stop();
    const { rows, duplicates, errors } = await assertOutcome(r, s, result);
    assert.ok((r.set.lb.refused[1] ?? 0) > 0, 'the balancer skipped the dead replica');
    console.log(`      replica kill: ${STORM} welcomed, ${result.retried} retryable rejects, ${result.cut} cut exchanges ${JSON.stringify(Object.fromEntries(result.cutWhy))}; ${s.total()} frames receipted, ${rows} stored (${duplicates} resent records found stored already); backend errors ${JSON.stringify(Object.fromEntries(errors))}; balancer served ${r.set.lb.served.join('/')} refused ${r.set.lb.refused.join('/')}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  it(`answers retryably while PostgreSQL restarts mid-storm, then welcomes all ${STORM} and stores every receipted frame once`, async () => {
    const started = Date.now();
    const r = await rig();
    const s = await stream(r);
    let restarted: Promise<void> | undefined;
    let downFor = 0;
    let answeredUnavailable: (() => void) | undefined;
    const result = await storm(
      r,
      (n) => {
        if (n !== FAULT_AFTER) return;
        restarted = (async () => {
          const t0 = Date.now();
          // Down until a peripheral has been answered that the backend cannot decide now.
          const unavailable = new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('no backend-unavailable reject within 30 s of stopping PostgreSQL')), 30_000);
            answeredUnavailable = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          await pgs.stopServer();
          try {
            await unavailable;
          } finally {
            await pgs.startServer();
            downFor = Date.now() - t0;
          }
        })();
        // Awaited below; marked handled so a failure cannot surface as an unhandled rejection first.
        restarted.catch(() => undefined);
      },
      (reason) => {
        if (reason === 'backend-unavailable' && !pgs.running) answeredUnavailable?.();
      },
    );
    assert.ok(restarted !== undefined, 'PostgreSQL was restarted mid-storm');
    await restarted;
    await s.stop();
    const { rows, duplicates, errors } = await assertOutcome(r, s, result);
    const unavailable = (await r.set.logCount(0, 'store unavailable')) + (await r.set.logCount(1, 'store unavailable'));
    assert.ok(unavailable > 0, 'the replicas answered 503 store-unavailable while PostgreSQL was down');
    const server = [...errors].filter(([k]) => k.endsWith('/server')).reduce((a, [, n]) => a + n, 0);
    assert.ok(server > 0, 'the daemon counted the 503s');
    console.log(`      PostgreSQL restart: down ${downFor} ms; ${STORM} welcomed, ${result.retried} retryable rejects, ${result.cut} cut exchanges ${JSON.stringify(Object.fromEntries(result.cutWhy))}; ${unavailable} 503 store-unavailable answers; ${s.total()} frames receipted, ${rows} stored (${duplicates} resent records found stored already); backend errors ${JSON.stringify(Object.fromEntries(errors))}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
});
