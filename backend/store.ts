/**
 * The reference backend's storage, behind one asynchronous interface with two implementations:
 * SQLite in the data directory (backend/sqlite-store.ts over backend/registry.ts, the embedded
 * default) and PostgreSQL (backend/pg-store.ts), which any number of stateless `serve` replicas
 * share. Everything one replica writes that another needs is here: gateways, devices, the
 * revocation feed, session keys, where each device was verified, the v2 devices and newest grants,
 * and the request nonce window. Nothing of it is cached in a process.
 *
 * The data-plane tables (telemetry, the command queue and its acks) are in
 * backend/data-plane-store.ts, which this interface extends.
 */
import type { DataPlaneStore } from './data-plane-store.js';
import type { NonceOutcome } from './nonce-store.js';
export { deviceAllowedAt } from './registry-checks.js';
import type { DeviceRecord, GatewayRecord, GrantRecord, NewDevice, SessionKeyRecord } from './registry.js';

export type StoreKind = 'sqlite' | 'postgres';

export interface VerifyDevice {
  device: DeviceRecord;
  v2Since?: number;
}

export interface VerifyOutcomes {
  v2: readonly string[];
  /**
   * Ok verdicts, with the `iat` of the lease each carried: a reused lease's is older than now
   * (backend/issued-leases.ts), and S's trust in G's telemetry for the device ends at that lease's
   * `exp` (`last_at` + leaseSeconds), never later.
   */
  verifiedAt: readonly VerifiedAt[];
  grants: readonly GrantRecord[];
}

export interface VerifiedAt {
  dev: string;
  gw: string;
  /** The lease's iat, unix seconds (default: now). */
  leaseIat?: number;
}

/** Outcomes with each key once (the last grant of a device wins), in key order (a fixed lock order). */
export function normaliseOutcomes(o: VerifyOutcomes): VerifyOutcomes {
  const v2 = [...new Set(o.v2)].sort();
  const va = new Map(o.verifiedAt.map((x) => [`${x.dev}\u0000${x.gw}`, x]));
  const grants = new Map(o.grants.map((g) => [g.dev, g]));
  return {
    v2,
    verifiedAt: [...va.keys()].sort().map((k) => va.get(k) as VerifiedAt),
    grants: [...grants.keys()].sort().map((k) => grants.get(k) as GrantRecord),
  };
}

export interface StoreStatus {
  kind: StoreKind;
  /** Where, without credentials: a file path or `postgres://host:port/db`. */
  where: string;
  /** The schema version the store holds. */
  schemaVersion: number;
  /** The schema version this build writes. */
  latestSchemaVersion: number;
}

export interface BackendStore extends DataPlaneStore {
  readonly kind: StoreKind;

  // gateways
  addGateway(g: { id: string; tpmPublicKeyPem: string; groups?: readonly string[] }): Promise<GatewayRecord>;
  getGateway(id: string): Promise<GatewayRecord | undefined>;
  listGateways(): Promise<GatewayRecord[]>;
  /** Revoke a gateway and forget its session keys. False when unknown or already revoked. */
  revokeGateway(id: string): Promise<boolean>;

  // devices
  /** Why `d` cannot be added, or undefined. Checks syntax and that the id is free. */
  deviceProblem(d: NewDevice): Promise<string | undefined>;
  addDevice(d: NewDevice): Promise<DeviceRecord>;
  /** Add all devices or none (one transaction). Callers check each with `deviceProblem` first. */
  addDevices(devices: readonly NewDevice[]): Promise<number>;
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  listDevices(): Promise<DeviceRecord[]>;
  /** Revoke a device and append it to the revocation feed. Returns the feed cursor, or undefined. */
  revokeDevice(id: string): Promise<number | undefined>;

  // the revocation feed
  /** Devices revoked after `since` (only those verified at `gw` when given), and the cursor to ask from next. */
  revocationsSince(since: number, limit?: number, gw?: string): Promise<{ cursor: number; devices: string[] }>;

  // where devices were verified, protocol v2
  recordVerifiedAt(dev: string, gw: string): Promise<void>;
  gatewaysVerifiedAt(dev: string): Promise<string[]>;
  markDeviceV2(dev: string): Promise<void>;
  deviceV2Since(dev: string): Promise<number | undefined>;
  recordGrant(g: GrantRecord): Promise<void>;
  newestGrant(dev: string): Promise<GrantRecord | undefined>;

  // one verify batch: one read before, one write after (not a round trip per hello)
  /** The devices named in a batch (unknown ones absent), each with when it was marked v2. */
  devicesForVerify(ids: readonly string[]): Promise<Map<string, VerifyDevice>>;
  /** A batch's outcomes, all at once: devices now v2, where devices verified, the newest grants. */
  recordVerifyOutcomes(o: VerifyOutcomes): Promise<void>;

  // session keys
  /** Record a session key issued to `gw`, keeping only the two newest. */
  recordSessionKey(gw: string, publicKey: Uint8Array, notAfter: number): Promise<void>;
  /** The newest session keys of `gw` that have not expired at `now` (unix s), newest first. */
  sessionKeys(gw: string, now: number): Promise<SessionKeyRecord[]>;

  // the request nonce window (protocol-v1: a nonce seen within 300 s is refused)
  /** Record `nonce` for `keyid` (signed at `created`); `replay` if it is live already, `full` over quota. */
  checkNonce(keyid: string, nonce: string, created: number, now: number): Promise<NonceOutcome>;
  /** Delete the nonces that can no longer be replayed. */
  sweepNonces(now: number): Promise<number>;
  /** Nonce rows stored (live or not yet swept). */
  nonceCount(): Promise<number>;

  status(): Promise<StoreStatus>;
  close(): Promise<void>;
}

/** A store location: `sqlite:PATH` (or a bare path) or `postgres://…` / `postgresql://…`. */
export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** Why `url` is not a store location, or the location. */
export function parseStoreUrl(url: string): StoreLocation | { problem: string } {
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      new URL(url);
    } catch {
      return { problem: 'the PostgreSQL URL does not parse' };
    }
    return { kind: 'postgres', url };
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') return { problem: 'sqlite: needs a path (sqlite:PATH)' };
    return { kind: 'sqlite', path };
  }
  return { problem: 'the store is sqlite:PATH or postgres://USER@HOST:PORT/DB' };
}

/** A PostgreSQL URL without its password, for logs and `check`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
