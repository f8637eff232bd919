/**
 * What the data-plane phase adds to the bench environment: its generator processes
 * (bench/dataplane-generator.ts), and a second reference backend on the bench backend's data
 * directory and store (the same signing key, registry and telemetry table, as a replica would
 * share them) that the phase's daemons upload to and that can be stopped and started again on
 * its port: an outage. Rows stored are counted in the store's SQLite file itself.
 */
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { REGISTRY_FILE, startBackend, type RunningBackend } from '../backend/server.js';
import type { DpCommand, DpReport } from './dataplane-generator.js';
import { forkWorker, type BenchEnv, type BenchDevice } from './harness.js';
import { ask, exited } from './ipc.js';

/** A forked data-plane generator. */
export class DpGenerator {
  readonly child: ChildProcess = forkWorker('dataplane-generator.js', []);
  run(cmd: DpCommand, timeoutMs = 120_000): Promise<DpReport> {
    return ask<DpReport>(this.child, cmd, cmd.op, timeoutMs);
  }
  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await exited(this.child);
  }
}

/** Each generator its slice of `devices`. */
export async function setupGenerators(gens: DpGenerator[], env: BenchEnv, devices: BenchDevice[]): Promise<void> {
  const per = Math.ceil(devices.length / gens.length);
  const backendPk = Buffer.from(env.backend.publicKeyRaw).toString('base64url');
  await Promise.all(gens.map((g, i) => g.run({ op: 'setup', backendKid: env.backend.kid, backendPk, devices: devices.slice(i * per, (i + 1) * per) })));
}

/** Runs `cmd` on every generator at once; throws on any failure when `strict`. */
export async function onAll(gens: DpGenerator[], cmd: DpCommand, o: { strict?: boolean; timeoutMs?: number } = {}): Promise<DpReport[]> {
  const rs = await Promise.all(gens.map((g) => g.run(cmd, o.timeoutMs)));
  const failures = rs.flatMap((r) => Object.entries(r.failures));
  if (o.strict === true && failures.length > 0) throw new Error(`${cmd.op}: ${JSON.stringify(Object.fromEntries(failures))}`);
  return rs;
}

/** A second backend on the bench backend's data and store, that can go down and come back. */
export class ReplicaBackend {
  #backend: RunningBackend | undefined;
  readonly #port: number;
  readonly #env: BenchEnv;
  readonly #tls: { certPem: string; keyPem: string };
  readonly #db: Database.Database;

  private constructor(env: BenchEnv, backend: RunningBackend, tls: { certPem: string; keyPem: string }) {
    this.#env = env;
    this.#backend = backend;
    this.#port = backend.port;
    this.#tls = tls;
    this.#db = new Database(join(env.dir, 'backend', REGISTRY_FILE), { readonly: true, fileMustExist: true });
  }

  static async start(env: BenchEnv): Promise<ReplicaBackend> {
    const tls = { certPem: await readFile(join(env.dir, 'pki', 'backend.pem'), 'utf8'), keyPem: await readFile(join(env.dir, 'pki', 'backend.key'), 'utf8') };
    const b = await ReplicaBackend.#listen(env, tls, 0);
    return new ReplicaBackend(env, b, tls);
  }

  static #listen(env: BenchEnv, tls: { certPem: string; keyPem: string }, port: number): Promise<RunningBackend> {
    return startBackend({ dataDir: join(env.dir, 'backend'), tls, host: '127.0.0.1', port, publicOrigin: (p) => `https://127.0.0.1:${p}` });
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  /** The outage: the listener closes (connections are refused). */
  async down(): Promise<void> {
    const b = this.#backend;
    this.#backend = undefined;
    await b?.close();
  }

  /** Back on the same port and data. */
  async up(): Promise<void> {
    if (this.#backend === undefined) this.#backend = await ReplicaBackend.#listen(this.#env, this.#tls, this.#port);
  }

  /** Rows stored after row `afterId` (a range of the primary key: cheap to poll). */
  rowsAfter(afterId: number): number {
    return (this.#db.prepare('SELECT COUNT(*) AS n FROM telemetry WHERE id > ?').get(afterId) as { n: number }).n;
  }

  /** The newest row id (0 when empty). */
  lastId(): number {
    return (this.#db.prepare('SELECT COALESCE(MAX(id), 0) AS id FROM telemetry').get() as { id: number }).id;
  }

  /** Rows stored after row `afterId`, per session id (lower-case hex), with how many distinct seqs they hold. */
  rowsBySidAfter(afterId: number): Map<string, { rows: number; seqs: number }> {
    const q = this.#db.prepare('SELECT lower(hex(sid)) AS sid, COUNT(*) AS rows, COUNT(DISTINCT seq) AS seqs FROM telemetry WHERE id > ? GROUP BY sid');
    return new Map((q.all(afterId) as { sid: string; rows: number; seqs: number }[]).map((r) => [r.sid, { rows: r.rows, seqs: r.seqs }]));
  }

  async close(): Promise<void> {
    await this.down();
    this.#db.close();
  }
}
