/**
 * Load generator worker (child_process.fork): simulated MQTT peripherals in their own process,
 * so the gateway's numbers are not the generator's. Each peripheral is the reference
 * peripheral library (protocol-v1 exchange, every welcome checked) over a raw MQTT client, with
 * node:crypto Ed25519 (Ed25519Signer) so the generator stays cheap. Commands arrive over IPC;
 * every answer carries this process's CPU time (process.cpuUsage) for the report.
 */
import { Ed25519Signer } from '../protocol/index.js';
import { ReferencePeripheral } from '../peripherals/reference/peripheral.js';
import { RawMqttClient } from '../testkit/mqtt-wire.js';

export interface GenDevice {
  dev: string;
  /** 32-byte Ed25519 seed, base64. */
  seed: string;
}

export type GenCommand =
  | { op: 'setup'; backendKid: string; backendPk: string; devices: GenDevice[] }
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

interface Peer {
  dev: string;
  ref: ReferencePeripheral;
  client: RawMqttClient | undefined;
  up: string;
  down: string;
  waiter: ((b: Buffer | undefined) => void) | undefined;
}

let peers: Peer[] = [];
let backendKeys = new Map<string, Uint8Array>();

function send(m: GenReport | { op: 'error'; message: string }): void {
  process.send?.(m);
}

function fail(counts: Record<string, number>, why: string): void {
  counts[why] = (counts[why] ?? 0) + 1;
}

function nextDown(p: Peer, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      p.waiter = undefined;
      resolve(undefined);
    }, timeoutMs);
    p.waiter = (b) => {
      clearTimeout(timer);
      p.waiter = undefined;
      resolve(b);
    };
  });
}

async function connectPeer(p: Peer, host: string, port: number, timeoutMs: number): Promise<void> {
  const c = await RawMqttClient.connect({ host, port, clientId: p.dev, keepaliveSec: 300, timeoutMs });
  c.onMessage = (topic, payload) => {
    if (topic === p.down) p.waiter?.(payload);
  };
  c.onClose = () => p.waiter?.(undefined);
  const granted = await c.subscribe(p.down, 1, timeoutMs);
  if (granted === 0x80) {
    c.destroy();
    throw new Error('subscribe refused');
  }
  p.client = c;
}

type AuthOutcome = { ok: true } | { ok: false; why: string; retry?: number };

/** One full exchange: challenge-request, challenge, hello, welcome checked by the peripheral. */
async function authOnce(p: Peer, timeoutMs: number): Promise<AuthOutcome> {
  const c = p.client;
  if (c === undefined || c.closed) return { ok: false, why: 'not connected' };
  let reply = nextDown(p, timeoutMs);
  c.publish(p.up, p.ref.challengeRequest(), 1);
  let helloSent = false;
  for (;;) {
    const bytes = await reply;
    if (bytes === undefined) return { ok: false, why: c.closed ? 'closed' : 'timeout' };
    const ev = p.ref.receive(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (ev.kind === 'challenge' && !helloSent) {
      helloSent = true;
      reply = nextDown(p, timeoutMs);
      c.publish(p.up, await p.ref.hello(new Uint8Array(bytes)), 1);
      continue;
    }
    if (ev.kind === 'authenticated') return { ok: true };
    if (ev.kind === 'rejected') return { ok: false, why: `rejected:${ev.reason}`, retry: ev.retryAfterSeconds };
    if (ev.kind === 'welcome-refused') return { ok: false, why: `welcome-refused:${ev.code}` };
    reply = nextDown(p, timeoutMs);
  }
}

/** A plain request/response round trip (the echo broker answers every up message). */
async function echoOnce(p: Peer, payload: Uint8Array, timeoutMs: number): Promise<boolean> {
  const c = p.client;
  if (c === undefined || c.closed) return false;
  const reply = nextDown(p, timeoutMs);
  c.publish(p.up, payload, 1);
  return (await reply) !== undefined;
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
      backendKeys = new Map([[cmd.backendKid, new Uint8Array(Buffer.from(cmd.backendPk, 'base64url'))]]);
      peers = cmd.devices.map((d) => {
        const signer = Ed25519Signer.fromSeed(new Uint8Array(Buffer.from(d.seed, 'base64')), d.dev);
        return {
          dev: d.dev,
          ref: new ReferencePeripheral({ dev: d.dev, signer, backendKeys }),
          client: undefined,
          up: `gatehouse/v1/${d.dev}/up`,
          down: `gatehouse/v1/${d.dev}/down`,
          waiter: undefined,
        };
      });
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
              await connectPeer(p, cmd.host, cmd.port, 30_000);
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
            const r = await authOnce(p, 10_000);
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
          const body = p.ref.challengeRequest();
          while (performance.now() < end) {
            const s = performance.now();
            if (await echoOnce(p, body, 10_000)) latencies.push(performance.now() - s);
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
            const r = await authOnce(p, 10_000);
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
              if (p.client === undefined || p.client.closed) await connectPeer(p, cmd.host, cmd.port, cmd.stepTimeoutMs);
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
            const r = await authOnce(p, cmd.stepTimeoutMs);
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
      for (const p of peers) p.client?.destroy();
      for (const p of peers) p.client = undefined;
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
