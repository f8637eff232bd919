/**
 * Data-plane load generator (child_process.fork, like load-generator.ts): simulated v2 MQTT
 * peripherals in their own process. Each is the reference v2 peripheral library
 * (peripherals/reference/session-v2.ts: the v2 exchange, every welcome checked, then sealed `pub`
 * frames and the gateway's receipts opened and checked) over testkit's RawMqttClient, a bare
 * MQTT 3.1.1 client: mqtt.js would spend more of the two shared cores per message than the
 * gateway under test, and the same client sends the plain QoS 1 baseline, so the two rates
 * compare like with like. A frame counts when a receipt settles it; its latency runs from its
 * send (closed loop) or its scheduled send (open loop) to that receipt. Commands arrive over IPC;
 * every answer carries this process's CPU time.
 */
import { connectClient, establish, peerOf, send, type Peer } from './dataplane-peer.js';
import type { GenDevice, GenReport } from './load-generator.js';

export type DpCommand =
  | { op: 'setup'; backendKid: string; backendPk: string; devices: GenDevice[] }
  /** Connect and run the v2 exchange: one live session per device. */
  | { op: 'connect'; host: string; port: number; parallel: number }
  /** Connect without authenticating (the plain QoS 1 baseline). */
  | { op: 'plain-connect'; host: string; port: number; parallel: number }
  /** Closed loop of plain QoS 1 publishes of `bytes` on the up topic, `window` awaiting their PUBACK per connection. */
  | { op: 'plain'; durationMs: number; window: number; bytes: number }
  /** Closed loop of pub frames, `window` unreceipted per session, over the first `sessions` sessions (default all). */
  | { op: 'closed'; durationMs: number; window: number; bodyBytes: number; sessions?: number }
  /** Open loop: pub frames at `rate`/s round robin over the sessions, latency from the scheduled send. */
  | { op: 'open'; rate: number; durationMs: number; bodyBytes: number }
  /** `frames` pub frames over all sessions (`window` each), all receipted; or with `untilBusy`, until a receipt says busy. */
  | { op: 'push'; frames: number; window: number; bodyBytes: number; untilBusy: boolean; timeoutMs: number }
  | { op: 'close' };

/** A command's answer: the load generator's report fields (`ok`: frames settled by a receipt, or plain publishes acknowledged; latencies not for push), and: */
export interface DpReport extends Pick<GenReport, 'op' | 'ok' | 'failures' | 'latencies' | 'wallMs' | 'cpuMs'> {
  /** Frames a receipt listed busy or lost. */
  busy?: number;
  /** Size of one sealed pub frame with the command's body (the baseline publishes this many bytes). */
  frameBytes?: number;
  /** push: per session, the frames this command got settled (the backend must hold exactly these). */
  sessions?: { dev: string; sid: string; settled: number }[];
}

let peers: Peer[] = [];
let backendKeys = new Map<string, Uint8Array>();

function fail(counts: Record<string, number>, why: string): void {
  counts[why] = (counts[why] ?? 0) + 1;
}

function report(op: string, t0: number, cpu0: NodeJS.CpuUsage, extra: Partial<DpReport>): DpReport {
  const cpu = process.cpuUsage(cpu0);
  return { op, ok: 0, failures: {}, latencies: [], wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000, ...extra };
}

async function forAll(parallel: number, work: (p: Peer) => Promise<void>, failures: Record<string, number>): Promise<number> {
  let next = 0;
  let ok = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, peers.length) }, async () => {
      for (let p = peers[next++]; p !== undefined; p = peers[next++]) {
        try {
          await work(p);
          ok += 1;
        } catch (err) {
          fail(failures, err instanceof Error ? err.message : String(err));
        }
      }
    }),
  );
  return ok;
}

/**
 * Each peer keeps `window` frames unreceipted until `stop()` says so (checked before every send),
 * and is done when nothing of it is outstanding; a peer that hears nothing for `quietMs` gives up.
 */
