/**
 * The events and counters a `BleTransport` reports (status socket, metrics, logs).
 */
import type { ReasonCode } from '../../../protocol/index.js';
import type { BleError } from './errors.js';
import type { BleAdapterState } from './port.js';

/** How one exchange ended, for the status socket and metrics. */
export interface BleExchangeEvent {
  /** The pipeline connection id, `ble:<n>`. */
  connection: string;
  /** BLE address, for logs only. */
  address: string;
  outcome: 'welcome' | 'reject' | 'failed';
  /** The device id from the hello, when the pipeline decided on one. */
  dev?: string;
  reason?: ReasonCode;
  /** The BLE error code when the exchange failed. */
  error?: string;
  /** Hold-off before this address is tried again (ms). */
  holdOffMs: number;
  /** The protocol version of the exchange (2 on the v2 characteristic). */
  version?: 1 | 2;
}

/** A v2 session that ended (its welcome was an `exchange` event). */
export interface BleSessionEvent {
  connection: string;
  address: string;
  dev: string;
  /** `bye`, `idle`, `malformed`, `expired`, … or the BLE error code that ended it. */
  end: string;
  framesIn: number;
  framesOut: number;
  durationMs: number;
}

/** Why a discovery did not lead to a connection. */
export type BleSkipReason = 'not-advertising-service' | 'not-connectable' | 'held-off' | 'queue-full' | 'busy-with-it';

/** Events of a `BleTransport`. */
export interface BleTransportEvents {
  state: (state: BleAdapterState) => void;
  connected: (info: { connection: string; address: string; active: number }) => void;
  exchange: (event: BleExchangeEvent) => void;
  session: (event: BleSessionEvent) => void;
  skipped: (info: { address: string; reason: BleSkipReason; malformed: boolean }) => void;
  error: (err: BleError) => void;
}

/** Counters for the status socket. */
export interface BleTransportStats {
  state: BleAdapterState;
  scanning: boolean;
  active: number;
  queued: number;
  /** Most links observed open at once since start. */
  maxActive: number;
  /** v2 sessions live now (links kept after a welcome). */
  sessions: number;
  welcomed: number;
  rejected: number;
  failed: number;
  heldOff: number;
}
