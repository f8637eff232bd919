/** Errors of the reference backend (registry, key file, admin CLI). */
import { CodedError } from '../common/errors.js';

export type RegistryErrorCode =
  /** The registry database cannot be opened. */
  | 'GH_REGISTRY_OPEN'
  /** The registry database has a schema this version does not know. */
  | 'GH_REGISTRY_SCHEMA'
  /** A gateway or device id outside 1–64 characters of [A-Za-z0-9._:-]. */
  | 'GH_REGISTRY_BAD_ID'
  /** A public key that is not acceptable (length, encoding, small order). */
  | 'GH_REGISTRY_BAD_KEY'
  /** A device record that is not acceptable (e.g. its policy). */
  | 'GH_REGISTRY_BAD_DEVICE'
  /** A gateway or device with that id is already registered. */
  | 'GH_REGISTRY_EXISTS'
  /** The data directory cannot be made private (0700) or is not a directory. */
  | 'GH_REGISTRY_DATA_DIR';

/** The registry refused or could not do an operation. */
export class RegistryError extends CodedError<RegistryErrorCode> {}

export type BackendKeyErrorCode =
  /** The signing key file does not exist. */
  | 'GH_BACKEND_KEY_MISSING'
  /** The signing key file cannot be read. */
  | 'GH_BACKEND_KEY_READ'
  /** The signing key path is not a regular file. */
  | 'GH_BACKEND_KEY_NOT_FILE'
  /** The signing key file is readable by group or others. */
  | 'GH_BACKEND_KEY_MODE'
  /** The signing key file does not hold an Ed25519 private key. */
  | 'GH_BACKEND_KEY_INVALID';

/** The backend's signing key file cannot be used. */
export class BackendKeyError extends CodedError<BackendKeyErrorCode> {}

export type BackendConfigErrorCode =
  /** The public origin is missing or not `https://host[:port]`. */
  'GH_BACKEND_ORIGIN';

/** The server's configuration is unusable. */
export class BackendConfigError extends CodedError<BackendConfigErrorCode> {}

export type StoreErrorCode =
  /** `--store` is not sqlite:PATH or postgres://… */
  | 'GH_STORE_URL'
  /** The store cannot be reached now (PostgreSQL down, restarting, out of connections): retry later. */
  | 'GH_STORE_UNAVAILABLE'
  /** The database's schema is newer than this backend knows: upgrade the backend. */
  | 'GH_STORE_SCHEMA_NEWER'
  /** The database's schema is older than this backend needs: run `gatehouse-backend migrate`. */
  | 'GH_STORE_SCHEMA_OLDER';

/** The backend's store (SQLite or PostgreSQL) refused or failed an operation. */
export class StoreError extends CodedError<StoreErrorCode> {}

export type CommandErrorCode =
  /** No such device, or it is revoked. */
  | 'GH_COMMAND_NO_DEVICE'
  /** The device has no protocol-v2 grant: S has no `hh` to bind a command to. */
  | 'GH_COMMAND_NO_GRANT'
  /** The body is over 800 bytes or the signed command over 1,200. */
  | 'GH_COMMAND_TOO_LARGE'
  /** The topic is not a protocol-v2 topic name (1–128 bytes, no wildcard, no NUL). */
  | 'GH_COMMAND_BAD_TOPIC'
  /** The ttl is outside 1 s to 7 days. */
  | 'GH_COMMAND_BAD_TTL';

/** S refused to issue a command. */
export class CommandError extends CodedError<CommandErrorCode> {}
