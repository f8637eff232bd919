/**
 * The measured scenarios, each over `runs` repetitions: closed-loop sustained auths/s, open-loop
 * latency at fixed offered loads, the echo ceiling, the naive TPM-per-hello baseline (modelled
 * TPM latency), reconnect storms and memory with many authenticated connections.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { BackendClient } from '../daemon/backend-client/client.js';
import { BackendHttp, createBackendDispatcher } from '../daemon/backend-client/dispatcher.js';
import { SessionManager } from '../daemon/backend-client/session.js';
import { Ed25519Signer, randomNonce, signHello } from '../protocol/index.js';
import { DEFAULT_KEY_HANDLE, TpmKeyStore } from '../tpm/tpm-key-store.js';
import { BenchEnv, Daemon, GW, Generator, type BenchDevice } from './harness.js';
import type { GenReport } from './load-generator.js';
import { percentile, round, spread, type Spread } from './stats.js';
import { BACKEND_CLIENT_DEFAULTS } from '../testkit/component-defaults.js';

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5) are utime and stime; after the comm field they are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface PhaseLoad {
  /** os.loadavg() 1-minute figure when the phase started and ended. */
  loadStart: number;
  loadEnd: number;
  /** CPU used during the phase as a fraction of one core. */
  daemonCpu: number;
  generatorCpu: number;
  /** This process: the reference backend (and the harness, which idles). */
  backendCpu: number;
}

export interface ThroughputResult {
  authsPerSec: Spread;
  p50: Spread;
  p99: Spread;
  failures: Record<string, number>;
  load: PhaseLoad;
}

export interface OpenLoopPoint {
  rate: number;
  achieved: Spread;
  p50: Spread;
  p95: Spread;
  p99: Spread;
  backlogged: number;
  failures: Record<string, number>;
  load: PhaseLoad;
}

function merge(reports: GenReport[]): { ok: number; latencies: number[]; failures: Record<string, number>; cpuMs: number; backlogged: number } {
  const failures: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
  return {
    ok: reports.reduce((a, r) => a + r.ok, 0),
    latencies: reports.flatMap((r) => r.latencies),
    failures,
    cpuMs: reports.reduce((a, r) => a + r.cpuMs, 0),
    backlogged: reports.reduce((a, r) => a + (r.backlogged ?? 0), 0),
  };
}

