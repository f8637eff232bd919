/** Errors of the reference backend (registry, key file, admin CLI). */
import { GatehouseError } from '../common/errors.js';

/** Stable codes: `GH_REGISTRY_*` for the registry, `GH_BACKEND_KEY_*` for the signing key file. */
export class RegistryError extends GatehouseError {}

export class BackendKeyError extends GatehouseError {}

/** `GH_BACKEND_ORIGIN`: the server's configuration (a missing or malformed public origin). */
export class BackendConfigError extends GatehouseError {}
