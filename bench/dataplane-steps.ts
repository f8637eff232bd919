/**
 * The data-plane measurements (bench/phases/dataplane.ts puts them together): closed-loop
 * telemetry (frames receipted and rows stored per second), the plain QoS 1 baseline, the open
 * loop, and the backlog and full-queue runs through a backend outage.
 */
import { round, percentile, spread, type Spread } from './stats.js';
import { cpuSecondsOf } from './scenarios.js';
import type { Daemon } from './harness.js';
import { onAll, type DpGenerator, type ReplicaBackend } from './dataplane-env.js';
import type { DpReport } from './dataplane-generator.js';

export interface LoopShape {
  window: number;
  bodyBytes: number;
  durationMs: number;
  runs: number;
}

export interface CpuShare {
  /** Cores used during the runs: the daemon (or broker), the generators, this process (the backends). */
  daemon: number;
  generators: number;
  backend: number;
  /** Daemon CPU per operation, µs. */
  daemonUsPerOp: number;
}

export interface ClosedResult {
  perSec: Spread;
  /** Rows that reached the backend's store per second over the same runs (telemetry only). */
  rowsPerSec?: Spread;
  p50: Spread;
  p99: Spread;
  busy: number;
  ops: number;
  frameBytes: number;
  failures: Record<string, number>;
  cpu: CpuShare;
}

function failuresOf(rs: DpReport[], into: Record<string, number>): void {
  for (const r of rs) for (const [k, v] of Object.entries(r.failures)) into[k] = (into[k] ?? 0) + v;
}

/**
 * Closed loop, one warm-up run then `runs` runs: `op` closed (pub frames; rows counted at the
 * replica when given) or plain (QoS 1 publishes). `sessions`: only that many sessions of the first generator.
 */
export async function closedRuns(gens: DpGenerator[], daemon: Daemon, s: LoopShape & { op: 'closed' | 'plain'; frameBytes?: number; sessions?: number; replica?: ReplicaBackend; afterId?: number }): Promise<ClosedResult & { receipted: number }> {
  const use = s.sessions === undefined ? gens : gens.slice(0, 1);
  const cmd = (durationMs: number) =>
    s.op === 'plain'
      ? { op: 'plain' as const, durationMs, window: s.window, bytes: s.frameBytes ?? 64 }
      : { op: 'closed' as const, durationMs, window: s.window, bodyBytes: s.bodyBytes, ...(s.sessions === undefined ? {} : { sessions: s.sessions }) };
  const failures: Record<string, number> = {};
  const warm = await onAll(use, cmd(Math.min(2000, s.durationMs)));
  failuresOf(warm, failures);
  let receipted = warm.reduce((a, r) => a + r.ok, 0);
  const rates: number[] = [];
  const rows: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  let busy = 0;
  let ops = 0;
  let genCpuMs = 0;
  let frameBytes = s.frameBytes ?? 0;
  const d0 = cpuSecondsOf(daemon.pid);
  const b0 = process.cpuUsage();
  const t00 = performance.now();
  for (let r = 0; r < s.runs; r += 1) {
    const rows0 = s.replica?.rowsAfter(s.afterId ?? 0) ?? 0;
    const t0 = performance.now();
    const rs = await onAll(use, cmd(s.durationMs));
    const wall = performance.now() - t0;
    const ok = rs.reduce((a, x) => a + x.ok, 0);
    if (s.replica !== undefined) rows.push(((s.replica.rowsAfter(s.afterId ?? 0) - rows0) * 1000) / wall);
    rates.push((ok * 1000) / wall);
    const lat = rs.flatMap((x) => x.latencies);
    p50.push(percentile(lat, 0.5));
    p99.push(percentile(lat, 0.99));
    busy += rs.reduce((a, x) => a + (x.busy ?? 0), 0);
    genCpuMs += rs.reduce((a, x) => a + x.cpuMs, 0);
    frameBytes = Math.max(frameBytes, ...rs.map((x) => x.frameBytes ?? 0));
    failuresOf(rs, failures);
    ops += ok;
    receipted += ok;
  }
  const wall = (performance.now() - t00) / 1000;
  const b = process.cpuUsage(b0);
  const daemonCpu = cpuSecondsOf(daemon.pid) - d0;
  return {
    perSec: spread(rates),
    ...(s.replica === undefined ? {} : { rowsPerSec: spread(rows) }),
    p50: spread(p50),
    p99: spread(p99),
    busy,
    ops,
    frameBytes,
    failures,
    receipted,
    cpu: { daemon: round(daemonCpu / wall, 2), generators: round(genCpuMs / 1000 / wall, 2), backend: round((b.user + b.system) / 1e6 / wall, 2), daemonUsPerOp: Math.round((daemonCpu / Math.max(1, ops)) * 1e6) },
  };
}

