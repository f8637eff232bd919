/**
 * `node --import tsx bench/ab.ts --commit A --commit B [--rounds N] [--seconds S] [--storm N]`:
 * an A/B of two commits by paired, alternating runs. Each commit gets a detached `git worktree`
 * in a temp dir (node_modules linked to this checkout's) and a long-lived side process there
 * (bench/ab-side.ts) that builds and drives that commit's own bench harness: its own backend,
 * swtpm, daemon and two load generators with 256 connections. After one uncounted closed loop
 * per side, each round runs on each side one closed loop of S seconds (after closedLoop's own
 * warm-up run) and, with --storm N (default 2,000; 0 skips it), one storm of N peripherals on a
 * fresh daemon; the order alternates (ABBA), so the machine's drift hits both alike. Prints each
 * side's runs and medians, the paired ratio B/A per round and its median, how many rounds B won,
 * a verdict per metric and the load average. Worktrees and processes are removed on every exit
 * path (also on Ctrl-C and SIGTERM).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from '../common/cli-io.js';
import type { ClosedAnswer, SideCommand, StormAnswer } from './ab-side.js';
import { ask, exited } from './ipc.js';
import { midMedian, round } from './stats.js';

/**
 * The verdict per metric: "within noise" when the median paired ratio B/A is within ±NOISE of 1;
 * a difference ("B worse/better by X%") when it is outside AND B lost (won) so many rounds that a
 * two-sided sign test gives p < 0.05 (with 6 rounds: all 6); otherwise "inconclusive". Why both:
 * an A/A run (one commit on both sides, 6 × 4 s, load average 11 → 8 on this 2-core machine) gave
 * per-round auths/s ratios of 0.65–1.33 and a median of 0.944, so a median outside ±5% alone is
 * no evidence there; its daemon µs/auth ratios stayed within 0.95–1.08 (median 0.988).
 */
export const NOISE = 0.05;
/** Closed-loop connections per side (two generators), as the settings A/B uses. */
const POOL = 256;

const root = fileURLToPath(new URL('..', import.meta.url));
const git = (...args: string[]): string => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim();

interface Side {
  label: 'A' | 'B';
  sha: string;
  subject: string;
  tree: string;
  child?: ChildProcess;
  /** Resolves when it answers `ready`: building its commit and starting its environment take minutes on a loaded machine. */
  started?: Promise<void>;
  /** It answered `ready` (before that it reads no commands: stopping it is a SIGTERM). */
  ready: boolean;
  closed: ClosedAnswer[];
  storms: StormAnswer[];
}

