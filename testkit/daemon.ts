/**
 * The daemon and the CLI as child processes (daemon tests): `node --import tsx cli/gatehouse.ts …`
 * from the repo root, stdout and stderr captured, every wait bounded. Every child spawned here is
 * remembered until it has exited, so `killAllChildren()` in an after hook leaves none behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root (cwd of every child). */
export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Children not yet reaped. */
const live = new Set<GatehouseChild>();

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Added to (and overriding) the parent's environment. */
  env?: NodeJS.ProcessEnv;
}

/** One `gatehouse` child process. */
export class GatehouseChild {
  readonly child: ChildProcess;
  #stdout = '';
  #stderr = '';
  #exit: ChildExit | undefined;
  readonly #exited: Promise<ChildExit>;
  readonly #waiters = new Set<() => void>();

  constructor(args: string[], opts: SpawnOptions = {}) {
    // NOTIFY_SOCKET and friends of the test runner must not leak into the child unless asked for.
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'JOURNAL_STREAM', 'GATEHOUSE_CONFIG', 'GATEHOUSE_STATUS_SOCKET']) delete env[k];
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/gatehouse.ts', ...args], {
      cwd: REPO_ROOT,
      env: { ...env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => {
      this.#stdout += d.toString('utf8');
      for (const w of [...this.#waiters]) w();
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.#stderr += d.toString('utf8');
      for (const w of [...this.#waiters]) w();
    });
    live.add(this);
    this.#exited = new Promise<ChildExit>((resolve) => {
      // 'close': the process exited AND its stdio is fully read.
      child.once('close', (code, signal) => {
        this.#exit = { code, signal };
        live.delete(this);
        resolve(this.#exit);
      });
      child.once('error', () => {
        this.#exit = { code: null, signal: null };
        live.delete(this);
        resolve(this.#exit);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('child did not start');
    return this.child.pid;
  }

  stdout(): string {
    return this.#stdout;
  }

  stderr(): string {
    return this.#stderr;
  }

  /** Resolves once stderr matches `re` (already or later); rejects on exit or after `timeoutMs`. */
  waitForStderr(re: RegExp, timeoutMs: number): Promise<void> {
    return this.#waitFor('stderr', re, timeoutMs).then(() => undefined);
  }

  /** Resolves with the match once stdout matches `re` (already or later); rejects on exit or after `timeoutMs`. */
  waitForStdout(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return this.#waitFor('stdout', re, timeoutMs);
  }

  #waitFor(stream: 'stdout' | 'stderr', re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const text = (): string => (stream === 'stdout' ? this.#stdout : this.#stderr);
    const tail = (): string => `\nstdout:\n${this.#stdout.slice(-3000)}\nstderr:\n${this.#stderr.slice(-3000)}`;
    return new Promise((resolve, reject) => {
      const done = (err: Error | undefined, m?: RegExpExecArray): void => {
        clearTimeout(timer);
        this.#waiters.delete(onData);
        if (m !== undefined) resolve(m);
        else reject(err);
      };
      const onData = (): void => {
        const m = re.exec(text());
        if (m !== null) done(undefined, m);
        else if (this.#exit !== undefined) done(new Error(`child exited before ${stream} showed ${String(re)}:${tail()}`));
      };
      const timer = setTimeout(() => done(new Error(`${stream} did not show ${String(re)} within ${timeoutMs} ms:${tail()}`)), timeoutMs);
      this.#waiters.add(onData);
      void this.#exited.then(onData);
      onData();
    });
  }

  /** How it ended, once it has. */
  get exit(): ChildExit | undefined {
    return this.#exit;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.#exit === undefined) this.child.kill(sig);
  }

  /** Resolves with the exit; rejects (with stderr attached) after `timeoutMs`. */
  async exited(timeoutMs: number): Promise<ChildExit> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.#exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`child ${this.child.pid ?? '?'} did not exit within ${timeoutMs} ms; stderr:\n${this.#stderr.slice(-4000)}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL and reap (bounded). A no-op once it has exited. */
  async kill(timeoutMs = 10_000): Promise<ChildExit> {
    if (this.#exit !== undefined) return this.#exit;
    this.child.kill('SIGKILL');
    return this.exited(timeoutMs);
  }
}

/** `gatehouse run --config FILE` as a child. */
export function spawnDaemon(configFile: string, opts: SpawnOptions = {}): GatehouseChild {
  return new GatehouseChild(['run', '--config', configFile], opts);
}

export interface CliResult extends ChildExit {
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion (killed and reported after `timeoutMs`). */
export async function runCli(args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  const c = new GatehouseChild(args, opts);
  try {
    const exit = await c.exited(opts.timeoutMs ?? 60_000);
    return { ...exit, stdout: c.stdout(), stderr: c.stderr() };
  } finally {
    await c.kill();
  }
}

/** Kills and reaps every child spawned here that is still running (after/afterEach hooks). */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.kill()));
}
