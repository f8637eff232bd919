/**
 * Errors of the backend client. `kind` is what the retry policy, the circuit breaker and the
 * offline rule branch on (protocol-v1 "Offline": refused, timeout, 5xx, open circuit).
 */
import { CodedError } from '../../common/errors.js';

export type BackendErrorKind =
  /** TLS handshake refused: untrusted CA, wrong name, expired, pin mismatch. */
  | 'tls'
  /** TCP connection refused or unreachable. */
  | 'connect'
  /** Connect, headers or body timeout, or the caller's deadline. */
  | 'timeout'
  /** The connection broke mid-request. */
  | 'network'
  /** A 3xx: redirects are never followed. */
  | 'redirect'
  /** A 5xx answer. */
  | 'server'
  /** A 4xx answer (the request itself was refused). */
  | 'client'
  /** An answer that does not parse or verify. */
  | 'response'
  /** The circuit breaker is open: no request was sent. */
  | 'circuit-open'
  /** The caller aborted. */
  | 'aborted'
  /** No gateway session yet: a request cannot be signed. */
  | 'no-session';

const CODES = {
  tls: 'GH_BACKEND_TLS',
  connect: 'GH_BACKEND_CONNECT',
  timeout: 'GH_BACKEND_TIMEOUT',
  network: 'GH_BACKEND_NETWORK',
  redirect: 'GH_BACKEND_REDIRECT',
  server: 'GH_BACKEND_HTTP_5XX',
  client: 'GH_BACKEND_HTTP_4XX',
  response: 'GH_BACKEND_BAD_RESPONSE',
  'circuit-open': 'GH_BACKEND_CIRCUIT_OPEN',
  aborted: 'GH_BACKEND_ABORTED',
  'no-session': 'GH_BACKEND_NO_SESSION',
} as const satisfies Record<BackendErrorKind, `GH_BACKEND_${string}`>;

/** The stable code of each kind, one to one. */
export type BackendErrorCode = (typeof CODES)[BackendErrorKind];

/** One entry a data-plane upload named as refused (a `not-granted` problem's `refused` member). */
export interface RefusedEntry {
  index: number;
  dev: string;
  why: string;
}

/** RFC 9457 problem fields the client reads (each only when well-typed). */
export interface BackendProblem {
  type?: string;
  title?: string;
  detail?: string;
  reason?: string;
  /** `not-granted` (data plane): the entries of the request the backend refused. */
  refused?: RefusedEntry[];
}

/** A backend call failed. `status` and `problem` are set for HTTP answers. */
export class BackendError extends CodedError<BackendErrorCode> {
  readonly kind: BackendErrorKind;
  readonly status?: number;
  /** RFC 9457 problem fields the backend sent, when it sent any. */
  readonly problem?: BackendProblem;

  constructor(
    kind: BackendErrorKind,
    message: string,
    options?: { cause?: unknown; status?: number; problem?: BackendError['problem'] },
  ) {
    super(CODES[kind], message, options);
    this.kind = kind;
    if (options?.status !== undefined) this.status = options.status;
    if (options?.problem !== undefined) this.problem = options.problem;
  }

  /** protocol-v1 "Offline": the backend cannot be reached, so leases may be used. */
  get unreachable(): boolean {
    return (
      this.kind === 'connect' ||
      this.kind === 'timeout' ||
      this.kind === 'network' ||
      this.kind === 'server' ||
      this.kind === 'circuit-open' ||
      this.kind === 'tls'
    );
  }

  /** Worth retrying: transient by nature (never a TLS refusal, a redirect or a 4xx). */
  get retryable(): boolean {
    return this.kind === 'connect' || this.kind === 'timeout' || this.kind === 'network' || this.kind === 'server';
  }
}

/** The backend client's configuration is unusable (`GH_BACKEND_CONFIG`). */
export class BackendConfigError extends CodedError<'GH_BACKEND_CONFIG'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GH_BACKEND_CONFIG', message, options);
  }
}

export type SessionErrorCode =
  /** The credential does not verify under a pinned backend key. */
  | 'GH_SESSION_CRED_SIGNATURE'
  /** The credential is for another gateway. */
  | 'GH_SESSION_CRED_GW'
  /** The credential names another session key. */
  | 'GH_SESSION_CRED_SPK'
  /** The credential names another TPM key. */
  | 'GH_SESSION_CRED_TPK'
  /** The credential is already expired (or exp is not after iat). */
  | 'GH_SESSION_CRED_EXPIRED';

/** Session credential could not be obtained or is invalid. */
export class SessionError extends CodedError<SessionErrorCode> {}
