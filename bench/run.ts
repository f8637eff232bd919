/**
 * `npm run bench`: Gatehouse against its limit, in one run on this machine. Prints a table and
 * writes bench/results/latest.json and bench/results/latency.svg. Method and targets:
 * docs/performance.md.
 *
 * Options: --quick (small sizes, for checking the harness), --runs N, --storm N, --skip-micro
 * (leave out the TPM and backend-client micro benches), --host-network (the host's kernel limits
 * instead of the shipped sysctl drop-in in a private network namespace; bench/netns.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchBackend } from './backend.js';
import { BenchEnv, Daemon, Generator } from './harness.js';
import { enterBenchNetwork } from './netns.js';
import { closePools, closedLoop, connectPools, naive, openLoop, storm, stormRuns } from './scenarios.js';
import { fmt, round, spread } from './stats.js';
import { latencySvg } from './svg.js';
import { benchTpm } from './tpm.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    runs: { type: 'string' },
    storm: { type: 'string' },
    'skip-micro': { type: 'boolean' },
    'log-level': { type: 'string' },
    'host-network': { type: 'boolean' },
  },
});
// As root: re-run in a private network namespace with systemd/gatehouse.sysctl.conf applied.
const network = enterBenchNetwork(values['host-network'] === true);
const quick = values.quick === true;
const RUNS = Math.max(quick ? 1 : 3, Number(values.runs ?? 3));
const STORM = Number(values.storm ?? (quick ? 1000 : 10_000));
const HOLD = quick ? 500 : 5000;
const POOL = quick ? 64 : 128; // connections per throughput generator
const THROUGHPUT_GENS = 2;
const STORM_GENS = 4;
const DURATION = quick ? 2000 : 5000;
const OPEN_DURATION = quick ? 2000 : 4000;
const LOG_LEVEL = values['log-level'] ?? 'info';
const TPM_MODEL_MS = 69;

const root = fileURLToPath(new URL('..', import.meta.url));
const results = fileURLToPath(new URL('./results/', import.meta.url));
const log = (s: string): void => console.log(s);

log(`Gatehouse bench ${quick ? '(quick) ' : ''}— ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
log(
  network.kind === 'netns'
    ? `network: private namespace (loopback) with systemd/gatehouse.sysctl.conf: somaxconn ${network.somaxconn}, tcp_max_syn_backlog ${network.tcpMaxSynBacklog}`
    : `network: the host's (${network.note ?? ''}): somaxconn ${network.somaxconn}, tcp_max_syn_backlog ${network.tcpMaxSynBacklog}; a storm beyond somaxconn sees retries`,
);
log('compiling the daemon and workers (tsc --noCheck → bench/results/.dist) …');
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });

const startedAt = new Date().toISOString();
const loadAtStart = loadavg();
const dir = await mkdtemp(join(tmpdir(), 'gh-bench-'));
const env = await BenchEnv.create(dir, Math.max(STORM, HOLD, POOL * THROUGHPUT_GENS));
log(`environment: swtpm ${env.tcti}, backend ${env.backend.url}, ${env.devices.length} devices registered (bulk insert)`);
const gens = Array.from({ length: STORM_GENS }, () => new Generator());
const tgens = gens.slice(0, THROUGHPUT_GENS);
const pool = env.devices.slice(0, POOL * THROUGHPUT_GENS);

const startGateway = async (name: string, batchMax?: number): Promise<Daemon> => {
  const { file, log: logFile } = await env.writeConfig(name, { logLevel: LOG_LEVEL, ...(batchMax !== undefined ? { batchMax } : {}) });
  return Daemon.start('gateway-worker.js', [file, logFile]);
};

try {
  // 1. The limit: the same broker, no authentication work.
  log('[1/7] echo ceiling: request/response round trips through the embedded broker, no auth');
  const echo = await Daemon.start('echo-worker.js', ['100000']);
  await connectPools(tgens, env, pool, echo.port);
  const echoRt = await closedLoop(tgens, echo, { runs: RUNS, durationMs: DURATION, op: 'echo' });
  await closePools(tgens);
  await echo.stop();
  const ceiling = spread(echoRt.authsPerSec.runs.map((x) => x / 2));
  log(`      ${fmt(echoRt.authsPerSec)} round trips/s → ceiling ${ceiling.median} auths/s`);

  // 2. The gateway, default batching: idle memory, sustained rate, latency at fixed loads.
  log('[2/7] gateway (batch 64): idle RSS, sustained full authentications/s, open-loop latency');
  const gw = await startGateway('batched');
  await new Promise((r) => setTimeout(r, 1000));
  const idle = gw.memory();
  const statsStart = await gw.stats();
  await connectPools(tgens, env, pool, gw.port);
  const sustained = await closedLoop(tgens, gw, { runs: RUNS, durationMs: DURATION });
  log(`      sustained ${fmt(sustained.authsPerSec, '/s')}, p50 ${fmt(sustained.p50, ' ms')}, p99 ${fmt(sustained.p99, ' ms')}`);
  const fixed = quick ? [100, 250, 500] : [250, 500, 1000, 1500, 2000, 2500];
  const rates = [...new Set([...fixed, Math.round(sustained.authsPerSec.median / 2)])].sort((a, b) => a - b);
  const open = await openLoop(tgens, gw, { runs: RUNS, durationMs: OPEN_DURATION, rates });
  for (const p of open) log(`      offered ${p.rate}/s: achieved ${p.achieved.median}/s, p50 ${p.p50.median} ms, p95 ${p.p95.median} ms, p99 ${fmt(p.p99, ' ms')}`);
  const statsEnd = await gw.stats();
  await closePools(tgens);
  await gw.stop();

  // 3. Batching off.
  log('[3/7] gateway (batch 1): sustained full authentications/s');
  const gw1 = await startGateway('batch1', 1);
  await connectPools(tgens, env, pool, gw1.port);
  const unbatched = await closedLoop(tgens, gw1, { runs: RUNS, durationMs: DURATION });
  await closePools(tgens);
  await gw1.stop();
  log(`      sustained ${fmt(unbatched.authsPerSec, '/s')}`);

  // 4. The naive design.
  log(`[4/7] naive baseline: one backend request and one TPM signature (modelled ${TPM_MODEL_MS} ms, serial) per hello`);
  const naiveResult = await naive(env, { runs: RUNS, durationMs: DURATION, concurrency: 32, tpmMs: TPM_MODEL_MS });
  log(`      ${fmt(naiveResult.hellosPerSec, '/s')}`);

  // 5. Memory with many authenticated connections.
  log(`[5/7] memory: ${HOLD} authenticated connections held`);
  const gwHold = await startGateway('hold');
  await new Promise((r) => setTimeout(r, 1000));
  const idle2 = gwHold.memory();
  const held = await storm(gens, env, gwHold, env.devices.slice(0, HOLD), true);
  await new Promise((r) => setTimeout(r, 1000));
  const holdMem = gwHold.memory();
  await closePools(gens);
  await gwHold.stop();
  log(`      idle RSS ${round(idle2.rssMb)} MB; ${held.report.ok} held: RSS ${round(holdMem.rssMb)} MB`);

  // 6. Reconnect storms.
  log(`[6/7] reconnect storm: ${STORM} peripherals at once over ${STORM_GENS} generator processes, ${RUNS} runs`);
  const storms = await stormRuns(gens, env, { runs: RUNS, size: STORM, startDaemon: (n) => startGateway(n) });
  log(`      all welcomed in ${fmt(storms.allWelcomedSec, ' s')}, welcomed ${storms.welcomed.join('/')}, peak RSS ${fmt(storms.peakRssMb, ' MB')}, retried attempts ${storms.retries} ${JSON.stringify(storms.retried)}`);

  // 7. Micro benches of the parts (their owners' functions).
  let micro: { tpm?: unknown; backend?: unknown } = {};
  if (values['skip-micro'] !== true) {
    log('[7/7] micro benches: TPM (bench/tpm.ts), backend client (bench/backend.ts)');
    const quiet = (l: string): void => log(`      ${l}`);
    micro = { tpm: await benchTpm({ signs: quick ? 20 : 100, ffiCalls: 5000, log: quiet }), backend: await benchBackend({ hellos: quick ? 300 : 1000, log: quiet }) };
  }

  const totalAuths = statsEnd.hellos - statsStart.hellos;
  const summary = {
    at: startedAt,
    machine: { cores: cpus().length, model: cpus()[0]?.model, node: process.version, loadAtStart: loadAtStart.map((x) => round(x, 2)), loadAtEnd: loadavg().map((x) => round(x, 2)) },
    settings: { runs: RUNS, throughputGenerators: THROUGHPUT_GENS, connectionsPerGenerator: POOL, durationMs: DURATION, openLoopDurationMs: OPEN_DURATION, stormGenerators: STORM_GENS, logLevel: LOG_LEVEL, quick, network },
    echo: { roundTripsPerSec: echoRt.authsPerSec, ceilingAuthsPerSec: ceiling, load: echoRt.load },
    sustained,
    fractionOfCeiling: round(sustained.authsPerSec.median / ceiling.median, 2),
    // CPU time per operation: what a dedicated core would sustain is 1e6 / µs.
    cpuPerOp: {
      daemonUsPerAuth: Math.round((sustained.load.daemonCpu / sustained.authsPerSec.median) * 1e6),
      generatorUsPerAuth: Math.round((sustained.load.generatorCpu / sustained.authsPerSec.median) * 1e6),
      backendUsPerAuth: Math.round((sustained.load.backendCpu / sustained.authsPerSec.median) * 1e6),
      echoDaemonUsPerRoundTrip: Math.round((echoRt.load.daemonCpu / echoRt.authsPerSec.median) * 1e6),
    },
    openLoop: open,
    unbatched,
    batchedOverUnbatched: round(sustained.authsPerSec.median / unbatched.authsPerSec.median, 1),
    naive: naiveResult,
    overNaive: round(sustained.authsPerSec.median / naiveResult.hellosPerSec.median, 1),
    memory: { idleRssMb: round(idle.rssMb), idleRssMb2: round(idle2.rssMb), heldConnections: held.report.ok, heldRssMb: round(holdMem.rssMb), heldFailures: held.report.failures },
    storm: storms,
    tpm: { signaturesDuringThroughput: statsEnd.tpmSignatures - statsStart.tpmSignatures, authsDuringThroughput: totalAuths, backendBatches: statsEnd.batches - statsStart.batches },
    micro,
  };
  const halfLoad = open.reduce((best, p) => (Math.abs(p.rate - sustained.authsPerSec.median / 2) < Math.abs(best.rate - sustained.authsPerSec.median / 2) ? p : best), open[0] ?? { rate: 0, p99: spread([NaN]) });
  const thousand = open.find((p) => p.rate === 1000);
  const targets: [string, string, boolean][] = [
    ['sustained full auths/s >= 2000', `${sustained.authsPerSec.median}`, sustained.authsPerSec.median >= 2000],
    ['>= 50% of the no-auth ceiling', `${Math.round(summary.fractionOfCeiling * 100)}% of ${ceiling.median}`, summary.fractionOfCeiling >= 0.5],
    ['p99 <= 50 ms at 1000/s (half the target)', thousand === undefined ? 'n/a' : `${thousand.p99.median} ms`, thousand !== undefined && thousand.p99.median <= 50],
    [`p99 <= 50 ms at half the measured rate (${halfLoad.rate}/s)`, `${halfLoad.p99.median} ms`, halfLoad.p99.median <= 50],
    ['batched >= 10x batch size 1', `${summary.batchedOverUnbatched}x`, summary.batchedOverUnbatched >= 10],
    ['>= 100x the naive baseline', `${summary.overNaive}x`, summary.overNaive >= 100],
    [`storm of ${STORM}: all welcomed <= 15 s`, `${storms.allWelcomedSec.median} s`, storms.allWelcomedSec.max <= 15 && storms.welcomed.every((w) => w === STORM)],
    ['storm: 0 failures', JSON.stringify(storms.failures), Object.keys(storms.failures).length === 0],
    ['storm: daemon peak RSS <= 250 MB', `${storms.peakRssMb.max} MB`, storms.peakRssMb.max <= 250],
    ['idle RSS <= 70 MB', `${round(idle.rssMb)} MB`, idle.rssMb <= 70],
    [`${HOLD} authenticated connections <= 200 MB`, `${round(holdMem.rssMb)} MB`, holdMem.rssMb <= 200],
    ['<= 1 TPM signature per 10,000 auths', `${Math.max(...storms.tpmSignaturesTotal)} per ${STORM} (storm, incl. start); ${summary.tpm.signaturesDuringThroughput} during ${totalAuths}`, Math.max(...storms.tpmSignaturesTotal) <= 1],
  ];
  await writeFile(join(results, 'latest.json'), `${JSON.stringify({ ...summary, targets: targets.map(([t, v, ok]) => ({ target: t, value: v, met: ok })) }, null, 2)}\n`);
  const svgPoints = open.map((p) => ({ rate: p.rate, p50: p.p50.median, p95: p.p95.median, p99: p.p99.median }));
  await writeFile(
    join(results, 'latency.svg'),
    latencySvg(svgPoints, { title: 'Gatehouse: full MQTT authentication latency vs offered load', targetMs: 50, note: `${startedAt}, ${cpus().length} cores, load ${loadAtStart[0]?.toFixed(1)}; medians of ${RUNS} runs` }),
  );

  log('');
  log('| measure | median (min–max over runs) |');
  log('|---|---|');
  log(`| no-auth round trips/s (echo) | ${fmt(echoRt.authsPerSec)} |`);
  log(`| ceiling: auths/s = round trips / 2 | ${fmt(ceiling)} |`);
  log(`| sustained full auths/s (batch 64) | ${fmt(sustained.authsPerSec)} |`);
  log(`| sustained full auths/s (batch 1) | ${fmt(unbatched.authsPerSec)} |`);
  log(`| naive (1 request + modelled 69 ms TPM sign per hello) | ${fmt(naiveResult.hellosPerSec)} |`);
  for (const p of open) log(`| open loop ${p.rate}/s: p50 / p95 / p99 ms | ${p.p50.median} / ${p.p95.median} / ${fmt(p.p99)} |`);
  log(`| storm ${STORM}: all welcomed (s) | ${fmt(storms.allWelcomedSec)} |`);
  log(`| storm: daemon peak RSS (MB) | ${fmt(storms.peakRssMb)} |`);
  log(`| storm: retried attempts over all runs (connect failures, rejects) | ${storms.retries} |`);
  log(`| idle RSS (MB) | ${round(idle.rssMb)} |`);
  log(`| RSS with ${held.report.ok} authenticated connections (MB) | ${round(holdMem.rssMb)} |`);
  log(`| CPU during sustained run (cores): daemon / generators / backend | ${sustained.load.daemonCpu} / ${sustained.load.generatorCpu} / ${sustained.load.backendCpu} |`);
  log(`| daemon CPU per full auth / per no-auth round trip (µs) | ${summary.cpuPerOp.daemonUsPerAuth} / ${summary.cpuPerOp.echoDaemonUsPerRoundTrip} |`);
  log(`| generator CPU per auth (µs; the peripheral side) | ${summary.cpuPerOp.generatorUsPerAuth} |`);
  log('');
  for (const [t, v, ok] of targets) log(`${ok ? 'MET   ' : 'MISSED'}  ${t}: ${v}`);
  log(`\nwrote bench/results/latest.json and bench/results/latency.svg (load at end ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);
} finally {
  await Promise.all(gens.map((g) => g.kill()));
  await env.dispose();
}
