/**
 * The PostgreSQL store (node-postgres): one pool per process, named prepared statements, the
 * schema made by backend/pg-migrations.ts. Any number of `gatehouse-backend serve` replicas share
 * one database and keep nothing of their own: a nonce is a unique row (`INSERT … ON CONFLICT`),
 * so a nonce used at one replica is refused at every other; session keys, revocations and the v2
 * records are read from the database on every request.
 *
 * The registry statements are in backend/pg-registry.ts, the data plane's in pg-data-plane.ts, the
 * pool, named statements and transactions in pg-pool.ts; this file opens, checks and composes them.
 *
 * When PostgreSQL cannot be reached (down, restarting, out of connections) every call fails with
 * `GH_STORE_UNAVAILABLE`, which the server answers 503 with Retry-After: the gateway retries.
 */
import type pg from 'pg';
import { NONCES_PER_KEYID, type NonceOutcome } from './nonce-store.js';
import { PG_SCHEMA_VERSION, schemaProblem, schemaVersion, migrate } from './pg-migrations.js';
import { inTransaction, makePool, namedQuery, runOn, type PgPoolOptions, type Queryable } from './pg-pool.js';
import { PgRegistry } from './pg-registry.js';
import type { DeviceRecord, GatewayRecord, GrantRecord, NewDevice, NowSeconds, SessionKeyRecord } from './registry.js';
import type { AckRecord, CommandRecord, NewCommand, StoredTelemetry, TelemetryRecord, VerdictWindow } from './data-plane-store.js';
import { DATA_PLANE_SQL, PgDataPlane, type DataPlaneStatement } from './pg-data-plane.js';
import { StoreError } from './errors.js';
import { redactUrl, type BackendStore, type StoreStatus, type VerifyDevice, type VerifyOutcomes } from './store.js';

export interface PgStoreOptions extends PgPoolOptions {
  now?: NowSeconds;
  /** Live request nonces each keyid may hold. Default {@link NONCES_PER_KEYID}. */
  noncesPerKeyid?: number;
}

export class PgStore implements BackendStore {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #url: string;
  readonly #reg: PgRegistry;
  readonly #dp: PgDataPlane;

  private constructor(pool: pg.Pool, url: string, opts: PgStoreOptions) {
    this.#pool = pool;
    this.#url = url;
    const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
    this.#reg = new PgRegistry({ pool, now, noncesPerKeyid: opts.noncesPerKeyid ?? NONCES_PER_KEYID });
    this.#dp = new PgDataPlane({
      q: <R extends pg.QueryResultRow>(name: DataPlaneStatement, values: unknown[], on: Queryable = pool) => namedQuery<R>(on, `gh_dp_${name}`, DATA_PLANE_SQL[name], values),
      tx: (fn) => inTransaction(pool, fn),
      now,
      url,
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }

