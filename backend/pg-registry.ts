/**
 * The registry half of the PostgreSQL store (backend/pg-store.ts): gateways, devices, the
 * revocation feed, where devices were verified and their v2 grants, session keys and request
 * nonces, as named prepared statements over the store's pool. Nothing is kept in this process
 * but the time of the last nonce sweep: a nonce is a unique row (`INSERT … ON CONFLICT`), so a
 * nonce used at one replica is refused at every other.
 */
import type pg from 'pg';
import { DEFAULT_POLICY, GATEHOUSE_MAX_SKEW_SECONDS } from '../protocol/index.js';
import { RegistryError } from './errors.js';
import type { NonceOutcome } from './nonce-store.js';
import { inTransaction, namedQuery, type Queryable } from './pg-pool.js';
import { checkNewGateway, newDeviceProblem } from './registry-checks.js';
import { REVOCATION_PAGE, SESSION_KEYS_KEPT, type DeviceRecord, type GatewayRecord, type GrantRecord, type NewDevice, type NowSeconds, type SessionKeyRecord } from './registry.js';
import { normaliseOutcomes, type VerifyDevice, type VerifyOutcomes } from './store.js';
import { deviceFromRow, gatewayFromRow, type DeviceRow, type GatewayRow } from './registry-rows.js';

/** How often expired nonce rows are deleted by this process, seconds. */
const SWEEP_EVERY_S = 60;

