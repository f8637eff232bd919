/** The backend client's counters and gauges, as metrics and the status socket read them. */
import type { CircuitState } from './breaker.js';
import type { BackendErrorKind } from './errors.js';

/** Plain numbers for metrics and the status socket. */
export interface BackendClientStats {
  /** HTTP requests sent (all calls, retries included). */
  requests: number;
  /** Verify requests (batches) sent, retries included. */
  batches: number;
  hellos: number;
  verdictsOk: number;
  verdictsRejected: number;
  busy: number;
  retries: number;
  offlineWelcomes: number;
  offlineRejects: number;
  /** Offline welcomes refused (backend-unavailable) because revocation polls kept failing. */
  offlineRefusedStale: number;
  unavailable: number;
  errors: Record<BackendErrorKind | 'lease', number>;
  circuit: CircuitState;
  /** The same as a number for gauges: 0 closed, 1 half-open, 2 open. */
  circuitState: 0 | 1 | 2;
  circuitOpens: number;
  inFlight: number;
  queued: number;
  leases: number;
  leaseBytes: number;
  revocationPolls: number;
  revokedDevices: number;
  revocationCursor: number;
  /** Revocation polls failed, all and in a row now. */
  revocationFailedPolls: number;
  revocationFailedInARow: number;
  /** True after `maxFailedRevocationPolls` failed polls in a row: offline welcomes are refused. */
  revocationsStale: boolean;
  /** TPM signatures, when the session provider reports them. */
  tpmSignatures: number;
}

/** The circuit state as a gauge value. */
export const CIRCUIT_GAUGE: Record<CircuitState, 0 | 1 | 2> = { closed: 0, 'half-open': 1, open: 2 };

/** Every error counter, at zero. */
export const ZERO_ERRORS = (): BackendClientStats['errors'] => ({
  tls: 0, connect: 0, timeout: 0, network: 0, redirect: 0, server: 0, client: 0, response: 0, 'circuit-open': 0, aborted: 0,
  'no-session': 0, lease: 0,
});
