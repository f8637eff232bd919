/**
 * Backend client throughput against the reference backend over HTTPS on loopback: verify
 * requests/s and hellos/s with batch size 1 and batched (default 64), in one run. Each mode is
 * measured `runs` times (default 3); medians and the batched/unbatched hellos/s ratio are
 * reported.
 *
 * Run directly: `node --import tsx bench/backend.ts` (writes bench/results/backend.json too), or
 * call `benchBackend()` from the bench runner.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { VerifyRequest } from '../daemon/pipeline/types.js';
import { BackendEnv } from '../testkit/backend-env.js';

export interface BackendBenchOptions {
  /** Hellos per run (default 1000). */
  hellos?: number;
  /** Distinct registered devices (default 200). */
  devices?: number;
  /** Hellos outstanding at once (default 256). */
  concurrency?: number;
  /** Batch size of the batched mode (default 64). */
  batch?: number;
  /** Runs per mode (default 3, at least 3 for a median). */
  runs?: number;
  log?: (line: string) => void;
}

export interface ModeResult {
  batch: number;
  /** Medians over the runs. */
  hellosPerSecond: number;
  requestsPerSecond: number;
  hellosPerRequest: number;
  runs: { hellosPerSecond: number; requestsPerSecond: number; ms: number }[];
}

export interface BackendBenchResult {
  hellos: number;
  concurrency: number;
  unbatched: ModeResult;
  batched: ModeResult;
  /** batched hellos/s ÷ unbatched hellos/s. */
  ratio: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

const round = (v: number): number => Math.round(v * 10) / 10;

async function runOnce(env: BackendEnv, session: Parameters<BackendEnv['client']>[0], hellos: VerifyRequest[], batch: number, concurrency: number): Promise<{ hellosPerSecond: number; requestsPerSecond: number; ms: number }> {
  const client = env.client(session, { maxBatch: batch, maxQueue: concurrency + 1, maxInFlight: 4, verifyTimeoutMs: 60_000 });
  let next = 0;
  let failures = 0;
  const t0 = performance.now();
  // `concurrency` workers, each sending its next hello when the previous one is answered.
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < hellos.length) {
        const h = hellos[next++] as VerifyRequest;
        const r = await client.verify(h);
        if (!r.ok) failures += 1;
      }
    }),
  );
  const ms = performance.now() - t0;
  await client.stop();
  if (failures > 0) throw new Error(`${failures} hellos were not verified`);
  const s = client.stats();
  return { hellosPerSecond: round((hellos.length * 1000) / ms), requestsPerSecond: round((s.batches * 1000) / ms), ms: round(ms) };
}

/** Start a reference backend, measure both modes, tear everything down. */
export async function benchBackend(opts: BackendBenchOptions = {}): Promise<BackendBenchResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const n = opts.hellos ?? 1000;
  const devices = opts.devices ?? 200;
  const concurrency = opts.concurrency ?? 256;
  const batch = opts.batch ?? 64;
  const runs = Math.max(3, opts.runs ?? 3);
  const pkiDir = await mkdtemp(join(tmpdir(), 'gh-bench-backend-'));
  const env = await BackendEnv.create({ pki: await BackendEnv.makePki(pkiDir) });
  try {
    const session = env.session();
    if (!(await session.start())) throw new Error('no session');
    const devs = Array.from({ length: devices }, (_, i) => `bench-${i}`);
    for (const d of devs) await env.addDevice(d);
    const makeHellos = async (): Promise<VerifyRequest[]> =>
      Promise.all(Array.from({ length: n }, (_, i) => env.hello(devs[i % devices] as string, undefined, `h${i}`)));
    await runOnce(env, session, await makeHellos(), batch, concurrency); // warm-up (TLS, JIT, SQLite)
    env.requests.length = 0;
    const modes: ModeResult[] = [];
    for (const b of [1, batch]) {
      const results = [];
      for (let r = 0; r < runs; r += 1) {
        results.push(await runOnce(env, session, await makeHellos(), b, concurrency));
        env.requests.length = 0; // the recorder is for tests; do not let it grow
      }
      const hps = median(results.map((x) => x.hellosPerSecond));
      const rps = median(results.map((x) => x.requestsPerSecond));
      modes.push({ batch: b, hellosPerSecond: hps, requestsPerSecond: rps, hellosPerRequest: round(hps / rps), runs: results });
      log(`batch ${b}: ${hps} hellos/s, ${rps} verify requests/s (median of ${runs} runs of ${n} hellos, ${concurrency} outstanding)`);
    }
    const [unbatched, batched] = modes as [ModeResult, ModeResult];
    const ratio = round(batched.hellosPerSecond / unbatched.hellosPerSecond);
    log(`batched/unbatched hellos/s ratio: ${ratio}x`);
    return { hellos: n, concurrency, unbatched, batched, ratio };
  } finally {
    await env.dispose();
    await rm(pkiDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchBackend();
  const out = new URL('./results/', import.meta.url);
  await mkdir(out, { recursive: true });
  await writeFile(new URL('backend.json', out), `${JSON.stringify({ at: new Date().toISOString(), ...result }, null, 2)}\n`);
}
