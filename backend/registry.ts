/**
 * The reference backend's registry in SQLite (better-sqlite3, WAL, prepared statements):
 * gateways and their TPM public keys, devices and their Ed25519 keys, where each device may
 * authenticate and its MQTT policy, the revocation feed, and the session keys issued to each
 * gateway (the two newest are kept: protocol-v1, "rotation never drops a request").
 */
import Database from 'better-sqlite3';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { DEFAULT_POLICY, ed25519PublicKeyProblem, isValidId, topicFilterProblem, type Policy } from '../protocol/index.js';
import { RegistryError } from './errors.js';

export type Status = 'active' | 'revoked';

export interface GatewayRecord {
  id: string;
  /** SPKI PEM of the gateway's TPM key (ECDSA P-256). */
  tpmPublicKeyPem: string;
  /** SHA-256 of the DER SubjectPublicKeyInfo: the credential's `tpk`. */
  tpk: Uint8Array;
  groups: string[];
  status: Status;
  createdAt: number;
  revokedAt?: number;
}

export interface DeviceRecord {
  id: string;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  /** Gateway ids, `group:<name>` entries, or `*` for any gateway. */
  gateways: string[];
  /** MQTT policy template (`{dev}` not yet expanded). */
  policy: Policy;
  status: Status;
  createdAt: number;
  revokedAt?: number;
}

export interface NewDevice {
  id: string;
  publicKey: Uint8Array;
  gateways: readonly string[];
  policy?: Policy;
}

export interface SessionKeyRecord {
  publicKey: Uint8Array;
  notAfter: number;
  issuedAt: number;
}

/** How many session keys per gateway are honoured (protocol-v1: the two newest). */
export const SESSION_KEYS_KEPT = 2;
/** Most revocations one feed page carries; the gateway asks again from the returned cursor. */
export const REVOCATION_PAGE = 1000;

