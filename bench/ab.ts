/**
 * Two ways to compare, both by paired closed-loop runs that alternate (ABBA order), so the
 * machine's drift hits both alike. This machine's noise is ±15% between runs minutes apart:
 * compare sides only within one ab run.
 *
 * `node --import tsx bench/ab.ts 'K=V,…' 'K=V,…' [rounds] [seconds] [version]`: two daemon
 * settings of this build, given as environment variables (e.g.
 * BENCH_DAEMON_FLAGS=--max-semi-space-size=32, or BENCH_DAEMON_DIST=DIR for another build: a copy
 * of bench/results/.dist/bench/ made before a change); `version` 2 runs protocol-v2 peripherals.
 * Both daemons run side by side, each with its own two generators. Prints medians and how many
 * rounds B won.
 *
 * `node --import tsx bench/ab.ts --commit A --commit B [--rounds N] [--seconds S] [--storm N]`:
 * two commits, each in a temporary worktree running its own bench harness (bench/ab-commits.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchEnv, Daemon, Generator } from './harness.js';
import { closePools, closedLoop, connectPools } from './scenarios.js';
if (process.argv.slice(2).some((a) => a === '--commit' || a.startsWith('--commit='))) {
  const { abCommits } = await import('./ab-commits.js');
  const { EXIT_USAGE, UsageError } = await import('../common/cli-io.js');
  try {
    await abCommits(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`bench/ab.ts: ${err.message}`);
    process.exit(EXIT_USAGE);
  }
  process.exit(0);
}
const root = fileURLToPath(new URL('..', import.meta.url));
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });
const [envA = '', envB = '', rounds = '6', secs = '4', version = '1'] = process.argv.slice(2);
const env = await BenchEnv.create(await mkdtemp(join(tmpdir(), 'gh-ab-')), 512);
const sides: { name: string; gw: Daemon; gens: Generator[]; rates: number[]; us: number[] }[] = [];
let i = 0;
for (const spec of [envA, envB]) {
  for (const kv of spec.split(',').filter(Boolean)) { const eq = kv.indexOf('='); process.env[kv.slice(0, eq)] = kv.slice(eq + 1); }
  const { file, log } = await env.writeConfig(`ab${i}`, { logLevel: 'info' });
  const gw = await Daemon.start('gateway-worker.js', [file, log]);
  for (const kv of spec.split(',').filter(Boolean)) delete process.env[kv.split('=')[0]!];
  const gens = [new Generator(), new Generator()];
  await connectPools(gens, env, env.devices.slice(i * 256, (i + 1) * 256), gw.port, version === '2' ? 2 : 1);
  sides.push({ name: spec || '(default)', gw, gens, rates: [], us: [] });
  i += 1;
}
for (let r = 0; r < Number(rounds); r++) {
  for (const s of (r % 2 === 0 ? sides : [...sides].reverse())) {
    const res = await closedLoop(s.gens, s.gw, { runs: 1, durationMs: Number(secs) * 1000 });
    s.rates.push(res.authsPerSec.median);
    s.us.push(Math.round((res.load.daemonCpu / res.authsPerSec.median) * 1e6));
  }
}
const med = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];
for (const s of sides) console.log(`${s.name}: auths/s median ${med(s.rates)} [${s.rates.join(' ')}]; daemon µs/auth median ${med(s.us)} [${s.us.join(' ')}]`);
const wins = sides[0]!.rates.filter((a, k) => a < sides[1]!.rates[k]!).length;
console.log(`B faster than A in ${wins}/${rounds} rounds`);
for (const s of sides) { await closePools(s.gens); await Promise.all(s.gens.map((g) => g.kill())); await s.gw.stop(); }
await env.dispose();
