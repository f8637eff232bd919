/**
 * The reference backend's registry in SQLite (better-sqlite3, WAL, prepared statements):
 * gateways and their TPM public keys, devices and their Ed25519 keys, where each device may
 * authenticate and its MQTT policy, the revocation feed, the session keys issued to each
 * gateway (the two newest are kept: protocol-v1, "rotation never drops a request"), which
 * gateways each device was verified at (so each gateway is fed only its own devices'
 * revocations), the devices that proved they speak protocol v2 (no downgrade), the newest v2
 * grant of each device, and the request nonce window (backend/nonce-store.ts).
 */
import Database from 'better-sqlite3';
import { DEFAULT_POLICY, GATEHOUSE_MAX_SKEW_SECONDS, type Grant, type Policy } from '../protocol/index.js';
import { ensurePrivateFile } from './data-dir.js';
import { RegistryError } from './errors.js';
import { NONCES_PER_KEYID, NonceStore } from './nonce-store.js';
import { checkNewGateway, deviceAllowedAt, gatewayEntryProblem, newDeviceProblem, parseTpmPublicKey, policyProblem } from './registry-checks.js';

export { gatewayEntryProblem, parseTpmPublicKey, policyProblem };
import { SCHEMA, SCHEMA_VERSION } from './registry-schema.js';
import { SqliteDataPlane } from './sqlite-data-plane.js';
import { deviceFromRow, gatewayFromRow, type DeviceRecord, type DeviceRow, type GatewayRecord, type GatewayRow } from './registry-rows.js';

export type { DeviceRecord, GatewayRecord, Status } from './registry-rows.js';

export interface NewDevice {
  id: string;
  publicKey: Uint8Array;
  gateways: readonly string[];
  policy?: Policy;
}

/** The newest protocol-v2 grant issued for a device (commands are bound to its `hh`): the grant's fields. */
export type GrantRecord = Omit<Grant, 'type' | 'version'>;

export interface SessionKeyRecord {
  publicKey: Uint8Array;
  notAfter: number;
  issuedAt: number;
}

/** How many session keys per gateway are honoured (protocol-v1: the two newest). */
export const SESSION_KEYS_KEPT = 2;
/** Most revocations one feed page carries; the gateway asks again from the returned cursor. */
export const REVOCATION_PAGE = 1000;

/** Unix seconds. */
export type NowSeconds = () => number;

export interface RegistryOptions {
  now?: NowSeconds;
  /** Live request nonces each keyid may hold (backend/nonce-store.ts). Default {@link NONCES_PER_KEYID}. */
  noncesPerKeyid?: number;
}

/** The registry. One instance per database file; synchronous (better-sqlite3). */
export class Registry {
  readonly #db: Database.Database;
  readonly #now: NowSeconds;
  readonly #stmts;
  /** The request nonce window (persisted here so a restart does not forget it). */
  readonly nonces: NonceStore;
  /** Telemetry, the command queue and acks (protocol-v2 data plane). */
  readonly dataPlane: SqliteDataPlane;