  /** Connect and check that the database is at this build's schema (else `GH_STORE_SCHEMA_*`). */
  static async open(url: string, opts: PgStoreOptions = {}): Promise<PgStore> {
    const pool = makePool(url, opts);
    try {
      const found = await runOn(pool, (c) => schemaVersion(c));
      const problem = schemaProblem(found);
      if (problem !== undefined) throw problem;
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PgStore(pool, url, opts);
  }

  /** `gatehouse-backend migrate`: bring the database to this build's schema (idempotent). */
  static async migrate(url: string, opts: PgStoreOptions = {}): Promise<{ from: number; to: number; applied: number[] }> {
    const pool = makePool(url, opts);
    try {
      const client = await pool.connect().catch((cause: unknown) => {
        throw new StoreError('GH_STORE_UNAVAILABLE', `cannot connect to ${redactUrl(url)}`, { cause });
      });
      try {
        return await migrate(client);
      } finally {
        client.release();
      }
    } finally {
      await pool.end().catch(() => undefined);
    }
  }

  /** `check`: reach the server and read its schema version, without refusing any version. */
  static async probe(url: string, opts: PgStoreOptions = {}): Promise<{ schemaVersion: number; latestSchemaVersion: number } | { problem: string }> {
    const pool = makePool(url, { ...opts, poolSize: 1 });
    try {
      return { schemaVersion: await schemaVersion(pool), latestSchemaVersion: PG_SCHEMA_VERSION };
    } catch (err) {
      return { problem: err instanceof Error ? err.message : String(err) };
    } finally {
      await pool.end().catch(() => undefined);
    }
  }

  // -- registry (backend/pg-registry.ts) --------------------------------------------------------

  async addGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): Promise<GatewayRecord> {
    return this.#reg.addGateway(g);
  }
  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    return this.#reg.getGateway(id);
  }
  async listGateways(): Promise<GatewayRecord[]> {
    return this.#reg.listGateways();
  }
  async revokeGateway(id: string): Promise<boolean> {
    return this.#reg.revokeGateway(id);
  }
  async deviceProblem(d: NewDevice): Promise<string | undefined> {
    return this.#reg.deviceProblem(d);
  }
  async addDevice(d: NewDevice): Promise<DeviceRecord> {
    return this.#reg.addDevice(d);
  }
  async addDevices(devices: readonly NewDevice[]): Promise<number> {
    return this.#reg.addDevices(devices);
  }
  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.#reg.getDevice(id);
  }
  async listDevices(): Promise<DeviceRecord[]> {
    return this.#reg.listDevices();
  }
  async revokeDevice(id: string): Promise<number | undefined> {
    return this.#reg.revokeDevice(id);
  }
  async revocationsSince(since: number, limit?: number, gw?: string): Promise<{ cursor: number; devices: string[] }> {
    return this.#reg.revocationsSince(since, limit, gw);
  }
  async recordVerifiedAt(dev: string, gw: string): Promise<void> {
    return this.#reg.recordVerifiedAt(dev, gw);
  }
  async gatewaysVerifiedAt(dev: string): Promise<string[]> {
    return this.#reg.gatewaysVerifiedAt(dev);
  }
  async markDeviceV2(dev: string): Promise<void> {
    return this.#reg.markDeviceV2(dev);
  }
  async deviceV2Since(dev: string): Promise<number | undefined> {
    return this.#reg.deviceV2Since(dev);
  }
  async recordGrant(g: GrantRecord): Promise<void> {
    return this.#reg.recordGrant(g);
  }
  async newestGrant(dev: string): Promise<GrantRecord | undefined> {
    return this.#reg.newestGrant(dev);
  }
  async devicesForVerify(ids: readonly string[]): Promise<Map<string, VerifyDevice>> {
    return this.#reg.devicesForVerify(ids);
  }
  async recordVerifyOutcomes(outcomes: VerifyOutcomes): Promise<void> {
    return this.#reg.recordVerifyOutcomes(outcomes);
  }
  async recordSessionKey(gw: string, publicKey: Uint8Array, notAfter: number): Promise<void> {
    return this.#reg.recordSessionKey(gw, publicKey, notAfter);
  }
  async sessionKeys(gw: string, now: number): Promise<SessionKeyRecord[]> {
    return this.#reg.sessionKeys(gw, now);
  }
  async checkNonce(keyid: string, nonce: string, created: number, now: number): Promise<NonceOutcome> {
    return this.#reg.checkNonce(keyid, nonce, created, now);
  }
  async sweepNonces(now: number): Promise<number> {
    return this.#reg.sweepNonces(now);
  }
  async nonceCount(): Promise<number> {
    return this.#reg.nonceCount();
  }

  async status(): Promise<StoreStatus> {
    const v = await runOn(this.#pool, (c) => schemaVersion(c));

    return { kind: 'postgres', where: redactUrl(this.#url), schemaVersion: v, latestSchemaVersion: PG_SCHEMA_VERSION };
  }

  // -- data plane (backend/pg-data-plane.ts) ----------------------------------------------------

  async storeTelemetry(gw: string, records: readonly TelemetryRecord[]): Promise<{ accepted: number; duplicates: number }> {
    return this.#dp.storeTelemetry(gw, records);
  }
  async telemetryAfter(afterId: number, limit: number, dev?: string): Promise<StoredTelemetry[]> {
    return this.#dp.telemetryAfter(afterId, limit, dev);
  }
  async telemetryLast(n: number, dev?: string): Promise<StoredTelemetry[]> {
    return this.#dp.telemetryLast(n, dev);
  }
  async verdictWindows(gw: string, devs: readonly string[]): Promise<Map<string, VerdictWindow>> {
    return this.#dp.verdictWindows(gw, devs);
  }
  async nextCommandId(dev: string): Promise<number> {
    return this.#dp.nextCommandId(dev);
  }
  async queueCommand(c: NewCommand): Promise<CommandRecord> {
    return this.#dp.queueCommand(c);
  }
  async replaceCommand(c: NewCommand): Promise<boolean> {
    return this.#dp.replaceCommand(c);
  }
  async openCommands(devs: readonly string[], now: number): Promise<CommandRecord[]> {
    return this.#dp.openCommands(devs, now);
  }
  async commandsFor(gw: string, since: number, now: number, limit: number): Promise<{ cursor: number; commands: CommandRecord[] }> {
    return this.#dp.commandsFor(gw, since, now, limit);
  }
  async listCommands(dev: string): Promise<CommandRecord[]> {
    return this.#dp.listCommands(dev);
  }
  async recordAcks(gw: string, acks: readonly AckRecord[]): Promise<number> {
    return this.#dp.recordAcks(gw, acks);
  }
  async onCommandQueued(listener: (gw: string) => void): Promise<() => void> {
    return this.#dp.onCommandQueued(listener);
  }

  async close(): Promise<void> {
    await this.#dp.close();
    await this.#pool.end();
  }
}
