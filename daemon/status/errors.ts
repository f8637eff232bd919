import { GatehouseError } from '../../common/errors.js';

/**
 * The status socket could not be served. Codes: GH_STATUS_SOCKET_SYMLINK,
 * GH_STATUS_SOCKET_NOT_SOCKET, GH_STATUS_SOCKET_IN_USE, GH_STATUS_LISTEN.
 */
export class StatusError extends GatehouseError {}