export interface OpenResult {
  rate: number;
  achieved: Spread;
  p50: Spread;
  p95: Spread;
  p99: Spread;
  failures: Record<string, number>;
  receipted: number;
}

/** Open loop at `rate` frames/s, split over the generators, `runs` runs. */
export async function openRuns(gens: DpGenerator[], s: { rate: number; durationMs: number; runs: number; bodyBytes: number }): Promise<OpenResult> {
  const achieved: number[] = [];
  const p50: number[] = [];
  const p95: number[] = [];
  const p99: number[] = [];
  const failures: Record<string, number> = {};
  let receipted = 0;
  for (let r = 0; r < s.runs; r += 1) {
    const t0 = performance.now();
    const rs = await onAll(gens, { op: 'open', rate: s.rate / gens.length, durationMs: s.durationMs, bodyBytes: s.bodyBytes });
    const ok = rs.reduce((a, x) => a + x.ok, 0);
    achieved.push((ok * 1000) / (performance.now() - t0));
    const lat = rs.flatMap((x) => x.latencies);
    p50.push(percentile(lat, 0.5));
    p95.push(percentile(lat, 0.95));
    p99.push(percentile(lat, 0.99));
    failuresOf(rs, failures);
    receipted += ok;
  }
  return { rate: s.rate, achieved: spread(achieved), p50: spread(p50), p95: spread(p95), p99: spread(p99), failures, receipted };
}

