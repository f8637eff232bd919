/**
 * `node --import tsx bench/profile.ts [--seconds N] [--out DIR] [--batch N] [--generators] [--storm N] [--rate R] [--v2] [--no-prof] [--host-network] [--shipped]`:
 * one closed-loop sustained run (`--v2`: of protocol-v2 peripherals) (or with --storm, one reconnect storm of N peripherals;
 * with --rate, an open loop at R auths/s) against the daemon under `node --cpu-prof`, then a summary of where
 * the daemon's CPU went (self time by function and by package); `--generators` profiles the load
 * generators too; `--shipped` runs the daemon on the shipped limits as the bench's storm phase does. For hot-path work (docs/performance.md); the numbers
 * that count come from `npm run bench`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchEnv, Daemon, Generator, shippedNofile } from './harness.js';
import { enterBenchNetwork } from './netns.js';
import { closePools, closedLoop, connectPools, cpuSecondsOf, openLoop, storm } from './scenarios.js';
import { fmt } from './stats.js';

const { values } = parseArgs({ options: { seconds: { type: 'string' }, out: { type: 'string' }, batch: { type: 'string' }, top: { type: 'string' }, generators: { type: 'boolean' }, storm: { type: 'string' }, rate: { type: 'string' }, 'no-prof': { type: 'boolean' }, 'host-network': { type: 'boolean' }, shipped: { type: 'boolean' }, v2: { type: 'boolean' } } });
// As bench/run.ts: the shipped sysctl limits in a private network namespace when root.
const network = enterBenchNetwork(values['host-network'] === true);
console.log(`network: ${network.kind}${network.note !== undefined ? ` (${network.note})` : ''}, somaxconn ${network.somaxconn}`);
const root = fileURLToPath(new URL('..', import.meta.url));
const out = values.out ?? (await mkdtemp(join(tmpdir(), 'gh-prof-')));
if (values['no-prof'] !== true) process.env.BENCH_CPU_PROF = out;
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });

const dir = await mkdtemp(join(tmpdir(), 'gh-bench-'));
const STORM = values.storm === undefined ? 0 : Number(values.storm);
const VERSION = values.v2 === true ? 2 : 1;
const env = await BenchEnv.create(dir, Math.max(256, STORM));
const gens = Array.from({ length: STORM > 0 ? 4 : 2 }, () => new Generator());
try {
  const shipped = values.shipped === true;
  const { file, log } = await env.writeConfig('profile', { logLevel: 'info', ...(shipped ? { profile: 'shipped' as const } : {}), ...(values.batch !== undefined ? { batchMax: Number(values.batch) } : {}) });
  const gw = await Daemon.start('gateway-worker.js', [file, log], shipped ? { nofile: shippedNofile() } : {});
  // The daemon's own histograms (status socket /metrics): means over the measured phase.
  const scrape = (): string => execFileSync('curl', ['-s', '--max-time', '5', '--unix-socket', join(dir, 'run', 'status-profile.sock'), 'http://gatehouse/metrics']).toString();
  let before = scrape();
  if (STORM > 0) {
    // --storm N: one reconnect storm of N peripherals over 4 generators (as bench/run.ts [6/7]).
    const cpu0 = cpuSecondsOf(gw.pid);
    const s = await storm(gens, env, gw, env.devices.slice(0, STORM), true);
    const cpu = cpuSecondsOf(gw.pid) - cpu0;
    console.log(`storm ${STORM}: all welcomed in ${((s.lastDoneAt - s.startAt) / 1000).toFixed(1)} s, welcomed ${s.report.ok}, retries ${s.retries} ${JSON.stringify(s.retried)}, failures ${JSON.stringify(s.report.failures)}; daemon CPU ${cpu.toFixed(1)} s (${Math.round((cpu / STORM) * 1e6)} µs per peripheral), peak RSS ${gw.memory().peakMb.toFixed(0)} MB`);
  } else if (values.rate !== undefined) {
    // --rate R: open loop at R auths/s (latency from the scheduled start).
    await connectPools(gens, env, env.devices.slice(0, 256), gw.port, VERSION);
    // Warm up first (JIT, pools), as bench/run.ts's open loop follows its sustained runs.
    await closedLoop(gens, gw, { runs: 1, durationMs: 2000 });
    before = scrape();
    const [p] = await openLoop(gens, gw, { runs: 1, durationMs: Number(values.seconds ?? 8) * 1000, rates: [Number(values.rate)] });
    if (p !== undefined) console.log(`open loop ${p.rate}/s: achieved ${p.achieved.median}/s, p50 ${p.p50.median} ms, p95 ${p.p95.median} ms, p99 ${p.p99.median} ms; daemon ${p.load.daemonCpu} cores`);
  } else {
    await connectPools(gens, env, env.devices.slice(0, 256), gw.port, VERSION);
    const r = await closedLoop(gens, gw, { runs: 1, durationMs: Number(values.seconds ?? 8) * 1000 });
    console.log(`sustained ${fmt(r.authsPerSec, '/s')}; daemon ${r.load.daemonCpu} cores → ${Math.round((r.load.daemonCpu / r.authsPerSec.median) * 1e6)} µs/auth; generators ${r.load.generatorCpu}, backend ${r.load.backendCpu}`);
  }
  const after = scrape();
  const mean = (name: string, label: string): string => {
    const v = (m: string, part: string): number => Number(new RegExp(`^${name}_${part}\\{${label}\\} (\\S+)$`, 'm').exec(m)?.[1] ?? 0);
    const count = v(after, 'count') - v(before, 'count');
    return count === 0 ? 'n/a' : `${(((v(after, 'sum') - v(before, 'sum')) / count) * 1000).toFixed(2)} ms mean of ${count}`;
  };
  const lag = (q: string): string => (Number(new RegExp(`^gatehouse_nodejs_eventloop_lag_${q}_seconds (\\S+)$`, 'm').exec(after)?.[1] ?? Number.NaN) * 1000).toFixed(1);
  console.log(`daemon event-loop lag since start (ms): p50 ${lag('p50')}, p99 ${lag('p99')}, max ${lag('max')}`);
  console.log(`daemon, measured phase only: hello→welcome ${mean('gatehouse_decision_duration_seconds', 'transport="mqtt",outcome="welcome"')}; backend verify request ${mean('gatehouse_backend_request_duration_seconds', 'call="verify"')}`);
  await closePools(gens);
  await gw.stop();
} finally {
  // A generator exits on disconnect (writing its profile); SIGKILL would lose the profile.
  await Promise.all(gens.map((g) => new Promise<void>((resolve) => {
    const timer = setTimeout(() => void g.kill().then(resolve), 10_000);
    g.child.once('exit', () => { clearTimeout(timer); resolve(); });
    if (g.child.connected) g.child.disconnect();
    else void g.kill().then(resolve);
  })));
  await env.dispose();
}

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const files = (await readdir(out)).filter((f) => f.endsWith('.cpuprofile'));
for (const f of files) {
  const p = JSON.parse(await readFile(join(out, f), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  let total = 0;
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') continue;
    total += t;
    const url = n.callFrame.url.replace(/^file:\/\//, '');
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    const where = m?.[1] ?? (url.includes('/.dist/') ? url.split('/.dist/')[1]!.split('/').slice(0, 2).join('/') : url.startsWith('node:') ? url : url === '' ? n.callFrame.functionName : url);
    pkg.set(where, (pkg.get(where) ?? 0) + t);
    const k = `${n.callFrame.functionName || '(anon)'} ${url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
    fn.set(k, (fn.get(k) ?? 0) + t);
  }
  const top = (m: Map<string, number>, n: number): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`).join('\n');
  console.log(`\n${f}: busy ${(total / 1e6).toFixed(2)} s\n-- by package/area --\n${top(pkg, 25)}\n-- by function (self) --\n${top(fn, Number(values.top ?? 40))}`);
}
