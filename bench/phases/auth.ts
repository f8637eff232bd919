/**
 * The authentication phases: the no-auth ceiling of the embedded broker (echo), the gateway's
 * sustained full authentications/s with open-loop latency, batching off, and the naive
 * one-request-and-one-TPM-signature-per-hello design.
 */
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../harness.js';
import type { Phase } from '../phase.js';
import { closePools, closedLoop, connectPools, naive, openLoop, type OpenLoopPoint, type ThroughputResult } from '../scenarios.js';
import { fmt, round, spread, type Spread } from '../stats.js';
import { latencySvg } from '../svg.js';
import { sizes } from './sizes.js';

const TPM_MODEL_MS = 69;

export const echoPhase: Phase = {
  key: 'echo',
  title: 'Ceiling: the embedded broker with no authentication',
  async run(ctx) {
    const { pool, throughputGens, durationMs } = sizes(ctx);
    const gens = ctx.gens.slice(0, throughputGens);
    const echo = await Daemon.start('echo-worker.js', ['100000']);
    try {
      await connectPools(gens, ctx.env, ctx.env.devices.slice(0, pool * throughputGens), echo.port);
      const rt = await closedLoop(gens, echo, { runs: ctx.runs, durationMs, op: 'echo' });
      await closePools(gens);
      const ceiling = spread(rt.authsPerSec.runs.map((x) => x / 2));
      const usPerRoundTrip = Math.round((rt.load.daemonCpu / rt.authsPerSec.median) * 1e6);
      ctx.log(`      ${fmt(rt.authsPerSec)} round trips/s → ceiling ${ceiling.median} auths/s; daemon ${usPerRoundTrip} µs per round trip`);
      return {
        summary: { roundTripsPerSec: rt.authsPerSec, ceilingAuthsPerSec: ceiling, daemonUsPerRoundTrip: usPerRoundTrip, load: rt.load },
        rows: [
          [`no-auth MQTT round trips/s through the daemon's broker (echo, ${pool * throughputGens} connections)`, fmt(rt.authsPerSec)],
          ['**ceiling**: auths/s = round trips ÷ 2', fmt(ceiling)],
          ['daemon CPU per no-auth round trip (µs)', `${usPerRoundTrip}`],
        ],
        targets: [],
      };
    } finally {
      await echo.stop();
    }
  },
};