function addFailures(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Measures a phase's CPU use and load around `body`. */
async function measured<T>(daemon: Daemon | undefined, body: () => Promise<{ value: T; generatorCpuMs: number }>): Promise<{ value: T; load: PhaseLoad }> {
  const loadStart = loadavg()[0] ?? 0;
  const d0 = daemon !== undefined ? cpuSecondsOf(daemon.pid) : 0;
  const b0 = process.cpuUsage();
  const t0 = performance.now();
  const { value, generatorCpuMs } = await body();
  const wall = (performance.now() - t0) / 1000;
  const b = process.cpuUsage(b0);
  return {
    value,
    load: {
      loadStart: round(loadStart, 2),
      loadEnd: round(loadavg()[0] ?? 0, 2),
      daemonCpu: round(daemon !== undefined ? (cpuSecondsOf(daemon.pid) - d0) / wall : 0, 2),
      generatorCpu: round(generatorCpuMs / 1000 / wall, 2),
      backendCpu: round((b.user + b.system) / 1e6 / wall, 2),
    },
  };
}

/** Give each generator its slice of devices, connect them to `port`; they speak protocol `version` (default 1) in later ops. */
export async function connectPools(gens: Generator[], env: BenchEnv, devices: BenchDevice[], port: number, version: 1 | 2 = 1): Promise<number> {
  const per = Math.ceil(devices.length / gens.length);
  const reports = await Promise.all(
    gens.map(async (g, i) => {
      await g.run({ op: 'setup', backendKid: env.backend.kid, backendPk: Buffer.from(env.backend.publicKeyRaw).toString('base64url'), devices: devices.slice(i * per, (i + 1) * per), version });
      return g.run({ op: 'connect', host: '127.0.0.1', port, parallel: 64 });
    }),
  );
  const m = merge(reports);
  if (Object.keys(m.failures).length > 0) throw new Error(`connect failures: ${JSON.stringify(m.failures)}`);
  return m.ok;
}

export async function closePools(gens: Generator[]): Promise<void> {
  await Promise.all(gens.map((g) => g.run({ op: 'close' })));
}

/** Closed loop over the connected pools: `runs` runs of `durationMs` after one warm-up run. */
export async function closedLoop(gens: Generator[], daemon: Daemon, o: { runs: number; durationMs: number; op?: 'closed' | 'echo' }): Promise<ThroughputResult> {
  const op = o.op ?? 'closed';
  await Promise.all(gens.map((g) => g.run({ op, durationMs: Math.min(2000, o.durationMs) })));
  const rates: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  const failures: Record<string, number> = {};
  const { load } = await measured(daemon, async () => {
    let cpu = 0;
    for (let r = 0; r < o.runs; r += 1) {
      const t0 = performance.now();
      const m = merge(await Promise.all(gens.map((g) => g.run({ op, durationMs: o.durationMs }))));
      const wall = performance.now() - t0;
      rates.push((m.ok * 1000) / wall);
      p50.push(percentile(m.latencies, 0.5));
      p99.push(percentile(m.latencies, 0.99));
      addFailures(failures, m.failures);
      cpu += m.cpuMs;
    }
    return { value: undefined, generatorCpuMs: cpu };
  });
  return { authsPerSec: spread(rates), p50: spread(p50), p99: spread(p99), failures, load };
}

/** Open loop at each offered rate (split evenly over the generators). */
export async function openLoop(gens: Generator[], daemon: Daemon, o: { runs: number; durationMs: number; rates: number[] }): Promise<OpenLoopPoint[]> {
  const out: OpenLoopPoint[] = [];
  for (const rate of o.rates) {
    const achieved: number[] = [];
    const p50: number[] = [];
    const p95: number[] = [];
    const p99: number[] = [];
    const failures: Record<string, number> = {};
    let backlogged = 0;
    const { load } = await measured(daemon, async () => {
      let cpu = 0;
      for (let r = 0; r < o.runs; r += 1) {
        const t0 = performance.now();
        const m = merge(await Promise.all(gens.map((g) => g.run({ op: 'open', rate: rate / gens.length, durationMs: o.durationMs }))));
        achieved.push((m.ok * 1000) / (performance.now() - t0));
        p50.push(percentile(m.latencies, 0.5));
        p95.push(percentile(m.latencies, 0.95));
        p99.push(percentile(m.latencies, 0.99));
        addFailures(failures, m.failures);
        backlogged += m.backlogged;
        cpu += m.cpuMs;
      }
      return { value: undefined, generatorCpuMs: cpu };
    });
    out.push({ rate, achieved: spread(achieved), p50: spread(p50), p95: spread(p95), p99: spread(p99), backlogged, failures, load });
  }
  return out;
}

export interface StormResult {
  peripherals: number;
  /** Seconds from the common start until the last welcome, per run. */
  allWelcomedSec: Spread;
  welcomed: number[];
  failures: Record<string, number>;
  retries: number;
  /** Why attempts were retried, over all runs. */
  retried: Record<string, number>;
  peakRssMb: Spread;
  /** TPM signatures the daemon made during the storm run (after its start). */
  tpmSignaturesDuringStorm: number[];
  /** Including the one at start that authorised the session key. */
  tpmSignaturesTotal: number[];
  load: PhaseLoad[];
}

/** One storm: everyone connects and authenticates at the same instant. Connections stay open. */
export async function storm(
  gens: Generator[],
  env: BenchEnv,
  daemon: Daemon,
  devices: BenchDevice[],
  retry: boolean,
): Promise<{ report: ReturnType<typeof merge>; lastDoneAt: number; startAt: number; retries: number; retried: Record<string, number> }> {
  const per = Math.ceil(devices.length / gens.length);
  await Promise.all(
    gens.map((g, i) => g.run({ op: 'setup', backendKid: env.backend.kid, backendPk: Buffer.from(env.backend.publicKeyRaw).toString('base64url'), devices: devices.slice(i * per, (i + 1) * per) })),
  );
  const startAt = Date.now() + 300;
  const reports = await Promise.all(gens.map((g) => g.run({ op: 'storm', host: '127.0.0.1', port: daemon.port, startAt, stepTimeoutMs: 60_000, retry }, 300_000)));
  const retried: Record<string, number> = {};
  for (const r of reports) addFailures(retried, r.retried ?? {});
  return { report: merge(reports), lastDoneAt: Math.max(...reports.map((r) => r.lastDoneAt ?? 0)), startAt, retries: reports.reduce((a, r) => a + (r.retries ?? 0), 0), retried };
}

export async function stormRuns(gens: Generator[], env: BenchEnv, o: { runs: number; size: number; startDaemon: (name: string) => Promise<Daemon> }): Promise<StormResult> {
  const secs: number[] = [];
  const peaks: number[] = [];
  const welcomed: number[] = [];
  const during: number[] = [];
  const total: number[] = [];
  const failures: Record<string, number> = {};
  const loads: PhaseLoad[] = [];
  let retries = 0;
  const retried: Record<string, number> = {};
  for (let r = 0; r < o.runs; r += 1) {
    const daemon = await o.startDaemon(`storm-${r}`);
    try {
      const before = await daemon.stats();
      const { value, load } = await measured(daemon, async () => {
        // Peripherals behave as deployed ones do: a failed connect is retried a second later, a
        // reject after its `retry`. Retries are counted; a failure is a peripheral never welcomed.
        const s = await storm(gens, env, daemon, env.devices.slice(0, o.size), true);
        return { value: s, generatorCpuMs: s.report.cpuMs };
      });
      loads.push(load);
      const after = await daemon.stats();
      secs.push((value.lastDoneAt - value.startAt) / 1000);
      welcomed.push(value.report.ok);
      addFailures(failures, value.report.failures);
      retries += value.retries;
      addFailures(retried, value.retried);
      peaks.push(daemon.memory().peakMb);
      during.push(after.tpmSignatures - before.tpmSignatures);
      total.push(after.tpmSignatures);
      await closePools(gens);
    } finally {
      await daemon.stop();
    }
  }
  return { peripherals: o.size, allWelcomedSec: spread(secs), welcomed, failures, retries, retried, peakRssMb: spread(peaks), tpmSignaturesDuringStorm: during, tpmSignaturesTotal: total, load: loads };
}

export interface NaiveResult {
  modelledTpmMs: number;
  hellosPerSec: Spread;
  p50: Spread;
  backendRequestsPerHello: number;
}

/**
 * The naive design, for comparison: every hello costs one backend request and one TPM
 * signature. The TPM's latency is MODELLED (a serial 69 ms wait per signature: the published
 * ECDSA P-256 figure of an Infineon SLB9670 on a Raspberry Pi); the backend request is real
 * (the reference backend over HTTPS, batch size 1, signed with a session key it accepts).
 */
export async function naive(env: BenchEnv, o: { runs: number; durationMs: number; concurrency: number; tpmMs: number }): Promise<NaiveResult> {
  const dir = join(env.dir, 'state-naive');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ks = new TpmKeyStore({ tcti: env.tcti, stateDir: join(env.dir, 'tpm-state'), handle: DEFAULT_KEY_HANDLE });
  await ks.open();
  const dispatcher = createBackendDispatcher({
    url: env.backend.url,
    ca: await readFile(env.ca.certPath, 'utf8'),
    connectTimeoutMs: 5000,
    headersTimeoutMs: 10_000,
    bodyTimeoutMs: 10_000,
    connections: 8,
  });
  const http = new BackendHttp({ url: env.backend.url, dispatcher });
  const backendKeys = new Map([[env.backend.kid, env.backend.publicKeyRaw]]);
  const session = new SessionManager({ gw: GW, http, tpmSigner: ks.signer(`tpm:${GW}`), tpmPublicKeySpki: ks.publicKeySpkiDer(), backendKeys, stateDir: dir });
  const client = new BackendClient({ gw: GW, http, session, backendKeys, stateDir: dir, ...BACKEND_CLIENT_DEFAULTS, maxBatch: 1, maxWaitMs: 0, maxInFlight: 8, revocationPollMs: 0 });
  try {
    if (!(await session.start())) throw new Error('naive baseline: no session');
    await client.start();
    const signers = env.devices.slice(0, o.concurrency).map((d) => Ed25519Signer.fromSeed(new Uint8Array(Buffer.from(d.seed, 'base64')), d.dev));
    // One serial device: each modelled signature starts when the previous one ends.
    let tpmFree = Promise.resolve();
    const tpmSign = (): Promise<void> => {
      const mine = tpmFree.then(() => new Promise<void>((r) => setTimeout(r, o.tpmMs)));
      tpmFree = mine;
      return mine;
    };
    const rates: number[] = [];
    const p50s: number[] = [];
    let seq = 0;
    for (let r = 0; r < o.runs; r += 1) {
      const lat: number[] = [];
      const end = performance.now() + o.durationMs;
      const t0 = performance.now();
      let failed = false;
      // The first refusal stops every worker before the client is stopped (none writes into a state dir being removed).
      await Promise.allSettled(
        signers.map(async (signer) => {
          while (performance.now() < end && !failed) {
            const s = performance.now();
            const hello = await signHello({ type: 'hello', version: 1, dev: signer.kid, pn: randomNonce(), gn: randomNonce() }, signer);
            await tpmSign();
            const v = await client.verify({ id: `n${++seq}`, transport: 'mqtt', dev: signer.kid, hello });
            if (!v.ok) {
              failed = true;
              throw new Error(`naive baseline: hello refused (${v.reason})`);
            }
            lat.push(performance.now() - s);
          }
        }),
      ).then((all) => {
        const bad = all.find((x): x is PromiseRejectedResult => x.status === 'rejected');
        if (bad !== undefined) throw bad.reason;
      });
      rates.push((lat.length * 1000) / (performance.now() - t0));
      p50s.push(percentile(lat, 0.5));
    }
    const st = client.stats();
    return { modelledTpmMs: o.tpmMs, hellosPerSec: spread(rates), p50: spread(p50s), backendRequestsPerHello: round(st.batches / Math.max(1, st.hellos), 2) };
  } finally {
    await client.stop();
    session.stop();
    await dispatcher.close();
    await ks.close();
  }
}