const SCHEMA_VERSION = 1;
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS gateways (
  id TEXT PRIMARY KEY,
  tpm_public_key_pem TEXT NOT NULL,
  tpk BLOB NOT NULL CHECK (length(tpk) = 32),
  groups TEXT NOT NULL DEFAULT '[]',
  status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY,
  public_key BLOB NOT NULL CHECK (length(public_key) = 32),
  gateways TEXT NOT NULL,
  policy TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS revocations (
  cursor INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  revoked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS session_keys (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  gateway_id TEXT NOT NULL REFERENCES gateways(id) ON DELETE CASCADE,
  public_key BLOB NOT NULL CHECK (length(public_key) = 32),
  issued_at INTEGER NOT NULL,
  not_after INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_keys_gw ON session_keys (gateway_id, seq);
`;

/** Unix seconds. */
export type NowSeconds = () => number;

interface GatewayRow {
  id: string;
  tpm_public_key_pem: string;
  tpk: Buffer;
  groups: string;
  status: Status;
  created_at: number;
  revoked_at: number | null;
}

interface DeviceRow {
  id: string;
  public_key: Buffer;
  gateways: string;
  policy: string;
  status: Status;
  created_at: number;
  revoked_at: number | null;
}

/** Why a device's gateway list entry is unacceptable, or undefined. */
export function gatewayEntryProblem(entry: string): string | undefined {
  if (entry === '*') return undefined;
  const id = entry.startsWith('group:') ? entry.slice(6) : entry;
  return isValidId(id) ? undefined : `"${entry}" is not a gateway id, group:<name> or *`;
}

/** Why a policy is unacceptable, or undefined. Exactly `{pub: [...], sub: [...]}`. */
export function policyProblem(policy: unknown): string | undefined {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) return 'policy must be an object {"pub": [...], "sub": [...]}';
  const keys = Object.keys(policy);
  if (keys.some((k) => k !== 'pub' && k !== 'sub') || keys.length !== 2) return 'policy must have exactly "pub" and "sub"';
  for (const name of ['pub', 'sub'] as const) {
    const list = (policy as Record<string, unknown>)[name];
    if (!Array.isArray(list) || list.length > 64) return `policy "${name}" must be an array of at most 64 topic filters`;
    for (const f of list) {
      const p = topicFilterProblem(f);
      if (p !== undefined) return `policy "${name}" filter ${JSON.stringify(f)} ${p}`;
    }
  }
  return undefined;
}

/** The TPM key of a gateway: a P-256 SPKI PEM, and its thumbprint. */
export function parseTpmPublicKey(pem: string): { key: KeyObject; pem: string; tpk: Uint8Array } {
  const m = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(pem);
  if (!m) throw new RegistryError('GH_REGISTRY_BAD_KEY', 'no "BEGIN PUBLIC KEY" PEM block found');
  let key: KeyObject;
  try {
    key = createPublicKey(m[0]);
  } catch (cause) {
    throw new RegistryError('GH_REGISTRY_BAD_KEY', 'the PEM block is not a public key', { cause });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new RegistryError('GH_REGISTRY_BAD_KEY', 'a gateway TPM key must be ECDSA P-256');
  }
  const der = key.export({ format: 'der', type: 'spki' });
  // protocol-v1 key 10: tpk = SHA-256 of the DER SubjectPublicKeyInfo.
  const tpk = new Uint8Array(createHash('sha256').update(der).digest());
  return { key, pem: key.export({ format: 'pem', type: 'spki' }).toString(), tpk };
}

/** The registry. One instance per database file; synchronous (better-sqlite3). */
export class Registry {
  readonly #db: Database.Database;
  readonly #now: NowSeconds;
  readonly #stmts;

  private constructor(db: Database.Database, now: NowSeconds) {
    this.#db = db;
    this.#now = now;
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
  static open(path: string, opts: { now?: NowSeconds } = {}): Registry {
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: 5000 });
      // Mode 0600 before WAL: SQLite gives the -wal and -shm files the database file's mode.
      if (path !== ':memory:') chmodSync(path, 0o600);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.exec(SCHEMA);
      const v = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'schema'").get();
      if (v === undefined) db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
      else if (v.value !== String(SCHEMA_VERSION)) {
        db.close();
        throw new RegistryError('GH_REGISTRY_SCHEMA', `registry schema ${v.value} is not supported (expected ${SCHEMA_VERSION})`);
      }
    } catch (cause) {
      if (cause instanceof RegistryError) throw cause;
      throw new RegistryError('GH_REGISTRY_OPEN', `cannot open the registry at ${path}`, { cause });
    }
    return new Registry(db, opts.now ?? (() => Math.floor(Date.now() / 1000)));
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  // -- gateways ---------------------------------------------------------------------------------

  addGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): GatewayRecord {
    if (!isValidId(g.id)) throw new RegistryError('GH_REGISTRY_BAD_ID', `"${g.id}" is not a valid gateway id`);
    const groups = [...(g.groups ?? [])];
    for (const name of groups) if (!isValidId(name)) throw new RegistryError('GH_REGISTRY_BAD_ID', `"${name}" is not a valid group name`);
    const { pem, tpk } = parseTpmPublicKey(g.tpmPublicKeyPem);
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
    if (!isValidId(d.id)) return `"${d.id}" is not a valid device id`;
    const keyProblem = ed25519PublicKeyProblem(d.publicKey);
    if (keyProblem !== undefined) return `public key: ${keyProblem}`;
    if (d.gateways.length === 0) return 'at least one gateway (id, group:<name> or *) is required';
    if (d.gateways.length > 256) return 'at most 256 gateway entries';
    for (const e of d.gateways) {
      const p = gatewayEntryProblem(e);
      if (p !== undefined) return p;
    }
    if (d.policy !== undefined) {
      const p = policyProblem(d.policy);
      if (p !== undefined) return p;
    }
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
    return device.gateways.some((e) => e === '*' || e === gw.id || (e.startsWith('group:') && gw.groups.includes(e.slice(6))));
  }

  // -- revocation feed --------------------------------------------------------------------------

  /** Devices revoked after `since`, oldest first, at most {@link REVOCATION_PAGE}; `cursor` to ask from next. */
  revocationsSince(since: number, limit = REVOCATION_PAGE): { cursor: number; devices: string[] } {
    const rows = this.#stmts.revocationsSince.all(since, limit);
    const last = rows[rows.length - 1];
    const cursor = last !== undefined ? last.cursor : Math.min(since, this.#stmts.maxCursor.get()?.c ?? 0);
    return { cursor, devices: rows.map((r) => r.device_id) };
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

function gatewayFromRow(r: GatewayRow): GatewayRecord {
  return {
    id: r.id,
    tpmPublicKeyPem: r.tpm_public_key_pem,
    tpk: new Uint8Array(r.tpk),
    groups: JSON.parse(r.groups) as string[],
    status: r.status,
    createdAt: r.created_at,
    ...(r.revoked_at !== null ? { revokedAt: r.revoked_at } : {}),
  };
}

function deviceFromRow(r: DeviceRow): DeviceRecord {
  return {
    id: r.id,
    publicKey: new Uint8Array(r.public_key),
    gateways: JSON.parse(r.gateways) as string[],
    policy: JSON.parse(r.policy) as Policy,
    status: r.status,
    createdAt: r.created_at,
    ...(r.revoked_at !== null ? { revokedAt: r.revoked_at } : {}),
  };
}