/** Waits (bounded) until `n` rows are stored after row `afterId`; answers when the first and the last arrived (ms). */
export async function rowsReach(replica: ReplicaBackend, afterId: number, n: number, timeoutMs: number): Promise<{ stored: number; firstAt: number | undefined; lastAt: number }> {
  const deadline = performance.now() + timeoutMs;
  let firstAt: number | undefined;
  for (;;) {
    const stored = replica.rowsAfter(afterId);
    const now = performance.now();
    if (stored > 0 && firstAt === undefined) firstAt = now;
    if (stored >= n || now > deadline) return { stored, firstAt, lastAt: now };
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface BacklogResult {
  frames: number;
  receipted: number;
  busy: number;
  pushSec: number;
  /** From the backend's restart to its first row of the backlog (the uploader's backoff and circuit breaker). */
  restoreToFirstRowSec: number;
  /** First row to the last: the drain proper. */
  drainSec: number;
  drainRowsPerSec: number;
  stored: number;
  /** Sessions whose rows at the backend are exactly the frames receipted to them (each seq once). */
  sessionsExact: number;
  sessions: number;
  exactlyOnce: boolean;
  failures: Record<string, number>;
}

/** With the backend down, `frames` pub frames into the queue (all receipted); then the backend back and the drain timed. */
export async function backlogRun(gens: DpGenerator[], replica: ReplicaBackend, s: { frames: number; window: number; bodyBytes: number; log: (l: string) => void }): Promise<BacklogResult> {
  await replica.down();
  const afterId = replica.lastId();
  const t0 = performance.now();
  const share = (i: number): number => Math.floor(s.frames / gens.length) + (i < s.frames % gens.length ? 1 : 0);
  const rs = await Promise.all(gens.map((g, i) => g.run({ op: 'push', frames: share(i), window: s.window, bodyBytes: s.bodyBytes, untilBusy: false, timeoutMs: 30_000 }, 900_000)));
  const pushSec = (performance.now() - t0) / 1000;
  const failures: Record<string, number> = {};
  failuresOf(rs, failures);
  const receipted = rs.reduce((a, r) => a + r.ok, 0);
  const busy = rs.reduce((a, r) => a + (r.busy ?? 0), 0);
  s.log(`      backlog: ${receipted} of ${s.frames} frames receipted in ${round(pushSec)} s with the backend down (${busy} busy); ${replica.rowsAfter(afterId)} rows stored meanwhile`);
  const tUp = performance.now();
  await replica.up();
  const r = await rowsReach(replica, afterId, receipted, 600_000);
  const first = r.firstAt ?? r.lastAt;
  const drainSec = (r.lastAt - first) / 1000;
  // Exactly once: each session's rows are the frames receipted to it, each seq once, and nothing else arrived.
  const sessions = rs.flatMap((x) => x.sessions ?? []);
  const by = replica.rowsBySidAfter(afterId);
  const exact = sessions.filter((x) => {
    const got = by.get(x.sid);
    return got !== undefined && got.rows === x.settled && got.seqs === x.settled;
  }).length;
  const stored = replica.rowsAfter(afterId);
  return {
    frames: s.frames,
    receipted,
    busy,
    pushSec: round(pushSec, 1),
    restoreToFirstRowSec: round((first - tUp) / 1000, 1),
    drainSec: round(drainSec, 2),
    drainRowsPerSec: Math.round(receipted / Math.max(drainSec, 0.001)),
    stored,
    sessionsExact: exact,
    sessions: sessions.length,
    exactlyOnce: exact === sessions.length && by.size === sessions.length && stored === receipted && receipted === s.frames,
    failures,
  };
}

export interface FullQueueResult {
  /** Frames receipted before the first busy. */
  frames: number;
  bodyBytes: number;
  busy: number;
  fillSec: number;
  rssBeforeMb: number;
  rssMb: number;
  peakMb: number;
  /** V8 heap in use then (the daemon's own figure, over IPC). */
  heapUsedMb: number;
  failures: Record<string, number>;
}

/** With the backend down, pub frames until a receipt says busy (the queue is full); the daemon's RSS then. */
export async function fullQueueRun(gens: DpGenerator[], daemon: Daemon, replica: ReplicaBackend, s: { window: number; bodyBytes: number }): Promise<FullQueueResult> {
  await replica.down();
  const rssBeforeMb = round(daemon.memory().rssMb);
  const t0 = performance.now();
  const rs = await onAll(gens, { op: 'push', frames: Number.MAX_SAFE_INTEGER, window: s.window, bodyBytes: s.bodyBytes, untilBusy: true, timeoutMs: 30_000 }, { timeoutMs: 900_000 });
  const fillSec = (performance.now() - t0) / 1000;
  // Let the daemon settle (receipts out, garbage collected as it would be) before reading its memory.
  await new Promise((r) => setTimeout(r, 1000));
  const m = daemon.memory();
  const heapUsedMb = round((await daemon.stats()).heapUsedMb);
  const failures: Record<string, number> = {};
  failuresOf(rs, failures);
  return {
    frames: rs.reduce((a, r) => a + r.ok, 0),
    bodyBytes: s.bodyBytes,
    busy: rs.reduce((a, r) => a + (r.busy ?? 0), 0),
    fillSec: round(fillSec, 1),
    rssBeforeMb,
    rssMb: round(m.rssMb),
    peakMb: round(m.peakMb),
    heapUsedMb,
    failures,
  };
}
