/**
 * The lease cache's cost at rest: the daemon's idle RSS with N cached leases (and with none), and
 * the time from starting the daemon process to its MQTT broker accepting a TCP connection, on the
 * shipped limits. The leases are real (signed by the bench backend's key, for this gateway,
 * unexpired) and are seeded as a `leases.json` of the earlier format; one start and stop before
 * the measured runs lets the daemon bring them into its own format. Each run then starts the
 * daemon on that state: the clock starts at fork, the broker is probed every 5 ms, and RSS
 * (/proc VmRSS) is read 1 s after the daemon reported ready. Also: what checkLease costs per
 * lease with and without its signature verification.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ensureSigningKey } from '../../backend/signing-key.js';
import { DEFAULT_POLICY, Ed25519Signer, signLease } from '../../protocol/index.js';
import { checkLease } from '../../daemon/backend-client/lease-check.js';
import { Daemon, GW, shippedNofile, type BenchEnv } from '../harness.js';
import type { Phase, PhaseContext } from '../phase.js';
import { fmt, spread, type Spread } from '../stats.js';

/** Resolves when a TCP connection to the port succeeds (probing every 5 ms), or rejects after `ms`. */
async function listening(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not listening within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function measure(ctx: PhaseContext, name: string, seed: (stateDir: string) => Promise<void>): Promise<{ rss: Spread; listen: Spread; ready: Spread }> {
  const env: BenchEnv = ctx.env;
  const runs = ctx.runs;
  const stateDir = join(env.dir, `state-${name}`);
  const { file, log: logFile } = await env.writeConfig(name, { stateDir, logLevel: 'warn', profile: 'shipped' });
  const port = (parse(await readFile(file, 'utf8')) as { mqtt: { tcp: { port: number } } }).mqtt.tcp.port;
  await seed(stateDir);
  // One start and stop: the daemon brings the seeded state into its own format.
  const nofile = shippedNofile();
  await (await Daemon.start('gateway-worker.js', [file, logFile], { nofile })).stop();
  const rss: number[] = [];
  const listen: number[] = [];
  const ready: number[] = [];
  for (let r = 0; r < runs; r += 1) {
    const t0 = performance.now();
    const started = Daemon.start('gateway-worker.js', [file, logFile], { nofile });
    await listening(port, 60_000);
    listen.push(performance.now() - t0);
    const d = await started;
    ready.push(performance.now() - t0);
    await new Promise((res) => setTimeout(res, 1000));
    rss.push(d.memory().rssMb);
    await d.stop();
    ctx.log(`      ${name} run ${r + 1}: listening ${Math.round(listen[r] ?? 0)} ms, ready ${Math.round(ready[r] ?? 0)} ms, idle RSS ${(rss[r] ?? 0).toFixed(1)} MB`);
  }
  return { rss: spread(rss), listen: spread(listen.map(Math.round)), ready: spread(ready.map(Math.round)) };
}

export const leasesPhase: Phase = {
  key: 'leases',
  title: 'Lease cache at rest (shipped limits)',
  async run(ctx) {
    const N = Number(process.env.BENCH_LEASES ?? (ctx.quick ? 1000 : 10_000));
    const { signer } = await ensureSigningKey(join(ctx.env.dir, 'backend'));
    const now = Math.floor(Date.now() / 1000);
    ctx.log(`      signing ${N} leases …`);
    const leases: string[] = [];
    for (let i = 0; i < N; i += 1) {
      const dev = `bench-${String(i).padStart(5, '0')}`;
      const bytes = await signLease(
        { type: 'lease', version: 1, dev, gw: GW, dpk: Ed25519Signer.generate(dev).publicKeyRaw, policy: { pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] }, iat: now, exp: now + 7 * 86400 },
        signer,
      );
      leases.push(Buffer.from(bytes).toString('base64url'));
    }
    // What verifying every lease of a verify answer costs (security finding 5): checkLease with
    // and without the Ed25519 verification (node:crypto), over all N leases, per lease.
    const keys = new Map([[signer.kid, signer.publicKeyRaw]]);
    const raw = leases.map((l) => new Uint8Array(Buffer.from(l, 'base64url')));
    const perLease = (verifySignature: boolean): number => {
      const t0 = performance.now();
      for (const b of raw) if (!checkLease(b, { gw: GW, backendKeys: keys, nowS: now, verifySignature }).ok) throw new Error('lease refused');
      return ((performance.now() - t0) * 1000) / raw.length;
    };
    perLease(true); // warm-up
    const withSig: number[] = [];
    const without: number[] = [];
    for (let r = 0; r < ctx.runs; r += 1) {
      without.push(perLease(false));
      withSig.push(perLease(true));
    }
    const verifyUs = spread(withSig.map((x, i) => x - (without[i] ?? 0)));
    ctx.log(`      checkLease: ${fmt(spread(without), ' µs')} per lease without the signature, ${fmt(spread(withSig), ' µs')} with it`);
    const empty = await measure(ctx, 'leases-empty', () => Promise.resolve());
    const full = await measure(ctx, 'leases-full', (stateDir) => writeFile(join(stateDir, 'leases.json'), JSON.stringify({ version: 1, leases }), { mode: 0o600 }));
    return {
      summary: { leases: N, empty, full, verifyUsPerLease: verifyUs, checkLeaseUs: { withSignature: spread(withSig), without: spread(without) } },
      rows: [
        ['idle RSS, empty state (MB)', fmt(empty.rss)],
        [`idle RSS, ${N} cached leases (MB)`, fmt(full.rss)],
        ['start → broker listening, empty state (ms)', fmt(empty.listen)],
        [`start → broker listening, ${N} cached leases (ms)`, fmt(full.listen)],
        [`start → ready, empty / ${N} leases (ms)`, `${fmt(empty.ready)} / ${fmt(full.ready)}`],
        ['lease signature verification on arrival (µs per lease)', fmt(verifyUs)],
      ],
      targets: [
        { target: `idle RSS with ${N} cached leases <= 90 MB`, value: `${full.rss.median} MB (max ${full.rss.max})`, met: full.rss.median <= 90 },
        { target: `broker listening <= 0.5 s after start with ${N} cached leases`, value: `${full.listen.median} ms (max ${full.listen.max})`, met: full.listen.median <= 500 },
      ],
    };
  },
};
