/**
 * Protocol v2 full authentications against v1's, in the same run (issue #15's bench acceptance):
 * the sustained closed loop of the `sustained` phase (same pool, same duration) with every
 * peripheral speaking v2 — a fresh ephemeral X25519 key on both sides per exchange, the welcome
 * and its grant checked, the session keys derived on both sides — and the daemon's CPU per auth
 * as a ratio to its CPU for the two no-auth round trips an auth contains (`echo`).
 */
import type { Phase } from '../phase.js';
import { closePools, closedLoop, connectPools, type ThroughputResult } from '../scenarios.js';
import { fmt, round } from '../stats.js';
import { sizes } from './sizes.js';

interface CpuPerAuth {
  daemonUsPerAuth: number;
  generatorUsPerAuth: number;
  backendUsPerAuth: number;
}

/** What was measured and what bounds the rest (docs/performance.md, under this phase). */
const NOTES = `A v2 auth here is a re-authentication on a live connection: the gateway ends the previous session
with \`bye replaced\` (one AES-CCM seal, one more down message) before its challenge, so the
daemon sends three messages and two PUBACKs per auth against v1's two and two.

What bounds the ratio to the two no-auth round trips is the cryptography a v2 auth cannot do
without: one Ed25519 signature (the welcome; the lease's verification is skipped when the
backend answers a lease the gateway already verified, as it does for a device that authenticates
again within half its lease), an X25519 key pair and one X25519 agreement, six HMAC-SHA-256 (the key schedule) and
one AES-CCM seal. Measured alone on this machine they take about as long as the two round trips
themselves (docs/performance-history.md, "Protocol v2 auth cost", with the profile before and
after). Moved so far: raw keys pass through node:crypto as JWK instead of DER (OpenSSL 3's DER
decoder cost more than the X25519 arithmetic; daemon CPU per v2 auth −20 % in a paired A/B), and
one log line per welcome instead of two. Tried and left: corking the socket so a PUBACK and its
reply share a write (aedes writes the PUBACK a loop turn later; no change in writes or CPU).
Next: signatures on libuv's thread pool, garbage per exchange, the backend client's per-request
work.`;

export const v2Phase: Phase = {
  key: 'v2',
  title: 'Protocol v2 full authentications against v1 (same run)',
  needs: ['echo', 'sustained'],
  async run(ctx) {
    const { pool, throughputGens, durationMs } = sizes(ctx);
    const gens = ctx.gens.slice(0, throughputGens);
    const gw = await ctx.startGateway('v2');
    let v2: ThroughputResult;
    try {
      await connectPools(gens, ctx.env, ctx.v2Devices.slice(0, pool * throughputGens), gw.port, 2);
      v2 = await closedLoop(gens, gw, { runs: ctx.runs, durationMs });
      await closePools(gens);
    } finally {
      await gw.stop();
    }
    const fails = Object.entries(v2.failures);
    ctx.log(`      v2 sustained ${fmt(v2.authsPerSec, '/s')}, p50 ${fmt(v2.p50, ' ms')}, p99 ${fmt(v2.p99, ' ms')}${fails.length > 0 ? `; failures ${JSON.stringify(v2.failures)}` : ''}`);
    const echo = ctx.earlier.echo as { daemonUsPerRoundTrip: number };
    const v1 = ctx.earlier.sustained as { sustained: ThroughputResult; cpuPerOp: CpuPerAuth };
    const rate = v2.authsPerSec.median;
    const v1Rate = v1.sustained.authsPerSec.median;
    const cpu: CpuPerAuth = {
      daemonUsPerAuth: Math.round((v2.load.daemonCpu / rate) * 1e6),
      generatorUsPerAuth: Math.round((v2.load.generatorCpu / rate) * 1e6),
      backendUsPerAuth: Math.round((v2.load.backendCpu / rate) * 1e6),
    };
    const ofV1 = round(rate / v1Rate, 2);
    const twoRoundTrips = 2 * echo.daemonUsPerRoundTrip;
    const ratio = round(cpu.daemonUsPerAuth / twoRoundTrips, 1);
    const v1Ratio = round(v1.cpuPerOp.daemonUsPerAuth / twoRoundTrips, 1);
    const c = v1.cpuPerOp;
    return {
      summary: { sustained: v2, ofV1Rate: ofV1, cpuPerOp: cpu, daemonOverTwoRoundTrips: ratio, v1DaemonOverTwoRoundTrips: v1Ratio },
      rows: [
        [`**sustained v2 full authentications/s** (${pool * throughputGens} connections, ephemeral X25519 both sides, every welcome and grant checked)`, fmt(v2.authsPerSec)],
        ['… as a fraction of v1 (`sustained`, same run)', `${Math.round(ofV1 * 100)} % (${rate} vs ${v1Rate}/s)`],
        ['… latency in that closed loop, p50 / p99 (ms)', `${v2.p50.median} / ${v2.p99.median}`],
        ['CPU per v2 auth: daemon / peripheral side (generators) / backend (µs)', `${cpu.daemonUsPerAuth} / ${cpu.generatorUsPerAuth} / ${cpu.backendUsPerAuth}`],
        ['CPU per v1 auth, same run: daemon / generators / backend (µs)', `${c.daemonUsPerAuth} / ${c.generatorUsPerAuth} / ${c.backendUsPerAuth}`],
        ['daemon CPU per v2 auth ÷ its CPU for the two no-auth round trips an auth contains', `${ratio}x (${cpu.daemonUsPerAuth} µs vs 2 × ${echo.daemonUsPerRoundTrip} µs)`],
        ['… the same for v1', `${v1Ratio}x (${c.daemonUsPerAuth} µs vs 2 × ${echo.daemonUsPerRoundTrip} µs)`],
        ['cores used in the v2 run: daemon / generators / backend', `${v2.load.daemonCpu} / ${v2.load.generatorCpu} / ${v2.load.backendCpu}`],
      ],
      targets: [
        { target: "v2 auths/s >= 90% of v1's", value: `${Math.round(ofV1 * 100)}% (${rate} vs ${v1Rate}/s)`, met: ofV1 >= 0.9 },
        { target: 'daemon CPU per v2 auth <= 2x the two no-auth round trips', value: `${ratio}x (${cpu.daemonUsPerAuth} µs vs 2 × ${echo.daemonUsPerRoundTrip} µs; v1 ${v1Ratio}x)`, met: ratio <= 2 },
        { target: 'no failed v2 exchange', value: fails.length === 0 ? '0' : JSON.stringify(v2.failures), met: fails.length === 0 },
      ],
      notes: NOTES,
    };
  },
};
