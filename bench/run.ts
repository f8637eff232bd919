/**
 * `npm run bench`: Gatehouse against its limits, every phase (bench/phases/) in one run on this
 * machine, so that ratios compare like with like. Prints each phase's table and targets, writes
 * bench/results/latest.json, and regenerates docs/performance.md from it
 * (bench/performance.md.tmpl; never edit the generated file by hand).
 *
 * Options: --quick (small sizes, for checking the harness; writes bench/results/quick.json and
 * not the docs), --only KEY[,KEY] (those phases and what they need; writes
 * bench/results/only-KEYS.json and not the docs), --runs N, --log-level L, --host-network (the
 * host's kernel limits instead of the shipped sysctl drop-in in a private network namespace;
 * bench/netns.ts), --list. Environment: BENCH_STORM (storm size), BENCH_LEASES (cached leases).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchEnv, Daemon, Generator, shippedNofile } from './harness.js';
import { enterBenchNetwork } from './netns.js';
import type { PhaseContext, PhaseResult } from './phase.js';
import { PHASES, selectPhases } from './phases/index.js';
import { renderPerformanceDoc, type BenchReport } from './report.js';
import { round } from './stats.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    only: { type: 'string' },
    runs: { type: 'string' },
    'log-level': { type: 'string' },
    'host-network': { type: 'boolean' },
    list: { type: 'boolean' },
  },
});
const log = (s: string): void => console.log(s);
if (values.list === true) {
  for (const p of PHASES) log(`${p.key.padEnd(10)} ${p.title}${p.needs !== undefined ? ` (needs ${p.needs.join(', ')})` : ''}`);
  process.exit(0);
}
const only = values.only?.split(',').map((k) => k.trim()).filter((k) => k !== '');
const phases = selectPhases(only);
// As root: re-run in a private network namespace with systemd/gatehouse.sysctl.conf applied.
const network = enterBenchNetwork(values['host-network'] === true);
const quick = values.quick === true;
const runs = Math.max(quick ? 1 : 3, Number(values.runs ?? 3));
const logLevel = values['log-level'] ?? 'info';
const root = fileURLToPath(new URL('..', import.meta.url));
const results = join(root, 'bench/results');
const STORM_GENS = 4;
const DEVICES = Math.max(Number(process.env.BENCH_STORM ?? (quick ? 1000 : 10_000)), 5000, 512);

log(`Gatehouse bench ${quick ? '(quick) ' : ''}— ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load ${loadavg().map((x) => x.toFixed(2)).join(' ')}; phases: ${phases.map((p) => p.key).join(', ')}`);
log(
  network.kind === 'netns'
    ? `network: private namespace (loopback) with systemd/gatehouse.sysctl.conf: somaxconn ${network.somaxconn}, tcp_max_syn_backlog ${network.tcpMaxSynBacklog}`
    : `network: the host's (${network.note ?? ''}): somaxconn ${network.somaxconn}, tcp_max_syn_backlog ${network.tcpMaxSynBacklog}; a storm beyond somaxconn sees retries`,
);
log('compiling the daemon and workers (tsc --noCheck → bench/results/.dist) …');
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });

const startedAt = new Date().toISOString();
const loadAtStart = loadavg();
const V2_DEVICES = 1024;
const env = await BenchEnv.create(await mkdtemp(join(tmpdir(), 'gh-bench-')), DEVICES + V2_DEVICES);
log(`environment: swtpm ${env.tcti}, backend ${env.backend.url}, ${env.devices.length} devices registered (bulk insert; the last ${V2_DEVICES} for the v2 phases)`);
const gens = Array.from({ length: STORM_GENS }, () => new Generator());
const earlier: Record<string, Record<string, unknown>> = {};
const done: { key: string; title: string; result: PhaseResult }[] = [];
const full = !quick && only === undefined;
const ctx: PhaseContext = {
  quick,
  full,
  runs,
  env,
  v2Devices: env.devices.slice(DEVICES),
  gens,
  root,
  log,
  earlier,
  async startGateway(name, o = {}) {
    const { file, log: logFile } = await env.writeConfig(name, { logLevel, ...o });
    return Daemon.start('gateway-worker.js', [file, logFile], o.profile === 'shipped' ? { nofile: shippedNofile() } : {});
  },
};
try {
  for (const [i, phase] of phases.entries()) {
    log(`[${i + 1}/${phases.length}] ${phase.key}: ${phase.title} (load ${loadavg()[0]?.toFixed(2)})`);
    const result = await phase.run(ctx);
    earlier[phase.key] = result.summary;
    done.push({ key: phase.key, title: phase.title, result });
  }
} finally {
  await Promise.all(gens.map((g) => g.kill()));
  await env.dispose();
}

const report: BenchReport = {
  at: startedAt,
  machine: { cores: cpus().length, model: cpus()[0]?.model ?? '?', node: process.version, loadAtStart: loadAtStart.map((x) => round(x, 2)), loadAtEnd: loadavg().map((x) => round(x, 2)) },
  settings: { runs, quick, logLevel, stormGenerators: STORM_GENS, network, only: only ?? null },
  phases: done.map((d) => ({ key: d.key, title: d.title, ...d.result })),
};
log('');
for (const d of done) {
  log(`## ${d.title}`);
  for (const [m, v] of d.result.rows) log(`| ${m} | ${v} |`);
  for (const t of d.result.targets) log(`${t.met ? 'MET   ' : 'MISSED'}  ${t.target}: ${t.value}`);
  log('');
}
const out = full ? 'latest.json' : quick ? 'quick.json' : `only-${(only ?? []).join('-')}.json`;
await writeFile(join(results, out), `${JSON.stringify(report, null, 2)}\n`);
if (full) {
  await writeFile(join(root, 'docs/performance.md'), await renderPerformanceDoc(report, join(root, 'bench/performance.md.tmpl')));
  log('wrote bench/results/latest.json and docs/performance.md');
} else log(`wrote bench/results/${out} (docs/performance.md is written by a full run only)`);
log(`load at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