function parse(argv: string[]): { commits: string[]; rounds: number; seconds: number; storm: number } {
  const options = { commit: { type: 'string', multiple: true }, rounds: { type: 'string' }, seconds: { type: 'string' }, storm: { type: 'string' } } as const;
  let values: ReturnType<typeof parseArgs<{ args: string[]; options: typeof options }>>['values'];
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const num = (name: string, v: string | undefined, dflt: number, min: number): number => {
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min} (got ${v ?? ''})`);
    return n;
  };
  const commits = values.commit ?? [];
  if (commits.length !== 2) throw new UsageError(`give exactly two --commit (got ${commits.length})`);
  return { commits, rounds: num('rounds', values.rounds, 6, 1), seconds: num('seconds', values.seconds, 4, 1), storm: num('storm', values.storm, 2000, 0) };
}

/** Stops a side: `stop` over IPC when it is ready, then SIGTERM, then SIGKILL to its whole process group. */
async function stopSide(s: Side): Promise<void> {
  const child = s.child;
  if (child === undefined || child.pid === undefined) return;
  const gone = exited(child);
  const within = (ms: number): Promise<boolean> => Promise.race([gone.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
  if (child.connected && s.ready) await ask(child, { op: 'stop' } satisfies SideCommand, 'stopped', 60_000).catch(() => undefined);
  if (!(await within(5_000))) {
    child.kill('SIGTERM');
    await within(20_000);
  }
  try {
    // The side was forked detached: its generators, daemons and swtpm share its process group,
    // so whatever of it is left (none after a clean stop) goes here.
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // The group is empty: the usual case.
  }
  await gone;
}

const fmtRuns = (xs: number[], digits = 0): string => `median ${round(midMedian(xs), digits)} [${xs.map((x) => round(x, digits)).join(' ')}]`;

/** Two-sided sign test: the probability of a split at least as uneven as `k` of `n` if neither side is better. */
export function signTestP(k: number, n: number): number {
  let c = 1;
  let tail = 0;
  for (let i = 0; i <= Math.min(k, n - k); i += 1) {
    tail += c;
    c = (c * (n - i)) / (i + 1);
  }
  return Math.min(1, (2 * tail) / 2 ** n);
}

/** Paired ratios B/A, their median, and the verdict line of one metric (`higherIsBetter` names what "B won" means). */
function paired(name: string, a: number[], b: number[], higherIsBetter: boolean): string[] {
  const ratios = a.map((x, i) => (b[i] ?? NaN) / x);
  const m = midMedian(ratios);
  const wins = ratios.filter((r) => (higherIsBetter ? r > 1 : r < 1)).length;
  const losses = ratios.filter((r) => (higherIsBetter ? r < 1 : r > 1)).length;
  const p = round(signTestP(wins, wins + losses), 3);
  const how = `median paired B/A ${round(m, 3)}, B won ${wins}/${ratios.length} rounds, sign test p ${p}`;
  const verdict = Math.abs(m - 1) <= NOISE ? 'within noise' : p < 0.05 ? `B ${(m > 1) === higherIsBetter ? 'better' : 'worse'} by ${Math.abs(round((m - 1) * 100, 1))}%` : 'inconclusive';
  return [`${name}: paired B/A per round [${ratios.map((r) => round(r, 3)).join(' ')}], ${how}`, `verdict ${name}: ${verdict} (${how}; criterion ±${NOISE * 100}% and p < 0.05)`];
}

export async function abCommits(argv: string[]): Promise<void> {
  const o = parse(argv);
  const shas = o.commits.map((c) => {
    try {
      return git('rev-parse', '--verify', '--quiet', `${c}^{commit}`);
    } catch {
      throw new UsageError(`--commit ${c}: not a commit of ${root}`);
    }
  });
  const dir = await mkdtemp(join(tmpdir(), 'gh-abc-'));
  const sides: Side[] = shas.map((sha, i) => {
    const label = i === 0 ? 'A' : 'B';
    return { label, sha, subject: git('log', '-1', '--format=%h %s', sha), tree: join(dir, `side-${label}`), ready: false, closed: [], storms: [] };
  });
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await Promise.all(sides.map((s) => stopSide(s)));
      for (const s of sides) {
        try {
          git('worktree', 'remove', '--force', s.tree);
        } catch {
          // Never added, or already gone: prune below forgets it either way.
        }
      }
      await rm(dir, { recursive: true, force: true });
      git('worktree', 'prune');
    })());
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const modules = realpathSync(join(root, 'node_modules'));
    for (const s of sides) {
      git('worktree', 'add', '--detach', s.tree, s.sha);
      await symlink(modules, join(s.tree, 'node_modules'));
      const child = fork(join(root, 'bench/ab-side.ts'), [s.tree, String(POOL), String(o.storm)], {
        cwd: s.tree,
        execArgv: ['--import', 'tsx'],
        detached: true,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      s.child = child;
      // Listening from the fork on, so an early `ready` or error is not missed.
      s.started = ask(child, undefined, 'ready', 600_000).then(() => {
        s.ready = true;
      });
      s.started.catch(() => undefined);
    }
    console.log(`A = ${sides[0]!.subject}\nB = ${sides[1]!.subject}\nbuilding both sides' bench harness…`);
    await Promise.all(sides.map((s) => s.started));
    // One closed loop per side first, not counted: a fresh daemon's first runs are slower.
    const closedRun = (s: Side): Promise<ClosedAnswer> => ask(s.child!, { op: 'closed', seconds: o.seconds } satisfies SideCommand, 'closed', 120_000 + o.seconds * 3000);
    for (const s of sides) await closedRun(s);
    const loadStart = loadavg();
    for (let r = 0; r < o.rounds && cleaning === undefined; r += 1) {
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) s.closed.push(await closedRun(s));
      if (o.storm > 0) for (const s of order) s.storms.push(await ask<StormAnswer>(s.child!, { op: 'storm', size: o.storm } satisfies SideCommand, 'storm', 420_000));
      const line = order.map((s) => `${s.label} ${round(s.closed[r]!.authsPerSec)}/s ${s.closed[r]!.usPerAuth} µs${o.storm > 0 ? ` storm ${round(s.storms[r]!.allWelcomedSec, 2)} s` : ''}`);
      console.log(`round ${r + 1}/${o.rounds}: ${line.join(', ')}`);
    }
    if (cleaning !== undefined) return;
    const loadEnd = loadavg();
    report(sides, o.storm);
    console.log(`load average (1/5/15 min): start ${loadStart.map((x) => round(x, 2)).join(' ')}, end ${loadEnd.map((x) => round(x, 2)).join(' ')}`);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function report(sides: Side[], storm: number): void {
  const [a, b] = sides as [Side, Side];
  const pick = (s: Side, f: (c: ClosedAnswer) => number): number[] => s.closed.map(f);
  for (const s of sides) {
    const failures = s.closed.filter((c) => Object.keys(c.failures).length > 0).map((c) => JSON.stringify(c.failures));
    console.log(`${s.label} ${s.sha.slice(0, 7)}: auths/s ${fmtRuns(pick(s, (c) => c.authsPerSec))}; daemon µs/auth ${fmtRuns(pick(s, (c) => c.usPerAuth))}; p99 ms ${fmtRuns(pick(s, (c) => c.p99Ms), 1)}${failures.length > 0 ? `; failures ${failures.join(' ')}` : ''}`);
  }
  const lines = [
    ...paired('auths/s', pick(a, (c) => c.authsPerSec), pick(b, (c) => c.authsPerSec), true),
    ...paired('daemon µs/auth', pick(a, (c) => c.usPerAuth), pick(b, (c) => c.usPerAuth), false),
    ...paired('p99', pick(a, (c) => c.p99Ms), pick(b, (c) => c.p99Ms), false),
  ];
  if (storm > 0) {
    for (const s of sides) {
      const failed = s.storms.filter((x) => Object.keys(x.failures).length > 0).map((x) => JSON.stringify(x.failures));
      console.log(`${s.label} storm of ${storm}: all welcomed (s) ${fmtRuns(s.storms.map((x) => x.allWelcomedSec), 2)}; welcomed [${s.storms.map((x) => x.welcomed).join(' ')}]; retried attempts [${s.storms.map((x) => x.retries).join(' ')}]${failed.length > 0 ? `; failures ${failed.join(' ')}` : ''}`);
    }
    lines.push(...paired(`storm ${storm} time to all welcomed`, a.storms.map((x) => x.allWelcomedSec), b.storms.map((x) => x.allWelcomedSec), false));
  }
  for (const l of lines.filter((x) => !x.startsWith('verdict'))) console.log(l);
  for (const l of lines.filter((x) => x.startsWith('verdict'))) console.log(l);
  const broken = sides.flatMap((s) => [...s.closed, ...s.storms]).filter((x) => Object.keys(x.failures).length > 0).length;
  if (broken > 0) console.log(`NOT VALID: ${broken} runs had failures (listed above), so the verdicts compare broken runs`);
}
