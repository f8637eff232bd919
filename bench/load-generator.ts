/**
 * Load generator worker (child_process.fork): simulated MQTT peripherals in their own process,
 * so the gateway's numbers are not the generator's. Each peripheral is the reference
 * peripheral library of protocol v1 or v2 (bench/gen-peer.ts: every welcome checked) over a raw
 * MQTT client, with node:crypto Ed25519 so the generator stays cheap. Commands arrive over IPC;
 * every answer carries this process's CPU time (process.cpuUsage) for the report.
 */
import { Peer, type GenDevice } from './gen-peer.js';

export type { GenDevice } from './gen-peer.js';

export type GenCommand =
  /** `version` (default 1): the protocol the peripherals speak in every later op. */
  | { op: 'setup'; backendKid: string; backendPk: string; devices: GenDevice[]; version?: 1 | 2 }
  | { op: 'connect'; host: string; port: number; parallel: number }
  | { op: 'closed'; durationMs: number }
  | { op: 'open'; rate: number; durationMs: number }
  | { op: 'echo'; durationMs: number }
  | { op: 'storm'; host: string; port: number; startAt: number; stepTimeoutMs: number; retry: boolean }
  | { op: 'close' };

export interface GenReport {
  op: string;
  ok: number;
  failures: Record<string, number>;
  /** Latencies of successful operations, ms. */
  latencies: number[];
  /** Wall time of the phase, ms. */
  wallMs: number;
  /** CPU time of this process during the phase, ms (user + system). */
  cpuMs: number;
  /** Storm: epoch ms of the last welcome; open loop: starts that found no idle connection. */
  lastDoneAt?: number;
  backlogged?: number;
  connected?: number;
  retries?: number;
  /** Storm: why attempts were retried (connect failures, rejects with a retry hint). */
  retried?: Record<string, number>;
}

let peers: Peer[] = [];

function send(m: GenReport | { op: 'error'; message: string }): void {
  process.send?.(m);
}

function fail(counts: Record<string, number>, why: string): void {
  counts[why] = (counts[why] ?? 0) + 1;
}

function report(op: string, t0: number, cpu0: NodeJS.CpuUsage, extra: Partial<GenReport>): GenReport {
  const cpu = process.cpuUsage(cpu0);
  return { op, ok: 0, failures: {}, latencies: [], wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, ...extra };
}

