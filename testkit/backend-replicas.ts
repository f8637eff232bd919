/**
 * The reference backend as docs/backend.md deploys it past one machine: `gatehouse-backend
 * serve` replicas as child processes on one PostgreSQL database (a private server,
 * testkit/postgres.ts), each terminating TLS with the same certificate and holding the same
 * signing key, behind one address: a TCP round-robin balancer (testkit/tcp-round-robin.ts) that
 * is also every replica's `--public-origin`. A gateway is configured with `url` alone.
 */
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertFiles } from '../backend/pki.js';
import { PgStore } from '../backend/pg-store.js';
import { SIGNING_KEY_FILE, ensureSigningKey } from '../backend/signing-key.js';
import { BackendProcess } from '../demo/backend-process.js';
import { freePort } from '../demo/embedded.js';
import type { TestPostgres } from './postgres.js';
import { TcpRoundRobin } from './tcp-round-robin.js';

export interface ReplicaSetOptions {
  pg: TestPostgres;
  /** A directory of the caller's; each replica gets `replica-<i>/` (data dir and log) in it. */
  dir: string;
  /** The server certificate every replica serves (its SANs must cover 127.0.0.1). */
  server: CertFiles;
  /** How many replicas. Default 2. */
  count?: number;
}

export class ReplicaSet {
  readonly #replicas: (BackendProcess | undefined)[];

  private constructor(
    readonly lb: TcpRoundRobin,
    /** The replicas' shared store, opened by this process (registration, reading what was stored). */
    readonly store: PgStore,
    readonly storeUrl: string,
    readonly kid: string,
    readonly publicKeyRaw: Uint8Array,
    readonly logFiles: readonly string[],
    replicas: BackendProcess[],
  ) {
    this.#replicas = replicas;
  }

  /** A fresh migrated database, the replicas on it, the balancer in front; resolves when all listen. */
  static async start(o: ReplicaSetOptions): Promise<ReplicaSet> {
    const count = o.count ?? 2;
    const storeUrl = await o.pg.createDatabase('replicas');
    await PgStore.migrate(storeUrl);
    // One signing key, copied (mode 0600 kept) into each replica's data directory.
    const keyDir = join(o.dir, 'signing-key');
    await mkdir(keyDir, { recursive: true, mode: 0o700 });
    const { signer } = await ensureSigningKey(keyDir);
    const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
    const lb = await TcpRoundRobin.start(ports);
    const started: BackendProcess[] = [];
    const logFiles = ports.map((_, i) => join(o.dir, `replica-${i}.log`));
    let store: PgStore | undefined;
    try {
      await Promise.all(
        ports.map(async (port, i) => {
          const dataDir = join(o.dir, `replica-${i}`);
          await mkdir(dataDir, { recursive: true, mode: 0o700 });
          await copyFile(join(keyDir, SIGNING_KEY_FILE), join(dataDir, SIGNING_KEY_FILE));
          const p = await BackendProcess.start({
            dataDir,
            certFile: o.server.certPath,
            keyFile: o.server.keyPath,
            port,
            logFile: logFiles[i] as string,
            store: storeUrl,
            publicOrigin: `https://127.0.0.1:${lb.port}`,
            timeoutMs: 60_000,
          });
          started.push(p);
          if (p.kid !== signer.kid) throw new Error(`replica ${i} serves kid ${p.kid}, not ${signer.kid}`);
        }),
      );
      store = await PgStore.open(storeUrl);
    } catch (err) {
      await Promise.all(started.map((p) => p.stop()));
      await lb.close();
      throw err;
    }
    return new ReplicaSet(lb, store, storeUrl, signer.kid, signer.publicKeyRaw, logFiles, ports.map((port) => started.find((p) => p.port === port) as BackendProcess));
  }

  /** The one address gateways are configured with. */
  get url(): string {
    return `https://127.0.0.1:${this.lb.port}`;
  }

  /** SIGKILL replica `i` (no shutdown of any kind) and wait until it has exited. */
  async kill(i: number): Promise<void> {
    const p = this.#replicas[i];
    if (p === undefined) return;
    p.killNow();
    const exit = await p.exited;
    if (exit.signal !== 'SIGKILL') throw new Error(`replica ${i} ended by ${exit.signal ?? `code ${String(exit.code)}`}, not SIGKILL`);
  }

  /** Whether replica `i` is running. */
  running(i: number): boolean {
    return this.#replicas[i]?.running === true;
  }

  /** Replica `i`'s log lines (JSON, its stderr) whose message is `message`. */
  async logCount(i: number, message: string): Promise<number> {
    const text = await readFile(this.logFiles[i] as string, 'utf8');
    let n = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '' || !line.startsWith('{')) continue;
      if ((JSON.parse(line) as { message?: unknown }).message === message) n += 1;
    }
    return n;
  }

  /** Stop every replica (SIGTERM, then SIGKILL), the balancer and the store. */
  async close(): Promise<void> {
    await Promise.all(this.#replicas.map((p) => p?.stop()));
    await this.lb.close();
    await this.store.close();
  }
}
