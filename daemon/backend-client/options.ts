/**
 * Options of the backend client: the configurable values (resolved from the config, defaults in
 * the schema only) and the built-in tuning that is not configurable.
 */
import type { Logger } from 'winston';
import type { TimerClock } from '../../common/clock.js';
import type { SessionProvider } from '../pipeline/types.js';
import type { BreakerSettings } from './breaker.js';
import type { BackendHttp } from './dispatcher.js';

/**
 * The client's configurable values, resolved from the config (daemon/config/settings.ts): the
 * schema holds their defaults, so none has one here.
 */
export interface BackendClientSettings {
  /** Hellos per request (at most 256). */
  maxBatch: number;
  /** Longest a hello waits for companions while a batch is in flight. */
  maxWaitMs: number;
  /** A hello that finds no batch in flight leaves at the end of this turn. */
  flushWhenIdle: boolean;
  /** Concurrent verify requests. */
  maxInFlight: number;
  /** Hellos waiting for a request slot before `busy` is answered. */
  maxQueue: number;
  /** Per-attempt HTTP deadline. */
  requestTimeoutMs: number;
  breaker: BreakerSettings;
  /** Revocation poll period (a revoked device is closed within two). 0 disables. */
  revocationPollMs: number;
  /** Revocation polls failed in a row after which offline welcomes are refused, until one succeeds. */
  maxFailedRevocationPolls: number;
  /** Leases kept for the offline rule (0: none). */
  maxLeases: number;
}

/** Built-in tuning, not configurable (tests shorten some). */
export const CLIENT_TUNING = {
  /** A hello's deadline when the caller gives none (the pipeline always gives one). */
  verifyTimeoutMs: 10_000,
  /** Attempts per batch, first included. */
  maxAttempts: 3,
  /** Retry backoff base and cap. */
  retryBaseMs: 100,
  retryMaxMs: 2000,
  /** `retry` (s) in a backend-unavailable answer when the breaker gives none. */
  unavailableRetrySeconds: 30,
  /** Least time between two renewals forced by a 401 for the session key. */
  forcedRenewalMinMs: 300_000,
} as const;

export interface BackendClientOptions extends BackendClientSettings, Partial<Record<keyof typeof CLIENT_TUNING, number>> {
  gw: string;
  http: BackendHttp;
  /** The session provider; `renewNow` (optional) is called when the backend refuses our session key. */
  session: SessionProvider & { renewNow?: () => Promise<boolean> };
  /** The backend's pinned Ed25519 keys, kid → raw public key (`pk_S`). */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** Directory for `leases.db` and `revocations.json`. */
  stateDir: string;
  /** Lease cache bounds beyond `maxLeases` (their defaults are the cache's). */
  leases?: { maxBytes?: number; persistDelayMs?: number };
  clock?: TimerClock;
  random?: () => number;
  /** Request nonce source (tests inject a repeating one to see replay refused). */
  nonce?: () => string;
  logger?: Logger;
}