async function windowed(
  ps: Peer[],
  o: {
    window: number;
    body: Uint8Array;
    stop: (p: Peer, sent: number) => boolean;
    quietMs: number;
    onSettled: (p: Peer, latencies: number[]) => void;
    onBusy?: () => void;
    failures: Record<string, number>;
  },
): Promise<number> {
  let busy = 0;
  await Promise.all(
    ps.map(
      (p) =>
        new Promise<void>((resolve) => {
          let sent = 0;
          let quiet: NodeJS.Timeout | undefined;
          const finish = (why?: string): void => {
            clearTimeout(quiet);
            p.onReceipt = () => undefined;
            if (why !== undefined) fail(o.failures, why);
            resolve();
          };
          const fill = (): void => {
            while (p.sentAt.size < o.window && !o.stop(p, sent)) {
              if (!send(p, o.body, performance.now())) break;
              sent += 1;
            }
            if (p.sentAt.size === 0) finish();
            else {
              clearTimeout(quiet);
              quiet = setTimeout(() => finish(`no receipt within ${o.quietMs} ms`), o.quietMs);
            }
          };
          p.onReceipt = (settled, unsettled) => {
            busy += unsettled;
            if (unsettled > 0) o.onBusy?.();
            const now = performance.now();
            const lat: number[] = [];
            for (const seq of settled) {
              const at = p.sentAt.get(seq);
              if (at === undefined) continue;
              p.sentAt.delete(seq);
              lat.push(now - at);
            }
            o.onSettled(p, lat);
            fill();
          };
          fill();
        }),
    ),
  );
  return busy;
}

