/**
 * One bench phase: a module under bench/phases/ that measures one thing and says what it found.
 * `npm run bench` runs every phase in order in one run (so ratios compare like with like) and
 * writes bench/results/latest.json and docs/performance.md from their results;
 * `npm run bench -- --only KEY[,KEY]` runs a subset (for working on one phase; it writes
 * bench/results/only-KEY.json and never the docs).
 */
import type { BenchDevice, BenchEnv, Daemon, Generator } from './harness.js';

export interface Target {
  /** What is promised, e.g. "v2 auths/s >= 90% of v1's". */
  target: string;
  /** What was measured, human-readable, e.g. "94% (2,310 vs 2,457/s)". */
  value: string;
  met: boolean;
}

export interface PhaseContext {
  /** --quick: small sizes, for checking that the phase runs. */
  readonly quick: boolean;
  /** A full run (not --quick, not --only): only then may a phase write files to bench/results (e.g. a chart). */
  readonly full: boolean;
  /** Repetitions per measurement (medians over runs). */
  readonly runs: number;
  /** PKI, swtpm with the provisioned key, the reference backend (SQLite) and registered devices. */
  readonly env: BenchEnv;
  /**
   * Registered devices reserved for protocol-v2 phases, disjoint from `env.devices`' first
   * (v1) ones: a device that once sent a v2 hello is refused v1 from then on (protocol-v2 "No
   * downgrade"), so a v1 phase after a v2 phase must not reuse it.
   */
  readonly v2Devices: readonly BenchDevice[];
  /** Load-generator processes (forked once per bench run). */
  readonly gens: Generator[];
  /** The repository root. */
  readonly root: string;
  log(line: string): void;
  /** A gateway daemon (child process, shipped node flags) on a fresh state dir; config overrides as BenchEnv.writeConfig takes them. */
  startGateway(name: string, o?: Parameters<BenchEnv['writeConfig']>[1]): Promise<Daemon>;
  /** Summaries of the phases that already ran in this run, by key (e.g. `echo` for the no-auth ceiling). */
  readonly earlier: Readonly<Record<string, Record<string, unknown>>>;
}

export interface PhaseResult {
  /** Goes to latest.json under the phase's key; numbers, not strings. */
  summary: Record<string, unknown>;
  /** Lines of the results table: [measure, median (min–max)]. */
  rows: [string, string][];
  targets: Target[];
  /** Markdown for docs/performance.md under the phase's title: what the numbers say, what bounds them. */
  notes?: string;
}

export interface Phase {
  /** Short stable key: `--only` and the latest.json field. */
  key: string;
  title: string;
  /** Keys of phases whose summaries this one reads from `earlier` (run order respects them). */
  needs?: string[];
  run(ctx: PhaseContext): Promise<PhaseResult>;
}
