/**
 * A private PostgreSQL server for tests and benches: Debian's `postgresql` binaries (setup.sh
 * installs them), a cluster made by initdb in a temp dir, the server on a free loopback TCP port.
 * PostgreSQL refuses to run as root, so when this process is root the temp dir is handed to the
 * unprivileged user `nobody` and initdb/postgres run as it (`setpriv`). Every wait is bounded;
 * `stop()` ends the server (SIGINT, then SIGKILL) and removes the directory: no process is left.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PostgresOptions {
  /**
   * fsync and full-page writes on, as in production (benches); off by default (tests). Commits
   * stay asynchronous (synchronous_commit off), like SQLite's WAL with synchronous=NORMAL: a
   * crash of the machine may lose the last commits, never corrupt the database.
   */
  crashSafe?: boolean;
  /** Bound on initdb and on start-up, ms. Default 60 000. */
  startTimeoutMs?: number;
}

const SUPERUSER = 'gatehouse';

/** The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin). */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((d) => /^[0-9]+$/.test(d)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const m of majors) if (existsSync(join(root, m, 'bin', 'postgres'))) return join(root, m, 'bin');
  throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql: run ./setup.sh (Debian package postgresql)');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Run as `nobody` when we are root (PostgreSQL refuses root); as ourselves otherwise. */
function asServerUser(cmd: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [cmd, args];
  return ['setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', cmd, ...args]];
}

export class TestPostgres {
  readonly dir: string;
  readonly port: number;
  readonly #bin: string;
  readonly #opts: PostgresOptions;
  #proc: ChildProcess | undefined;
  #databases = 0;

  private constructor(dir: string, port: number, bin: string, opts: PostgresOptions) {
    this.dir = dir;
    this.port = port;
    this.#bin = bin;
    this.#opts = opts;
  }

  /** initdb and start a server; resolves once it accepts connections. */
  static async start(opts: PostgresOptions = {}): Promise<TestPostgres> {
    const bin = postgresBinDir();
    const dir = mkdtempSync(join(tmpdir(), 'gh-pg-'));
    const pgs = new TestPostgres(dir, await freePort(), bin, opts);
    try {
      if (process.getuid?.() === 0) chownSync(dir, 65534, 65534);
      const [cmd, args] = asServerUser(join(bin, 'initdb'), ['-D', join(dir, 'data'), '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
      const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.startTimeoutMs ?? 60_000 });
      if (r.status !== 0) throw new Error(`initdb failed (${r.status ?? r.signal ?? r.error?.message}): ${r.stderr}`);
      await pgs.#startServer();
    } catch (err) {
      await pgs.stop();
      throw err;
    }
    return pgs;
  }

  /** A URL of the server's default database. */
  get url(): string {
    return this.urlOf('postgres');
  }

  urlOf(db: string): string {
    return `postgres://${SUPERUSER}@127.0.0.1:${this.port}/${db}`;
  }

  /** Whether the server process is running. */
  get running(): boolean {
    return this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  /** A fresh empty database; its URL. */
  async createDatabase(prefix = 'gh'): Promise<string> {
    const name = `${prefix}_${process.pid}_${++this.#databases}`;
    const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE ${name}`);
    } finally {
      await c.end();
    }
    return this.urlOf(name);
  }

  async #startServer(): Promise<void> {
    const safe = this.#opts.crashSafe === true ? 'on' : 'off';
    const [cmd, args] = asServerUser(join(this.#bin, 'postgres'), [
      '-D', join(this.dir, 'data'),
      '-p', String(this.port),
      '-c', 'listen_addresses=127.0.0.1',
      '-c', `unix_socket_directories=${this.dir}`,
      '-c', `fsync=${safe}`,
      '-c', 'synchronous_commit=off',
      '-c', `full_page_writes=${safe}`,
      '-c', 'max_connections=100',
    ]);
    const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#proc = proc;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`PostgreSQL did not start within ${this.#opts.startTimeoutMs ?? 60_000} ms: ${log.slice(-2000)}`)), this.#opts.startTimeoutMs ?? 60_000);
      const onData = (b: Buffer): void => {
        log += b.toString('utf8');
        if (log.includes('database system is ready to accept connections')) done();
      };
      const onExit = (code: number | null, signal: string | null): void => done(new Error(`PostgreSQL exited (${code ?? signal}) while starting: ${log.slice(-2000)}`));
      const done = (err?: Error): void => {
        clearTimeout(timer);
        proc.stderr?.off('data', onData);
        proc.off('exit', onExit);
        // Keep draining its log so the pipe never fills and stalls the server.
        proc.stderr?.resume();
        if (err) reject(err);
        else resolve();
      };
      proc.stderr?.on('data', onData);
      proc.once('exit', onExit);
    });
  }

  /** Stop the server (fast shutdown), keeping the data directory. Bounded: SIGKILL after `ms`. */
  async stopServer(ms = 15_000): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => proc.kill('SIGKILL'), ms);
      proc.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      // SIGINT: "fast" shutdown, sessions are cut, no waiting for clients.
      proc.kill('SIGINT');
    });
  }

  /** Start the server again on the same data directory and port. */
  async startServer(): Promise<void> {
    if (this.running) return;
    await this.#startServer();
  }

  /** Stop the server and remove its directory. */
  async stop(): Promise<void> {
    await this.stopServer();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