export const sustainedPhase: Phase = {
  key: 'sustained',
  title: 'Sustained full authentications and latency (batch 64)',
  needs: ['echo'],
  async run(ctx) {
    const { pool, throughputGens, durationMs, openDurationMs } = sizes(ctx);
    const gens = ctx.gens.slice(0, throughputGens);
    const gw = await ctx.startGateway('batched');
    let sustained: ThroughputResult;
    let open: OpenLoopPoint[];
    let idleRssMb: number;
    let stats: { hellos: number; tpmSignatures: number; batches: number };
    try {
      await new Promise((r) => setTimeout(r, 1000));
      idleRssMb = round(gw.memory().rssMb);
      const s0 = await gw.stats();
      await connectPools(gens, ctx.env, ctx.env.devices.slice(0, pool * throughputGens), gw.port);
      sustained = await closedLoop(gens, gw, { runs: ctx.runs, durationMs });
      ctx.log(`      sustained ${fmt(sustained.authsPerSec, '/s')}, p50 ${fmt(sustained.p50, ' ms')}, p99 ${fmt(sustained.p99, ' ms')}`);
      const fixed = ctx.quick ? [100, 250, 500] : [250, 500, 1000, 1500, 2000, 2500];
      const rates = [...new Set([...fixed, Math.round(sustained.authsPerSec.median / 2)])].sort((a, b) => a - b);
      open = await openLoop(gens, gw, { runs: ctx.runs, durationMs: openDurationMs, rates });
      for (const p of open) ctx.log(`      offered ${p.rate}/s: achieved ${p.achieved.median}/s, p50 ${p.p50.median} ms, p95 ${p.p95.median} ms, p99 ${fmt(p.p99, ' ms')}`);
      const s1 = await gw.stats();
      stats = { hellos: s1.hellos - s0.hellos, tpmSignatures: s1.tpmSignatures - s0.tpmSignatures, batches: s1.batches - s0.batches };
      await closePools(gens);
    } finally {
      await gw.stop();
    }
    const echo = ctx.earlier.echo as { ceilingAuthsPerSec: Spread; daemonUsPerRoundTrip: number };
    const rate = sustained.authsPerSec.median;
    const cpu = {
      daemonUsPerAuth: Math.round((sustained.load.daemonCpu / rate) * 1e6),
      generatorUsPerAuth: Math.round((sustained.load.generatorCpu / rate) * 1e6),
      backendUsPerAuth: Math.round((sustained.load.backendCpu / rate) * 1e6),
    };
    const fraction = round(rate / echo.ceilingAuthsPerSec.median, 2);
    const half = open.reduce((best, p) => (Math.abs(p.rate - rate / 2) < Math.abs(best.rate - rate / 2) ? p : best));
    const thousand = open.find((p) => p.rate === 1000);
    const svg = open.map((p) => ({ rate: p.rate, p50: p.p50.median, p95: p.p95.median, p99: p.p99.median }));
    if (ctx.full)
      await writeFile(
      join(ctx.root, 'bench/results/latency.svg'),
      latencySvg(svg, { title: 'Gatehouse: full MQTT authentication latency vs offered load', targetMs: 50, note: `${new Date().toISOString()}, ${cpus().length} cores; medians of ${ctx.runs} runs` }),
    );
    const openRows: [string, string][] = open.map((p) => [`open loop ${p.rate}/s (achieved ${p.achieved.median}/s): p50 / p95 / p99 ms`, `${p.p50.median} / ${p.p95.median} / ${fmt(p.p99)}`]);
    return {
      summary: { sustained, fractionOfCeiling: fraction, cpuPerOp: cpu, openLoop: open, idleRssMb, tpm: { signaturesDuringThroughput: stats.tpmSignatures, authsDuringThroughput: stats.hellos, backendBatches: stats.batches } },
      rows: [
        [`**sustained full mutual authentications/s** (batch 64, ${pool * throughputGens} connections, every welcome verified)`, fmt(sustained.authsPerSec)],
        ['… as a fraction of the ceiling', `${Math.round(fraction * 100)} %`],
        ['… latency in that closed loop, p50 / p99 (ms)', `${sustained.p50.median} / ${sustained.p99.median}`],
        ['CPU per full auth: daemon / peripheral side (generators) / backend (µs)', `${cpu.daemonUsPerAuth} / ${cpu.generatorUsPerAuth} / ${cpu.backendUsPerAuth}`],
        ['daemon CPU per auth ÷ its CPU for the two no-auth round trips an auth contains', `${round(cpu.daemonUsPerAuth / (2 * echo.daemonUsPerRoundTrip), 1)}x (${cpu.daemonUsPerAuth} µs vs 2 × ${echo.daemonUsPerRoundTrip} µs)`],
        ['cores used in the sustained run: daemon / generators / backend', `${sustained.load.daemonCpu} / ${sustained.load.generatorCpu} / ${sustained.load.backendCpu}`],
        ['daemon RSS idle (MB)', `${idleRssMb}`],
        [`TPM signatures during the throughput runs (${stats.hellos} auths, ${stats.batches} backend requests)`, `${stats.tpmSignatures}`],
        ...openRows,
      ],
      targets: [
        { target: 'sustained full auths/s >= 2000', value: `${rate}`, met: rate >= 2000 },
        { target: '>= 50% of the no-auth ceiling', value: `${Math.round(fraction * 100)}% of ${echo.ceilingAuthsPerSec.median}`, met: fraction >= 0.5 },
        { target: 'p99 <= 50 ms at 1000/s', value: thousand === undefined ? 'n/a' : `${thousand.p99.median} ms`, met: thousand !== undefined && thousand.p99.median <= 50 },
        { target: `p99 <= 50 ms at half the measured rate (${half.rate}/s)`, value: `${half.p99.median} ms`, met: half.p99.median <= 50 },
        { target: 'idle RSS <= 70 MB', value: `${idleRssMb} MB`, met: idleRssMb <= 70 },
        { target: '0 TPM signatures during the throughput runs', value: `${stats.tpmSignatures} during ${stats.hellos}`, met: stats.tpmSignatures === 0 },
      ],
      notes: '![latency against offered load](../bench/results/latency.svg)',
    };
  },
};

export const batchingPhase: Phase = {
  key: 'batching',
  title: 'Batching off, and the naive design',
  needs: ['sustained'],
  async run(ctx) {
    const { pool, throughputGens, durationMs } = sizes(ctx);
    const gens = ctx.gens.slice(0, throughputGens);
    const gw1 = await ctx.startGateway('batch1', { batchMax: 1 });
    let unbatched: ThroughputResult;
    try {
      await connectPools(gens, ctx.env, ctx.env.devices.slice(0, pool * throughputGens), gw1.port);
      unbatched = await closedLoop(gens, gw1, { runs: ctx.runs, durationMs });
      await closePools(gens);
    } finally {
      await gw1.stop();
    }
    ctx.log(`      batch size 1: sustained ${fmt(unbatched.authsPerSec, '/s')}`);
    ctx.log(`      naive: one backend request and one TPM signature (modelled ${TPM_MODEL_MS} ms, serial) per hello`);
    const naiveResult = await naive(ctx.env, { runs: ctx.runs, durationMs, concurrency: 32, tpmMs: TPM_MODEL_MS });
    ctx.log(`      naive ${fmt(naiveResult.hellosPerSec, '/s')}`);
    const batched = (ctx.earlier.sustained as { sustained: ThroughputResult }).sustained.authsPerSec.median;
    const overUnbatched = round(batched / unbatched.authsPerSec.median, 1);
    const overNaive = round(batched / naiveResult.hellosPerSec.median, 1);
    return {
      summary: { unbatched, batchedOverUnbatched: overUnbatched, naive: naiveResult, overNaive },
      rows: [
        ['sustained with batching off (batch size 1)', fmt(unbatched.authsPerSec)],
        ['batched ÷ batch size 1', `${overUnbatched}x`],
        [`naive baseline (1 backend request + 1 TPM signature per hello; TPM **modelled** at ${TPM_MODEL_MS} ms, serial), hellos/s`, fmt(naiveResult.hellosPerSec)],
        ['batched ÷ naive', `${overNaive}x`],
      ],
      targets: [
        { target: 'batched >= 10x batch size 1', value: `${overUnbatched}x`, met: overUnbatched >= 10 },
        { target: '>= 100x the naive baseline', value: `${overNaive}x`, met: overNaive >= 100 },
      ],
    };
  },
};