const SQL = {
  getGateway: 'SELECT * FROM gateways WHERE id = $1',
  listGateways: 'SELECT * FROM gateways ORDER BY id',
  insertGateway:
    "INSERT INTO gateways (id, tpm_public_key_pem, tpk, groups, status, created_at) VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (id) DO NOTHING RETURNING *",
  revokeGateway: "UPDATE gateways SET status = 'revoked', revoked_at = $1 WHERE id = $2 AND status = 'active'",
  deleteSessions: 'DELETE FROM session_keys WHERE gateway_id = $1',
  getDevice: 'SELECT * FROM devices WHERE id = $1',
  listDevices: 'SELECT * FROM devices ORDER BY id',
  deviceExists: 'SELECT 1 FROM devices WHERE id = $1',
  insertDevice:
    "INSERT INTO devices (id, public_key, gateways, policy, status, created_at) VALUES ($1, $2, $3, $4, 'active', $5) ON CONFLICT (id) DO NOTHING RETURNING *",
  revokeDevice: "UPDATE devices SET status = 'revoked', revoked_at = $1 WHERE id = $2 AND status = 'active'",
  // Feed order is commit order: inserts are serialised, so a reader never sees cursor n+1 before n.
  lockRevocations: 'LOCK TABLE revocations IN SHARE ROW EXCLUSIVE MODE',
  insertRevocation: 'INSERT INTO revocations (device_id, revoked_at) VALUES ($1, $2) RETURNING cursor',
  // One statement, one snapshot: the page and the newest cursor agree.
  revocationsSince: `WITH page AS (
      SELECT r.cursor, r.device_id FROM revocations r
      WHERE r.cursor > $1 AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM device_gateways dg WHERE dg.device_id = r.device_id AND dg.gateway_id = $2))
      ORDER BY r.cursor LIMIT $3),
    top AS (SELECT coalesce(max(cursor), 0) AS m FROM revocations)
    SELECT top.m, page.cursor, page.device_id FROM top LEFT JOIN page ON true ORDER BY page.cursor`,
  recordVerifiedAt:
    'INSERT INTO device_gateways (device_id, gateway_id, first_at, last_at) VALUES ($1, $2, $3, $3) ON CONFLICT (device_id, gateway_id) DO UPDATE SET last_at = GREATEST(device_gateways.last_at, excluded.last_at)',
  verifiedAt: 'SELECT gateway_id FROM device_gateways WHERE device_id = $1 ORDER BY gateway_id',
  markV2: 'INSERT INTO device_v2 (device_id, since) VALUES ($1, $2) ON CONFLICT DO NOTHING',
  v2Since: 'SELECT since FROM device_v2 WHERE device_id = $1',
  putGrant: `INSERT INTO grants (device_id, gateway_id, hh, spk, iat, life) VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (device_id) DO UPDATE SET gateway_id = excluded.gateway_id, hh = excluded.hh, spk = excluded.spk, iat = excluded.iat, life = excluded.life`,
  getGrant: 'SELECT * FROM grants WHERE device_id = $1',
  devicesForVerify: 'SELECT d.*, v.since AS v2_since FROM devices d LEFT JOIN device_v2 v ON v.device_id = d.id WHERE d.id = ANY($1::text[])',
  // One statement for a batch's writes; the arrays are deduplicated and sorted (a fixed lock order).
  verifyOutcomes: `WITH v2 AS (
      INSERT INTO device_v2 (device_id, since) SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING),
    va AS (
      INSERT INTO device_gateways (device_id, gateway_id, first_at, last_at) SELECT d, g, $2, l FROM unnest($3::text[], $4::text[], $11::int8[]) AS t(d, g, l)
      ON CONFLICT (device_id, gateway_id) DO UPDATE SET last_at = GREATEST(device_gateways.last_at, excluded.last_at))
    INSERT INTO grants (device_id, gateway_id, hh, spk, iat, life)
      SELECT * FROM unnest($5::text[], $6::text[], $7::bytea[], $8::bytea[], $9::int8[], $10::int8[])
    ON CONFLICT (device_id) DO UPDATE SET gateway_id = excluded.gateway_id, hh = excluded.hh, spk = excluded.spk, iat = excluded.iat, life = excluded.life`,
  // The gateway's row is the lock that orders two replicas certifying for one gateway at once.
  lockGateway: 'SELECT 1 FROM gateways WHERE id = $1 FOR UPDATE',
  deleteSameSession: 'DELETE FROM session_keys WHERE gateway_id = $1 AND public_key = $2',
  insertSession: 'INSERT INTO session_keys (gateway_id, public_key, issued_at, not_after) VALUES ($1, $2, $3, $4)',
  pruneSessions: 'DELETE FROM session_keys WHERE gateway_id = $1 AND seq NOT IN (SELECT seq FROM session_keys WHERE gateway_id = $1 ORDER BY seq DESC LIMIT $2)',
  sessions: 'SELECT public_key, issued_at, not_after FROM session_keys WHERE gateway_id = $1 ORDER BY seq DESC LIMIT $2',
  // The unique key is the replay check: of two replicas inserting one nonce, one gets the row.
  // A row whose window has passed is taken over; a live one is left alone (no row returned).
  // The quota is counted in the same statement (a bound: two replicas may each pass it once).
  putNonce: `INSERT INTO nonces (keyid, nonce, expires_at)
    SELECT $1, $2, $3 WHERE (SELECT count(*) FROM (SELECT 1 FROM nonces WHERE keyid = $1 AND expires_at >= $4 LIMIT $5) q) < $5
    ON CONFLICT (keyid, nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at < $4
    RETURNING 1`,
  liveNonce: 'SELECT 1 FROM nonces WHERE keyid = $1 AND nonce = $2 AND expires_at >= $3',
  sweepNonces: 'DELETE FROM nonces WHERE expires_at < $1',
  countNonces: 'SELECT count(*)::int8 AS n FROM nonces',
} as const;

/** What `PgRegistry` runs on. */
export interface PgRegistryDeps {
  pool: pg.Pool;
  now: NowSeconds;
  /** Live request nonces each keyid may hold. */
  noncesPerKeyid: number;
}

/** Gateways, devices, revocations, v2 records, session keys and nonces in PostgreSQL. */
export class PgRegistry {
  readonly #pool: pg.Pool;
  readonly #now: NowSeconds;
  readonly #perKeyid: number;
  #lastSweep = 0;

  constructor(deps: PgRegistryDeps) {
    this.#pool = deps.pool;
    this.#now = deps.now;
    this.#perKeyid = deps.noncesPerKeyid;
  }

