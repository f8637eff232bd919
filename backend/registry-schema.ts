/**
 * The registry's SQLite schema (backend/registry.ts). Version 2 added where each device was
 * verified, the v2 devices, the newest grant per device and the persisted nonce window; a
 * version-1 file is upgraded on open.
 */
import { NONCE_SCHEMA } from './nonce-store.js';
import { DATA_PLANE_SCHEMA } from './sqlite-data-plane.js';

/** 3 added the data plane (telemetry, commands, acks); a version-2 file gains its tables on open. */
export const SCHEMA_VERSION = 3;
export const SCHEMA = `
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
CREATE TABLE IF NOT EXISTS device_gateways (
  device_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  first_at INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, gateway_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_gateways_gw ON device_gateways (gateway_id, device_id);
CREATE TABLE IF NOT EXISTS device_v2 (
  device_id TEXT PRIMARY KEY,
  since INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS grants (
  device_id TEXT PRIMARY KEY,
  gateway_id TEXT NOT NULL,
  hh BLOB NOT NULL CHECK (length(hh) = 32),
  spk BLOB NOT NULL CHECK (length(spk) = 32),
  iat INTEGER NOT NULL,
  life INTEGER NOT NULL
) STRICT;
${NONCE_SCHEMA}${DATA_PLANE_SCHEMA}`;