  private constructor(db: Database.Database, now: NowSeconds, opts: RegistryOptions) {
    this.#db = db;
    this.#now = now;
    this.dataPlane = new SqliteDataPlane(db, now);
    this.nonces = new NonceStore(db, opts.noncesPerKeyid ?? NONCES_PER_KEYID, GATEHOUSE_MAX_SKEW_SECONDS);
    this.#stmts = {
      getGateway: db.prepare<[string], GatewayRow>('SELECT * FROM gateways WHERE id = ?'),
      listGateways: db.prepare<[], GatewayRow>('SELECT * FROM gateways ORDER BY id'),
      insertGateway: db.prepare(
        "INSERT INTO gateways (id, tpm_public_key_pem, tpk, groups, status, created_at) VALUES (?, ?, ?, ?, 'active', ?)",
      ),
      revokeGateway: db.prepare("UPDATE gateways SET status = 'revoked', revoked_at = ? WHERE id = ? AND status = 'active'"),
      getDevice: db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE id = ?'),
      listDevices: db.prepare<[], DeviceRow>('SELECT * FROM devices ORDER BY id'),
      insertDevice: db.prepare(
        "INSERT INTO devices (id, public_key, gateways, policy, status, created_at) VALUES (?, ?, ?, ?, 'active', ?)",
      ),
      revokeDevice: db.prepare("UPDATE devices SET status = 'revoked', revoked_at = ? WHERE id = ? AND status = 'active'"),
      insertRevocation: db.prepare('INSERT INTO revocations (device_id, revoked_at) VALUES (?, ?)'),
      revocationsSince: db.prepare<[number, number], { cursor: number; device_id: string }>(
        'SELECT cursor, device_id FROM revocations WHERE cursor > ? ORDER BY cursor LIMIT ?',
      ),
      revocationsSinceAt: db.prepare<[number, string, number], { cursor: number; device_id: string }>(
        `SELECT r.cursor, r.device_id FROM revocations r
         WHERE r.cursor > ? AND EXISTS (SELECT 1 FROM device_gateways dg WHERE dg.device_id = r.device_id AND dg.gateway_id = ?)
         ORDER BY r.cursor LIMIT ?`,
      ),
      recordVerifiedAt: db.prepare(
        'INSERT INTO device_gateways (device_id, gateway_id, first_at, last_at) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET last_at = MAX(last_at, excluded.last_at)',
      ),
      verifiedAt: db.prepare<[string], { gateway_id: string }>('SELECT gateway_id FROM device_gateways WHERE device_id = ? ORDER BY gateway_id'),
      markV2: db.prepare('INSERT INTO device_v2 (device_id, since) VALUES (?, ?) ON CONFLICT DO NOTHING'),
      v2Since: db.prepare<[string], { since: number }>('SELECT since FROM device_v2 WHERE device_id = ?'),
      putGrant: db.prepare(
        `INSERT INTO grants (device_id, gateway_id, hh, spk, iat, life) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET gateway_id = excluded.gateway_id, hh = excluded.hh, spk = excluded.spk, iat = excluded.iat, life = excluded.life`,
      ),
      getGrant: db.prepare<[string], { device_id: string; gateway_id: string; hh: Buffer; spk: Buffer; iat: number; life: number }>(
        'SELECT * FROM grants WHERE device_id = ?',
      ),
      maxCursor: db.prepare<[], { c: number | null }>('SELECT max(cursor) AS c FROM revocations'),
      deleteSameSession: db.prepare('DELETE FROM session_keys WHERE gateway_id = ? AND public_key = ?'),
      insertSession: db.prepare('INSERT INTO session_keys (gateway_id, public_key, issued_at, not_after) VALUES (?, ?, ?, ?)'),
      pruneSessions: db.prepare(
        'DELETE FROM session_keys WHERE gateway_id = ? AND seq NOT IN (SELECT seq FROM session_keys WHERE gateway_id = ? ORDER BY seq DESC LIMIT ?)',
      ),
      deleteSessions: db.prepare('DELETE FROM session_keys WHERE gateway_id = ?'),
      sessions: db.prepare<[string, number], { public_key: Buffer; issued_at: number; not_after: number }>(
        'SELECT public_key, issued_at, not_after FROM session_keys WHERE gateway_id = ? ORDER BY seq DESC LIMIT ?',
      ),
    };
  }

  /** Open (creating if needed) the registry at `path`; `:memory:` for throwaway use. */
  static open(path: string, opts: RegistryOptions = {}): Registry {
    let db: Database.Database;
    let from: string | undefined;
    try {
      // Created 0600 before SQLite opens it (never readable by others, even for a moment);
      // SQLite gives the -wal and -shm files the database file's mode.
      if (path !== ':memory:') ensurePrivateFile(path);
      db = new Database(path, { timeout: 5000 });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.exec(SCHEMA);
      const v = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'schema'").get();
      if (v === undefined) db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
      else if (v.value === '1') from = v.value;
      // Version 2 lacked only the data-plane tables, which SCHEMA has just created.
      else if (v.value === '2') db.prepare("UPDATE meta SET value = ? WHERE key = 'schema'").run(String(SCHEMA_VERSION));
      else if (v.value !== String(SCHEMA_VERSION)) {
        db.close();
        throw new RegistryError('GH_REGISTRY_SCHEMA', `registry schema ${v.value} is not supported (expected ${SCHEMA_VERSION})`);
      }
    } catch (cause) {
      if (cause instanceof RegistryError) throw cause;
      throw new RegistryError('GH_REGISTRY_OPEN', `cannot open the registry at ${path}`, { cause });
    }
    const reg = new Registry(db, opts.now ?? (() => Math.floor(Date.now() / 1000)), opts);
    if (from === '1') reg.#migrateFrom1();
    return reg;
  }

  /**
   * Schema 1 did not record where devices were verified. Until they verify again, assume every
   * device was verified at every gateway it is allowed at, so no gateway misses a revocation.
   */
  #migrateFrom1(): void {
    this.#db.transaction(() => {
      const at = this.#now();
      const gateways = this.listGateways();
      for (const d of this.listDevices()) {
        for (const g of gateways) if (this.deviceAllowedAt(d, g)) this.#stmts.recordVerifiedAt.run(d.id, g.id, at, at);
      }
      this.#db.prepare("UPDATE meta SET value = ? WHERE key = 'schema'").run(String(SCHEMA_VERSION));
    })();
  }

  close(): void {
    this.dataPlane.close();
    if (this.#db.open) this.#db.close();
  }

  // -- gateways ---------------------------------------------------------------------------------

  addGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): GatewayRecord {
    const { groups, pem, tpk } = checkNewGateway(g);
    if (this.#stmts.getGateway.get(g.id) !== undefined) throw new RegistryError('GH_REGISTRY_EXISTS', `gateway "${g.id}" already exists`);
    this.#stmts.insertGateway.run(g.id, pem, Buffer.from(tpk), JSON.stringify(groups), this.#now());
    return this.getGateway(g.id) as GatewayRecord;
  }

  getGateway(id: string): GatewayRecord | undefined {
    const row = this.#stmts.getGateway.get(id);
    return row === undefined ? undefined : gatewayFromRow(row);
  }

  listGateways(): GatewayRecord[] {
    return this.#stmts.listGateways.all().map(gatewayFromRow);
  }

  /** Revoke a gateway and forget its session keys. False when unknown or already revoked. */
  revokeGateway(id: string): boolean {
    return this.#db.transaction(() => {
      const changed = this.#stmts.revokeGateway.run(this.#now(), id).changes > 0;
      if (changed) this.#stmts.deleteSessions.run(id);
      return changed;
    })();
  }

  // -- devices ----------------------------------------------------------------------------------

  /** Why `d` cannot be added, or undefined. Checks syntax and that the id is free. */
  deviceProblem(d: NewDevice): string | undefined {
    const problem = newDeviceProblem(d);
    if (problem !== undefined) return problem;
    if (this.#stmts.getDevice.get(d.id) !== undefined) return `device "${d.id}" already exists`;
    return undefined;
  }

  addDevice(d: NewDevice): DeviceRecord {
    const problem = this.deviceProblem(d);
    if (problem !== undefined) throw new RegistryError('GH_REGISTRY_BAD_DEVICE', problem);
    const policy = d.policy ?? { pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] };
    this.#stmts.insertDevice.run(d.id, Buffer.from(d.publicKey), JSON.stringify([...d.gateways]), JSON.stringify(policy), this.#now());
    return this.getDevice(d.id) as DeviceRecord;
  }

  /** Add all devices or none (one transaction). Callers check each with `deviceProblem` first. */
  addDevices(devices: readonly NewDevice[]): number {
    this.#db.transaction(() => {
      for (const d of devices) this.addDevice(d);
    })();
    return devices.length;
  }

  getDevice(id: string): DeviceRecord | undefined {
    const row = this.#stmts.getDevice.get(id);
    return row === undefined ? undefined : deviceFromRow(row);
  }

  listDevices(): DeviceRecord[] {
    return this.#stmts.listDevices.all().map(deviceFromRow);
  }

  /** Revoke a device and append it to the revocation feed. Returns the feed cursor, or undefined. */
  revokeDevice(id: string): number | undefined {
    return this.#db.transaction(() => {
      const at = this.#now();
      if (this.#stmts.revokeDevice.run(at, id).changes === 0) return undefined;
      return Number(this.#stmts.insertRevocation.run(id, at).lastInsertRowid);
    })();
  }

  /** protocol-v1: may `device` authenticate at gateway `gw`? */
  deviceAllowedAt(device: DeviceRecord, gw: GatewayRecord): boolean {
    return deviceAllowedAt(device, gw);
  }

  // -- revocation feed --------------------------------------------------------------------------

  /**
   * Devices revoked after `since`, oldest first, at most {@link REVOCATION_PAGE}; `cursor` to ask
   * from next. With `gw`, only devices that were verified at that gateway: a gateway learns
   * nothing about devices it never served. The cursor still moves past the others, so a gateway
   * does not ask for them again.
   */
  revocationsSince(since: number, limit = REVOCATION_PAGE, gw?: string): { cursor: number; devices: string[] } {
    return this.#db.transaction(() => {
      const rows = gw === undefined ? this.#stmts.revocationsSince.all(since, limit) : this.#stmts.revocationsSinceAt.all(since, gw, limit);
      const last = rows[rows.length - 1];
      // A full page: continue after its last row. Otherwise every row up to the newest was seen.
      const cursor = last !== undefined && rows.length === limit ? last.cursor : (this.#stmts.maxCursor.get()?.c ?? 0);
      return { cursor, devices: rows.map((r) => r.device_id) };
    })();
  }

  // -- where devices were verified, protocol v2 ------------------------------------------------

  /** Record that `dev` got an ok verdict at `gw` (it will be fed `dev`'s revocation). */
  /** An ok verdict for `dev` at `gw` now, carrying a lease issued at `leaseIat` (default now). */
  recordVerifiedAt(dev: string, gw: string, leaseIat?: number): void {
    const at = this.#now();
    this.#stmts.recordVerifiedAt.run(dev, gw, at, leaseIat ?? at);
  }

  /** The gateways `dev` was verified at. */
  gatewaysVerifiedAt(dev: string): string[] {
    return this.#stmts.verifiedAt.all(dev).map((r) => r.gateway_id);
  }

  /** protocol-v2 "No downgrade": `dev` proved it speaks v2; from now on its v1 hellos are refused. */
  markDeviceV2(dev: string): void {
    this.#stmts.markV2.run(dev, this.#now());
  }

  /** When `dev` was first recorded as v2, or undefined. */
  deviceV2Since(dev: string): number | undefined {
    return this.#stmts.v2Since.get(dev)?.since;
  }

  /** Keep `g` as the newest grant of its device (commands are signed with its `hh`). */
  recordGrant(g: GrantRecord): void {
    this.#stmts.putGrant.run(g.dev, g.gw, Buffer.from(g.hh), Buffer.from(g.spk), g.iat, g.life);
  }

  /** A verify batch's writes in one transaction (one WAL commit, not one per hello). */
  recordVerifyOutcomes(o: { v2: readonly string[]; verifiedAt: readonly { dev: string; gw: string; leaseIat?: number }[]; grants: readonly GrantRecord[] }): void {
    if (o.v2.length + o.verifiedAt.length + o.grants.length === 0) return;
    this.#db.transaction(() => {
      for (const dev of o.v2) this.markDeviceV2(dev);
      for (const x of o.verifiedAt) this.recordVerifiedAt(x.dev, x.gw, x.leaseIat);
      for (const g of o.grants) this.recordGrant(g);
    })();
  }

  newestGrant(dev: string): GrantRecord | undefined {
    const r = this.#stmts.getGrant.get(dev);
    return r === undefined ? undefined : { dev: r.device_id, gw: r.gateway_id, hh: new Uint8Array(r.hh), spk: new Uint8Array(r.spk), iat: r.iat, life: r.life };
  }

  // -- session keys -----------------------------------------------------------------------------

  /** Record a session key issued to `gw`, keeping only the newest {@link SESSION_KEYS_KEPT}. */
  recordSessionKey(gw: string, publicKey: Uint8Array, notAfter: number): void {
    this.#db.transaction(() => {
      // A retried certification of the same key must not push the previous key out.
      this.#stmts.deleteSameSession.run(gw, Buffer.from(publicKey));
      this.#stmts.insertSession.run(gw, Buffer.from(publicKey), this.#now(), notAfter);
      this.#stmts.pruneSessions.run(gw, gw, SESSION_KEYS_KEPT);
    })();
  }

  /** The newest session keys of `gw` that have not expired at `now` (unix s), newest first. */
  sessionKeys(gw: string, now: number): SessionKeyRecord[] {
    return this.#stmts.sessions
      .all(gw, SESSION_KEYS_KEPT)
      .filter((r) => r.not_after > now)
      .map((r) => ({ publicKey: new Uint8Array(r.public_key), issuedAt: r.issued_at, notAfter: r.not_after }));
  }
}
