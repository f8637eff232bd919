/**
 * `node --import tsx bench/profile.ts [--seconds N] [--out DIR] [--batch N] [--generators]`: one
 * closed-loop sustained run against the daemon under `node --cpu-prof`, then a summary of where
 * the daemon's CPU went (self time by function and by package); `--generators` profiles the load
 * generators too. For hot-path work (docs/performance.md); the numbers
 * that count come from `npm run bench`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchEnv, Daemon, Generator } from './harness.js';
import { closePools, closedLoop, connectPools } from './scenarios.js';
import { fmt } from './stats.js';

const { values } = parseArgs({ options: { seconds: { type: 'string' }, out: { type: 'string' }, batch: { type: 'string' }, top: { type: 'string' }, generators: { type: 'boolean' } } });
const root = fileURLToPath(new URL('..', import.meta.url));
const out = values.out ?? (await mkdtemp(join(tmpdir(), 'gh-prof-')));
process.env.BENCH_CPU_PROF = out;
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });

const dir = await mkdtemp(join(tmpdir(), 'gh-bench-'));
const env = await BenchEnv.create(dir, 256);
// --generators: profile the load generators (the simulated peripherals) as well.
if (values.generators === true) process.env.BENCH_CPU_PROF_GENERATORS = '1';
const gens = [new Generator(), new Generator()];
try {
  const { file, log } = await env.writeConfig('profile', { logLevel: 'info', ...(values.batch !== undefined ? { batchMax: Number(values.batch) } : {}) });
  const gw = await Daemon.start('gateway-worker.js', [file, log]);
  await connectPools(gens, env, env.devices.slice(0, 256), gw.port);
  const r = await closedLoop(gens, gw, { runs: 1, durationMs: Number(values.seconds ?? 8) * 1000 });
  console.log(`sustained ${fmt(r.authsPerSec, '/s')}; daemon ${r.load.daemonCpu} cores → ${Math.round((r.load.daemonCpu / r.authsPerSec.median) * 1e6)} µs/auth; generators ${r.load.generatorCpu}, backend ${r.load.backendCpu}`);
  await closePools(gens);
  await gw.stop();
} finally {
  await Promise.all(gens.map((g) => g.kill()));
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