  async #q<R extends pg.QueryResultRow>(name: keyof typeof SQL, values: unknown[], on: Queryable = this.#pool): Promise<pg.QueryResult<R>> {
    return namedQuery<R>(on, `gh_${name}`, SQL[name], values);
  }

  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.#pool, fn);
  }

  // -- gateways ---------------------------------------------------------------------------------

  async addGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): Promise<GatewayRecord> {
    const { groups, pem, tpk } = checkNewGateway(g);
    const r = await this.#q<GatewayRow>('insertGateway', [g.id, pem, Buffer.from(tpk), JSON.stringify(groups), this.#now()]);
    const row = r.rows[0];
    if (row === undefined) throw new RegistryError('GH_REGISTRY_EXISTS', `gateway "${g.id}" already exists`);
    return gatewayFromRow(row);
  }

  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    const row = (await this.#q<GatewayRow>('getGateway', [id])).rows[0];
    return row === undefined ? undefined : gatewayFromRow(row);
  }

  async listGateways(): Promise<GatewayRecord[]> {
    return (await this.#q<GatewayRow>('listGateways', [])).rows.map(gatewayFromRow);
  }

  async revokeGateway(id: string): Promise<boolean> {
    return this.#tx(async (c) => {
      const changed = ((await this.#q('revokeGateway', [this.#now(), id], c)).rowCount ?? 0) > 0;
      if (changed) await this.#q('deleteSessions', [id], c);
      return changed;
    });
  }

  // -- devices ----------------------------------------------------------------------------------

  async deviceProblem(d: NewDevice): Promise<string | undefined> {
    const problem = newDeviceProblem(d);
    if (problem !== undefined) return problem;
    if ((await this.#q('deviceExists', [d.id])).rows.length > 0) return `device "${d.id}" already exists`;
    return undefined;
  }

  async #insertDevice(d: NewDevice, on: Queryable): Promise<DeviceRecord> {
    const problem = newDeviceProblem(d);
    if (problem !== undefined) throw new RegistryError('GH_REGISTRY_BAD_DEVICE', problem);
    const policy = d.policy ?? { pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] };
    const r = await this.#q<DeviceRow>('insertDevice', [d.id, Buffer.from(d.publicKey), JSON.stringify([...d.gateways]), JSON.stringify(policy), this.#now()], on);
    const row = r.rows[0];
    if (row === undefined) throw new RegistryError('GH_REGISTRY_BAD_DEVICE', `device "${d.id}" already exists`);
    return deviceFromRow(row);
  }

  async addDevice(d: NewDevice): Promise<DeviceRecord> {
    return this.#insertDevice(d, this.#pool);
  }

  async addDevices(devices: readonly NewDevice[]): Promise<number> {
    await this.#tx(async (c) => {
      for (const d of devices) await this.#insertDevice(d, c);
    });
    return devices.length;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const row = (await this.#q<DeviceRow>('getDevice', [id])).rows[0];
    return row === undefined ? undefined : deviceFromRow(row);
  }

  async listDevices(): Promise<DeviceRecord[]> {
    return (await this.#q<DeviceRow>('listDevices', [])).rows.map(deviceFromRow);
  }

  async revokeDevice(id: string): Promise<number | undefined> {
    return this.#tx(async (c) => {
      const at = this.#now();
      await this.#q('lockRevocations', [], c);
      if (((await this.#q('revokeDevice', [at, id], c)).rowCount ?? 0) === 0) return undefined;
      return (await this.#q<{ cursor: number }>('insertRevocation', [id, at], c)).rows[0]?.cursor;
    });
  }

  // -- revocation feed --------------------------------------------------------------------------

  async revocationsSince(since: number, limit = REVOCATION_PAGE, gw?: string): Promise<{ cursor: number; devices: string[] }> {
    const rows = (await this.#q<{ m: number; cursor: number | null; device_id: string | null }>('revocationsSince', [since, gw ?? null, limit])).rows;
    const page = rows.filter((r) => r.cursor !== null);
    const last = page[page.length - 1];
    const cursor = last !== undefined && page.length === limit ? (last.cursor as number) : (rows[0]?.m ?? 0);
    return { cursor, devices: page.map((r) => r.device_id as string) };
  }

  // -- where devices were verified, protocol v2 ------------------------------------------------

  async recordVerifiedAt(dev: string, gw: string): Promise<void> {
    await this.#q('recordVerifiedAt', [dev, gw, this.#now()]);
  }

  async gatewaysVerifiedAt(dev: string): Promise<string[]> {
    return (await this.#q<{ gateway_id: string }>('verifiedAt', [dev])).rows.map((r) => r.gateway_id);
  }

  async markDeviceV2(dev: string): Promise<void> {
    await this.#q('markV2', [dev, this.#now()]);
  }

  async deviceV2Since(dev: string): Promise<number | undefined> {
    return (await this.#q<{ since: number }>('v2Since', [dev])).rows[0]?.since;
  }

  async recordGrant(g: GrantRecord): Promise<void> {
    await this.#q('putGrant', [g.dev, g.gw, Buffer.from(g.hh), Buffer.from(g.spk), g.iat, g.life]);
  }

  async newestGrant(dev: string): Promise<GrantRecord | undefined> {
    const r = (await this.#q<{ device_id: string; gateway_id: string; hh: Buffer; spk: Buffer; iat: number; life: number }>('getGrant', [dev])).rows[0];
    return r === undefined ? undefined : { dev: r.device_id, gw: r.gateway_id, hh: new Uint8Array(r.hh), spk: new Uint8Array(r.spk), iat: r.iat, life: r.life };
  }

  async devicesForVerify(ids: readonly string[]): Promise<Map<string, VerifyDevice>> {
    const rows = (await this.#q<DeviceRow & { v2_since: number | null }>('devicesForVerify', [[...new Set(ids)]])).rows;
    return new Map(rows.map((r) => [r.id, { device: deviceFromRow(r), ...(r.v2_since !== null ? { v2Since: r.v2_since } : {}) }]));
  }

  async recordVerifyOutcomes(outcomes: VerifyOutcomes): Promise<void> {
    const o = normaliseOutcomes(outcomes);
    if (o.v2.length + o.verifiedAt.length + o.grants.length === 0) return;
    const now = this.#now();
    await this.#q('verifyOutcomes', [
      o.v2,
      now,
      o.verifiedAt.map((x) => x.dev),
      o.verifiedAt.map((x) => x.gw),
      o.grants.map((g) => g.dev),
      o.grants.map((g) => g.gw),
      o.grants.map((g) => Buffer.from(g.hh)),
      o.grants.map((g) => Buffer.from(g.spk)),
      o.grants.map((g) => g.iat),
      o.grants.map((g) => g.life),
      o.verifiedAt.map((x) => x.leaseIat ?? now),
    ]);
  }

  // -- session keys -----------------------------------------------------------------------------

  async recordSessionKey(gw: string, publicKey: Uint8Array, notAfter: number): Promise<void> {
    await this.#tx(async (c) => {
      await this.#q('lockGateway', [gw], c);
      // A retried certification of the same key must not push the previous key out.
      await this.#q('deleteSameSession', [gw, Buffer.from(publicKey)], c);
      await this.#q('insertSession', [gw, Buffer.from(publicKey), this.#now(), notAfter], c);
      await this.#q('pruneSessions', [gw, SESSION_KEYS_KEPT], c);
    });
  }

  async sessionKeys(gw: string, now: number): Promise<SessionKeyRecord[]> {
    const rows = (await this.#q<{ public_key: Buffer; issued_at: number; not_after: number }>('sessions', [gw, SESSION_KEYS_KEPT])).rows;
    return rows.filter((r) => r.not_after > now).map((r) => ({ publicKey: new Uint8Array(r.public_key), issuedAt: r.issued_at, notAfter: r.not_after }));
  }

  // -- nonces -----------------------------------------------------------------------------------

  async checkNonce(keyid: string, nonce: string, created: number, now: number): Promise<NonceOutcome> {
    if (now - this.#lastSweep >= SWEEP_EVERY_S) await this.sweepNonces(now);
    const until = created + GATEHOUSE_MAX_SKEW_SECONDS;
    if ((await this.#q('putNonce', [keyid, nonce, until, now, this.#perKeyid])).rows.length === 1) return 'fresh';
    // Nothing written: the nonce is live (a replay), or the key is over its quota.
    return (await this.#q('liveNonce', [keyid, nonce, now])).rows.length > 0 ? 'replay' : 'full';
  }

  async sweepNonces(now: number): Promise<number> {
    this.#lastSweep = now;
    return (await this.#q('sweepNonces', [now])).rowCount ?? 0;
  }

  async nonceCount(): Promise<number> {
    return (await this.#q<{ n: number }>('countNonces', [])).rows[0]?.n ?? 0;
  }
}
