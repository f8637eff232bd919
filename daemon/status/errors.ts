import { CodedError } from '../../common/errors.js';

export type StatusErrorCode =
  /** Something that is not ours (a symlink) sits at the socket path. */
  | 'GH_STATUS_SOCKET_SYMLINK'
  /** Something other than a socket sits at the socket path. */
  | 'GH_STATUS_SOCKET_NOT_SOCKET'
  /** Another daemon answers on the socket path. */
  | 'GH_STATUS_SOCKET_IN_USE'
  /** The socket could not be bound or given its permissions. */
  | 'GH_STATUS_LISTEN'
  /** A request's query parameter is malformed or out of range (answered 400). */
  | 'GH_STATUS_BAD_QUERY';

/** The status socket could not be served, or a request to it was malformed. */
export class StatusError extends CodedError<StatusErrorCode> {}
