/**
 * One side of `bench/ab.ts --commit A --commit B` (bench/ab-commits.ts forks it, one per commit).
 * argv: WORKTREE POOL STORM. It builds the worktree's bench workers and then drives THAT commit's
 * harness (its bench/harness.ts and bench/scenarios.ts, loaded from the worktree), so each side
 * measures its own daemon, backend and load generators. It calls only what both compared commits
 * have alike: BenchEnv.create, writeConfig, Daemon.start, Generator, connectPools, closedLoop,
 * closePools, storm. Commands arrive over IPC one at a time (SideCommand) and each gets one answer
 * (SideAnswer). It cleans up on `stop`, on SIGTERM/SIGINT and when its parent goes away.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export type SideCommand = { op: 'closed'; seconds: number } | { op: 'storm'; size: number } | { op: 'stop' };

export interface ClosedAnswer {
  op: 'closed';
  authsPerSec: number;
  /** Daemon CPU per full authentication, µs. */
  usPerAuth: number;
  p99Ms: number;
  failures: Record<string, number>;
}

export interface StormAnswer {
  op: 'storm';
  /** Seconds from the common start until the last welcome. */
  allWelcomedSec: number;
  welcomed: number;
  failures: Record<string, number>;
  retries: number;
}

export type SideAnswer = { op: 'ready' } | ClosedAnswer | StormAnswer | { op: 'stopped' } | { op: 'error'; message: string };

type Harness = typeof import('./harness.js');
type Scenarios = typeof import('./scenarios.js');

const [tree = '', poolArg = '256', stormArg = '0'] = process.argv.slice(2);
const pool = Number(poolArg);
const stormSize = Number(stormArg);
/** Resolves once the message is handed to the IPC channel (so exiting right after loses nothing). */
const send = (m: SideAnswer): Promise<void> => new Promise((resolve) => void process.send?.(m, undefined, {}, () => resolve()));

/** What to undo, newest first; run once. */
const undo: (() => Promise<void>)[] = [];
let closing: Promise<void> | undefined;
function shutdown(): Promise<void> {
  closing ??= (async () => {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (err) {
        console.error(`ab side ${tree}: cleanup step failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  })();
  return closing;
}
const exitAfterShutdown = (code: number) => (): void => void shutdown().finally(() => process.exit(code));
process.on('SIGTERM', exitAfterShutdown(143));
process.on('SIGINT', exitAfterShutdown(130));
process.on('disconnect', exitAfterShutdown(1));

async function start(): Promise<(cmd: SideCommand) => Promise<SideAnswer>> {
  // The commit's own workers (daemon, load generator) run compiled, as its bench/ab.ts runs them.
  execFileSync(process.execPath, [join(tree, 'node_modules/typescript/bin/tsc'), '-p', join(tree, 'bench/tsconfig.bench.json'), '--noCheck'], { stdio: 'inherit' });
  const h = (await import(pathToFileURL(join(tree, 'bench/harness.ts')).href)) as Harness;
  const s = (await import(pathToFileURL(join(tree, 'bench/scenarios.ts')).href)) as Scenarios;
  const env = await h.BenchEnv.create(await mkdtemp(join(tmpdir(), 'gh-abc-env-')), pool);
  undo.push(() => env.dispose());
  // Storms get their own backend and swtpm: every fresh daemon opens a backend session for the one
  // gateway, and the backend honours only the newest two per gateway, so storm daemons on the
  // closed loop's backend would push the long-lived daemon's session out.
  const stormEnv = stormSize > 0 ? await h.BenchEnv.create(await mkdtemp(join(tmpdir(), 'gh-abc-env-')), stormSize) : undefined;
  if (stormEnv !== undefined) undo.push(() => stormEnv.dispose());
  const { file, log } = await env.writeConfig('ab', { logLevel: 'info' });
  const gw = await h.Daemon.start('gateway-worker.js', [file, log]);
  undo.push(() => gw.stop());
  const gens = [new h.Generator(), new h.Generator()];
  const stormGens = stormSize > 0 ? [new h.Generator(), new h.Generator()] : [];
  undo.push(() => Promise.all([...gens, ...stormGens].map((g) => g.kill())).then(() => undefined));
  await s.connectPools(gens, env, env.devices.slice(0, pool), gw.port);
  let storms = 0;
  return async (cmd) => {
    switch (cmd.op) {
      case 'closed': {
        const r = await s.closedLoop(gens, gw, { runs: 1, durationMs: cmd.seconds * 1000 });
        return { op: 'closed', authsPerSec: r.authsPerSec.median, usPerAuth: Math.round((r.load.daemonCpu / r.authsPerSec.median) * 1e6), p99Ms: r.p99.median, failures: r.failures };
      }
      case 'storm': {
        // A fresh daemon (fresh state, no leases) per storm, as the bench's storm phase does.
        if (stormEnv === undefined || cmd.size > stormSize) throw new Error(`storm of ${cmd.size}: this side was started for ${stormSize}`);
        const cfg = await stormEnv.writeConfig(`storm-${(storms += 1)}`, { logLevel: 'info' });
        const d = await h.Daemon.start('gateway-worker.js', [cfg.file, cfg.log]);
        try {
          const r = await s.storm(stormGens, stormEnv, d, stormEnv.devices.slice(0, cmd.size), true);
          await s.closePools(stormGens);
          return { op: 'storm', allWelcomedSec: (r.lastDoneAt - r.startAt) / 1000, welcomed: r.report.ok, failures: r.report.failures, retries: r.retries };
        } finally {
          await d.stop();
        }
      }
      case 'stop':
        await shutdown();
        return { op: 'stopped' };
    }
  };
}

try {
  const handle = await start();
  // Commands run one at a time, in order.
  let chain = Promise.resolve();
  process.on('message', (cmd: SideCommand) => {
    chain = chain.then(async () => {
      try {
        await send(await handle(cmd));
      } catch (err) {
        await send({ op: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      }
      if (cmd.op === 'stop') process.exit(0);
    });
  });
  await send({ op: 'ready' });
} catch (err) {
  await send({ op: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  await shutdown();
  process.exit(1);
}