async function handle(cmd: GenCommand): Promise<GenReport> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  switch (cmd.op) {
    case 'setup': {
      const backendKeys = new Map([[cmd.backendKid, new Uint8Array(Buffer.from(cmd.backendPk, 'base64url'))]]);
      peers = cmd.devices.map((d) => new Peer(d, cmd.version ?? 1, backendKeys));
      return report('setup', t0, cpu0, { ok: peers.length });
    }
    case 'connect': {
      const failures: Record<string, number> = {};
      let next = 0;
      let ok = 0;
      await Promise.all(
        Array.from({ length: Math.min(cmd.parallel, peers.length) }, async () => {
          for (let p = peers[next++]; p !== undefined; p = peers[next++]) {
            try {
              await p.connect(cmd.host, cmd.port, 30_000);
              ok += 1;
            } catch (err) {
              fail(failures, err instanceof Error ? err.message : String(err));
            }
          }
        }),
      );
      return report('connect', t0, cpu0, { ok, failures, connected: ok });
    }
    case 'closed': {
      // Closed loop: every connection runs exchanges back to back until the deadline.
      const failures: Record<string, number> = {};
      const latencies: number[] = [];
      const end = performance.now() + cmd.durationMs;
      await Promise.all(
        peers.map(async (p) => {
          while (performance.now() < end) {
            const s = performance.now();
            const r = await p.auth(10_000);
            if (r.ok) latencies.push(performance.now() - s);
            else {
              fail(failures, r.why);
              if (p.client?.closed !== false) return;
            }
          }
        }),
      );
      return report('closed', t0, cpu0, { ok: latencies.length, failures, latencies });
    }
    case 'echo': {
      const failures: Record<string, number> = {};
      const latencies: number[] = [];
      const end = performance.now() + cmd.durationMs;
      await Promise.all(
        peers.map(async (p) => {
          const body = p.challengeRequest();
          while (performance.now() < end) {
            const s = performance.now();
            if (await p.echo(body, 10_000)) latencies.push(performance.now() - s);
            else {
              fail(failures, 'timeout');
              return;
            }
          }
        }),
      );
      return report('echo', t0, cpu0, { ok: latencies.length, failures, latencies });
    }
    case 'open': {
      // Open loop: exchanges start on a fixed schedule whatever the replies do; latency runs from
      // the scheduled start, so a slow gateway cannot hide its queueing (no coordinated omission).
      const failures: Record<string, number> = {};
      const latencies: number[] = [];
      const idle = [...peers.filter((p) => p.client !== undefined && !p.client.closed)];
      const backlog: number[] = [];
      let backlogged = 0;
      const start = performance.now();
      const total = Math.floor((cmd.rate * cmd.durationMs) / 1000);
      let scheduled = 0;
      const running = new Set<Promise<void>>();
      const run = (p: Peer, at: number): void => {
        const job = (async () => {
          let due: number | undefined = at;
          while (due !== undefined) {
            const r = await p.auth(10_000);
            if (r.ok) latencies.push(performance.now() - due);
            else fail(failures, r.why);
            due = backlog.shift();
          }
          idle.push(p);
        })();
        running.add(job);
        void job.finally(() => running.delete(job));
      };
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const now = performance.now();
          // Exchange k is due at start + k/rate: those with k <= elapsed·rate are due now.
          const due = Math.min(total, Math.floor(((now - start) * cmd.rate) / 1000) + 1);
          for (; scheduled < due; scheduled += 1) {
            const at = start + (scheduled * 1000) / cmd.rate;
            const p = idle.pop();
            if (p === undefined) {
              backlogged += 1;
              backlog.push(at);
            } else run(p, at);
          }
          // The phase lasts its whole duration (the last exchange is due one interval before its end).
          if (scheduled >= total && now - start >= cmd.durationMs) resolve();
          else setTimeout(tick, 1);
        };
        tick();
      });
      while (running.size > 0) await Promise.all([...running]);
      return report('open', t0, cpu0, { ok: latencies.length, failures, latencies, backlogged });
    }
    case 'storm': {
      // Everyone connects and authenticates at once (a gateway reboot, a broker restart).
      const failures: Record<string, number> = {};
      const latencies: number[] = [];
      let lastDoneAt = 0;
      let retries = 0;
      const retried: Record<string, number> = {};
      const wait = Math.max(0, cmd.startAt - Date.now());
      await new Promise((r) => setTimeout(r, wait));
      const t = performance.now();
      await Promise.all(
        peers.map(async (p) => {
          for (let attempt = 0; attempt < 5; attempt += 1) {
            try {
              if (p.client === undefined || p.client.closed) await p.connect(cmd.host, cmd.port, cmd.stepTimeoutMs);
            } catch (err) {
              if (!cmd.retry) {
                fail(failures, `connect: ${err instanceof Error ? err.message : String(err)}`);
                return;
              }
              // Like an MQTT client's reconnect period: try again a second later.
              retries += 1;
              fail(retried, `connect: ${err instanceof Error ? err.message : String(err)}`);
              await new Promise((res) => setTimeout(res, 1000));
              continue;
            }
            const r = await p.auth(cmd.stepTimeoutMs);
            if (r.ok) {
              latencies.push(performance.now() - t);
              lastDoneAt = Math.max(lastDoneAt, Date.now());
              return;
            }
            if (!cmd.retry || r.retry === undefined) {
              fail(failures, r.why);
              return;
            }
            // protocol-v1: a rejected peripheral retries after `retry` seconds.
            retries += 1;
            fail(retried, r.why);
            await new Promise((res) => setTimeout(res, r.retry === undefined ? 1000 : r.retry * 1000));
          }
          fail(failures, 'gave up after 5 attempts');
        }),
      );
      return report('storm', t0, cpu0, { ok: latencies.length, failures, latencies, lastDoneAt, retries, retried });
    }
    case 'close': {
      for (const p of peers) p.close();
      return report('close', t0, cpu0, {});
    }
  }
}

// Commands run one at a time, in order.
let chain = Promise.resolve();
process.on('message', (cmd: GenCommand) => {
  chain = chain.then(async () => {
    try {
      send(await handle(cmd));
    } catch (err) {
      send({ op: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  });
});
process.on('disconnect', () => process.exit(0));
