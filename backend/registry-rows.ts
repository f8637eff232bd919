/**
 * The registry's rows as both stores read them (SQLite through better-sqlite3, PostgreSQL through
 * pg: the same columns and types), and their mapping to records.
 */
import type { Policy } from '../protocol/index.js';

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

export interface GatewayRow {
  id: string;
  tpm_public_key_pem: string;
  tpk: Buffer;
  groups: string;
  status: Status;
  created_at: number;
  revoked_at: number | null;
}

export interface DeviceRow {
  id: string;
  public_key: Buffer;
  gateways: string;
  policy: string;
  status: Status;
  created_at: number;
  revoked_at: number | null;
}

/** A gateway row as a record. */
export function gatewayFromRow(r: GatewayRow): GatewayRecord {
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

/** A device row as a record. */
export function deviceFromRow(r: DeviceRow): DeviceRecord {
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