async function handle(cmd: DpCommand): Promise<DpReport> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const failures: Record<string, number> = {};
  switch (cmd.op) {
    case 'setup': {
      backendKeys = new Map([[cmd.backendKid, new Uint8Array(Buffer.from(cmd.backendPk, 'base64url'))]]);
      peers = cmd.devices.map((d) => peerOf(d, backendKeys));
      return report('setup', t0, cpu0, { ok: peers.length });
    }
    case 'connect': {
      const ok = await forAll(cmd.parallel, (p) => establish(p, cmd.host, cmd.port, 30_000), failures);
      return report('connect', t0, cpu0, { ok, failures });
    }
    case 'plain-connect': {
      const ok = await forAll(cmd.parallel, async (p) => void (await connectClient(p, cmd.host, cmd.port, 30_000)), failures);
      return report('plain-connect', t0, cpu0, { ok, failures });
    }
    case 'plain': {
      // A frame-shaped payload on the v2 up topic from a connection without a session: the broker
      // checks, routes and acknowledges it; the ingress discards it unread (protocol-v2 "Whose frames").
      const payload = new Uint8Array(cmd.bytes);
      payload[0] = 0xd0;
      const latencies: number[] = [];
      const end = performance.now() + cmd.durationMs;
      await Promise.all(
        peers.map(
          (p) =>
            new Promise<void>((resolve) => {
              const c = p.client;
              if (c === undefined || c.closed) return resolve();
              const quiet = (): NodeJS.Timeout => setTimeout(() => (fail(failures, 'no PUBACK within 10 s'), resolve()), 10_000);
              let timer = quiet();
              const fill = (): void => {
                while (p.pubackAt.size < cmd.window && performance.now() < end && !c.closed) p.pubackAt.set(c.publish(p.up, payload, 1), performance.now());
                clearTimeout(timer);
                if (p.pubackAt.size === 0) resolve();
                else timer = quiet();
              };
              p.onPuback = (at) => {
                latencies.push(performance.now() - at);
                fill();
              };
              fill();
            }),
        ),
      );
      return report('plain', t0, cpu0, { ok: latencies.length, failures, latencies });
    }
    case 'closed': {
      const body = new Uint8Array(cmd.bodyBytes).fill(0x61);
      const latencies: number[] = [];
      const end = performance.now() + cmd.durationMs;
      const ps = peers.slice(0, cmd.sessions ?? peers.length);
      const busy = await windowed(ps, { window: cmd.window, body, stop: () => performance.now() >= end, quietMs: 10_000, onSettled: (_p, l) => latencies.push(...l), failures });
      return report('closed', t0, cpu0, { ok: latencies.length, failures, latencies, busy, frameBytes: ps[0]?.frameBytes ?? 0 });
    }
    case 'open': {
      const body = new Uint8Array(cmd.bodyBytes).fill(0x61);
      const latencies: number[] = [];
      let busy = 0;
      const live = peers.filter((p) => p.session !== undefined);
      for (const p of live) {
        p.onReceipt = (settled, unsettled) => {
          busy += unsettled;
          const now = performance.now();
          for (const seq of settled) {
            const at = p.sentAt.get(seq);
            if (at === undefined) continue;
            p.sentAt.delete(seq);
            latencies.push(now - at);
          }
        };
      }
      const start = performance.now();
      const total = Math.floor((cmd.rate * cmd.durationMs) / 1000);
      let scheduled = 0;
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const now = performance.now();
          // Frame k is due at start + k/rate; latency counts from then (no coordinated omission).
          const due = Math.min(total, Math.floor(((now - start) * cmd.rate) / 1000) + 1);
          for (; scheduled < due; scheduled += 1) {
            const p = live[scheduled % live.length];
            if (p === undefined || !send(p, body, start + (scheduled * 1000) / cmd.rate)) fail(failures, 'not sent (session busy or closed)');
          }
          if (scheduled >= total && now - start >= cmd.durationMs) resolve();
          else setTimeout(tick, 1);
        };
        tick();
      });
      const deadline = performance.now() + 10_000;
      while (live.some((p) => p.sentAt.size > 0) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const missing = live.reduce((n, p) => n + p.sentAt.size, 0);
      if (missing > 0) failures['no receipt within 10 s'] = missing;
      for (const p of live) {
        p.onReceipt = () => undefined;
        p.sentAt.clear();
      }
      return report('open', t0, cpu0, { ok: latencies.length, failures, latencies, busy });
    }
    case 'push': {
      const body = new Uint8Array(cmd.bodyBytes).fill(0x62);
      const live = peers.filter((p) => p.session !== undefined);
      const quota = (i: number): number => Math.floor(cmd.frames / live.length) + (i < cmd.frames % live.length ? 1 : 0);
      const settled = new Map<Peer, number>(live.map((p) => [p, 0]));
      let sawBusy = false;
      const index = new Map(live.map((p, i) => [p, i]));
      const busy = await windowed(live, {
        window: cmd.window,
        body,
        stop: (p, sent) => (cmd.untilBusy ? sawBusy : sent >= quota(index.get(p) ?? 0)),
        quietMs: cmd.timeoutMs,
        onSettled: (p, l) => settled.set(p, (settled.get(p) ?? 0) + l.length),
        onBusy: () => {
          sawBusy = true;
        },
        failures,
      });
      const sessions = live.map((p) => ({ dev: p.dev, sid: Buffer.from(p.session?.sid ?? []).toString('hex'), settled: settled.get(p) ?? 0 }));
      return report('push', t0, cpu0, { ok: sessions.reduce((a, s) => a + s.settled, 0), failures, busy, sessions });
    }
    case 'close': {
      for (const p of peers) {
        p.client?.destroy();
        p.client = undefined;
        p.session = undefined;
        p.sentAt.clear();
        p.pubackAt.clear();
      }
      return report('close', t0, cpu0, {});
    }
  }
}

// Commands run one at a time, in order.
let chain = Promise.resolve();
process.on('message', (cmd: DpCommand) => {
  chain = chain.then(async () => {
    try {
      process.send?.(await handle(cmd));
    } catch (err) {
      process.send?.({ op: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  });
});
process.on('disconnect', () => process.exit(0));
