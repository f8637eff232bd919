/**
 * TPM benchmarks on a real swtpm: ES256 sign latency through the whole key store (rate limiter,
 * serial queue, checker, koffi async call, TPM, self-verification), and the FFI overhead per call.
 *
 * Run directly: `node --import tsx bench/tpm.ts` (writes bench/results/tpm.json too), or call
 * `benchTpm()` from the bench runner.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CheckedTss } from '../tpm/ffi/checked.js';
import { p256VerifyDigest } from '../tpm/p256.js';
import { provisionTpmKey } from '../tpm/provision.js';
import { TpmConnection } from '../tpm/tpm-connection.js';
import { TpmKeyStore } from '../tpm/tpm-key-store.js';
import { Swtpm } from '../testkit/swtpm.js';

export interface TpmBenchOptions {
  /** Signatures to time (default 200). */
  signs?: number;
  /** Trivial FFI calls to time (default 20,000 sync, a tenth of that async). */
  ffiCalls?: number;
  /** Where progress lines go (default console.log). */
  log?: (line: string) => void;
}

export interface Stats {
  n: number;
  medianMs: number;
  p99Ms: number;
  meanMs: number;
}

export interface TpmBenchResult {
  tpm: 'swtpm';
  /** KeyStore.sign end to end. */
  sign: Stats;
  /** The software part of each sign: P-256 verification of the TPM's signature before release. */
  selfVerify: Stats;
  /** TPM2_GetRandom(16) on the bare checked context vs through TpmConnection (queue + reconnect logic). */
  getRandomBare: Stats;
  getRandomQueued: Stats;
  /** Nanoseconds per trivial call (Tss2_RC_Decode): a JS function, koffi sync, koffi async. */
  ffiNsPerCall: { jsBaseline: number; koffiSync: number; koffiAsync: number };
}

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  const round = (v: number): number => Math.round(v * 1000) / 1000;
  return { n: s.length, medianMs: round(at(0.5)), p99Ms: round(at(0.99)), meanMs: round(s.reduce((a, b) => a + b, 0) / s.length) };
}

async function timeEach(n: number, f: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    out.push(performance.now() - t);
  }
  return out;
}

/** Start a swtpm, provision a key, measure, and tear everything down. */
export async function benchTpm(opts: TpmBenchOptions = {}): Promise<TpmBenchResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const signs = opts.signs ?? 200;
  const ffiCalls = opts.ffiCalls ?? 20_000;
  const tpm = await Swtpm.start();
  const dir = await mkdtemp(join(tmpdir(), 'gh-bench-tpm-'));
  try {
    await provisionTpmKey({ tcti: tpm.tcti, stateDir: dir });

    const ks = new TpmKeyStore({ tcti: tpm.tcti, stateDir: dir, rateLimit: { burst: signs + 10, perSecond: 1000 } });
    await ks.open();
    const digests = Array.from({ length: signs }, (_, i) => new Uint8Array(createHash('sha256').update(`bench ${i}`).digest()));
    const sigs: Uint8Array[] = [];
    await ks.sign(digests[0] ?? new Uint8Array(32)); // warm-up
    const sign = stats(await timeEach(signs, async (i) => sigs.push(await ks.sign(digests[i] ?? new Uint8Array(32)))));
    const pub = createPublicKey({ key: Buffer.from(ks.publicKeySpkiDer()), format: 'der', type: 'spki' });
    const selfVerify = stats(await timeEach(signs, async (i) => p256VerifyDigest(pub, digests[i] ?? new Uint8Array(32), sigs[i] ?? new Uint8Array(64))));
    await ks.close();
    log(`tpm sign (swtpm, ${signs}x): median ${sign.medianMs} ms, p99 ${sign.p99Ms} ms (of which self-verify median ${selfVerify.medianMs} ms)`);

    const tss = CheckedTss.load();
    const ctx = await tss.open(tpm.tcti);
    let getRandomBare: Stats;
    try {
      getRandomBare = stats(await timeEach(200, () => tss.getRandom(ctx, 16)));
    } finally {
      tss.close(ctx);
    }
    const conn = new TpmConnection({ tcti: tpm.tcti });
    let getRandomQueued: Stats;
    try {
      getRandomQueued = stats(await timeEach(200, () => conn.run('bench', (t, c) => t.getRandom(c, 16))));
    } finally {
      await conn.close();
    }
    log(`TPM2_GetRandom(16): bare median ${getRandomBare.medianMs} ms, through the queue median ${getRandomQueued.medianMs} ms`);

    const jsDecode = (rc: number): string => (rc === 0 ? 'success' : `rc ${rc}`);
    let sink = 0;
    let t = process.hrtime.bigint();
    for (let i = 0; i < ffiCalls; i++) sink += jsDecode(i & 1).length;
    const jsBaseline = Number(process.hrtime.bigint() - t) / ffiCalls;
    t = process.hrtime.bigint();
    for (let i = 0; i < ffiCalls; i++) sink += tss.decode(i & 1).length;
    const koffiSync = Number(process.hrtime.bigint() - t) / ffiCalls;
    const asyncCalls = Math.max(1, Math.floor(ffiCalls / 10));
    t = process.hrtime.bigint();
    for (let i = 0; i < asyncCalls; i++) sink += (await tss.decodeAsync(i & 1)).length;
    const koffiAsync = Number(process.hrtime.bigint() - t) / asyncCalls;
    if (sink === 0) log('');
    const ffiNsPerCall = { jsBaseline: Math.round(jsBaseline), koffiSync: Math.round(koffiSync), koffiAsync: Math.round(koffiAsync) };
    log(`FFI per call (Tss2_RC_Decode): JS baseline ${ffiNsPerCall.jsBaseline} ns, koffi sync ${ffiNsPerCall.koffiSync} ns, koffi async ${ffiNsPerCall.koffiAsync} ns`);

    return { tpm: 'swtpm', sign, selfVerify, getRandomBare, getRandomQueued, ffiNsPerCall };
  } finally {
    await tpm.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchTpm();
  const out = new URL('./results/', import.meta.url);
  await mkdir(out, { recursive: true });
  await writeFile(new URL('tpm.json', out), `${JSON.stringify({ at: new Date().toISOString(), ...result }, null, 2)}\n`);
}
