/**
 * The reference backend as its own process (`gatehouse demo --backend-process`):
 * `gatehouse-backend serve` on the demo's PKI and data directory, a child of the demo that the
 * kernel kills if the demo dies (see common/child-process.ts). Stopping it by hand is how an
 * evaluator tries a backend outage; `serveCommand` is the line that starts it again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dyingWithParent } from '../common/child-process.js';
import { DemoError } from './leftovers.js';

export interface BackendProcessOptions {
  dataDir: string;
  certFile: string;
  keyFile: string;
  port: number;
  /** The backend's log (its stderr), appended to. */
  logFile: string;
  /** How long to wait for "listening on" (default 15 s). */
  timeoutMs?: number;
  /** `--store` (default: the data directory's SQLite file). */
  store?: string;
  /** `--public-origin` (default `https://127.0.0.1:<port>`; a replica behind a balancer: the balancer's). */
  publicOrigin?: string;
}

/** `node [--import tsx] <backend/cli>`: the built file when there is one, else the source under tsx. */
function backendEntry(): string[] {
  const js = fileURLToPath(new URL('../backend/cli.js', import.meta.url));
  if (existsSync(js)) return [js];
  return ['--import', 'tsx', fileURLToPath(new URL('../backend/cli.ts', import.meta.url))];
}

export interface BackendExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class BackendProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<BackendExit>;
  #exit: BackendExit | undefined;

  private constructor(
    child: ChildProcess,
    exited: Promise<BackendExit>,
    readonly url: string,
    readonly port: number,
    readonly kid: string,
    /** argv (after node) of the serve command. */
    readonly serveArgs: readonly string[],
  ) {
    this.#child = child;
    this.#exited = exited.then((e) => (this.#exit = e));
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Resolves when the process has exited, for whatever reason. */
  get exited(): Promise<BackendExit> {
    return this.#exited;
  }

  /** The serve command as a person types it (paths under the working directory made relative). */
  serveCommand(cwd = process.cwd()): string {
    const rel = (a: string): string => (a.startsWith('/') && a.startsWith(cwd) ? relative(cwd, a) || '.' : a);
    return ['node', ...this.serveArgs.map(rel)].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
  }

  static async start(o: BackendProcessOptions): Promise<BackendProcess> {
    const serveArgs = [...backendEntry(), 'serve', '--data-dir', o.dataDir, '--cert', o.certFile, '--key', o.keyFile, '--host', '127.0.0.1', '--port', String(o.port), '--public-origin', o.publicOrigin ?? `https://127.0.0.1:${o.port}`];
    if (o.store !== undefined) serveArgs.push('--store', o.store);
    const cmd = dyingWithParent(process.execPath, serveArgs);
    const log = openSync(o.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', log] });
    } finally {
      closeSync(log);
    }
    const exited = new Promise<BackendExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    let out = '';
    const listening = await new Promise<{ url: string; kid: string } | string>((resolve) => {
      const timer = setTimeout(() => resolve(`did not say "listening on" within ${o.timeoutMs ?? 15_000} ms`), o.timeoutMs ?? 15_000);
      child.stdout?.on('data', (d: Buffer) => {
        out = (out + d.toString('utf8')).slice(-4000);
        const m = /listening on (https:\/\/\S+)(?: for \S+)? \(kid_S (\S+)\)/.exec(out);
        if (m?.[1] !== undefined && m[2] !== undefined) {
          clearTimeout(timer);
          resolve({ url: m[1], kid: m[2] });
        }
      });
      void exited.then((e) => {
        clearTimeout(timer);
        resolve(`exited (${e.signal ?? `code ${String(e.code)}`}) before listening; see ${o.logFile}`);
      });
    });
    if (typeof listening === 'string') {
      child.kill('SIGKILL');
      await exited;
      throw new DemoError('GH_DEMO_BACKEND_START', `the backend process ${listening}`);
    }
    child.stdout?.resume();
    return new BackendProcess(child, exited, listening.url, o.port, listening.kid, serveArgs);
  }

  /** SIGTERM (the backend closes its server and registry), SIGKILL after `graceMs`; waits for the exit. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.#exit !== undefined) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** SIGKILL now, for exit paths that cannot wait. */
  killNow(): void {
    if (this.#exit === undefined) this.#child.kill('SIGKILL');
  }
}
