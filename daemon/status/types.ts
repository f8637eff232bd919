/**
 * What the status socket serves. The daemon implements StatusSource (the composition root
 * wires it to the real gateway); the server only renders it.
 */
import type { Registry } from 'prom-client';
import type { CheckReport } from '../check/types.js';
import type { DecisionEvent, TransportKind } from '../pipeline/types.js';
import type { FailingPeripheral } from './failing.js';
import type { SessionInfo } from '../sessions/session.js';
import type { CommandStats } from '../uplink/commands.js';
import type { ScanPeripheral } from '../transports/ble/scan.js';

export type { FailingPeripheral } from './failing.js';

export interface StatusReport {
  gateway: {
    id: string;
    version: string;
    production: boolean;
    pid: number;
    /** Unix milliseconds. */
    startedAt: number;
    uptimeSec: number;
  };
  state: 'starting' | 'running' | 'degraded' | 'stopping';
  session: {
    held: boolean;
    /** Unix seconds the gateway credential expires. */
    notAfter?: number;
  };
  backend: {
    state: 'online' | 'offline' | 'unknown';
    circuit: 'closed' | 'open' | 'half-open';
    queued: number;
    inFlight: number;
    /** Unix milliseconds of the last successful call. */
    lastOkAt?: number;
    /**
     * The revocation feed: `stale` after `backend.revocations.maxFailedPolls` failed polls in a
     * row, and then offline welcomes are `refused` until a poll succeeds.
     */
    revocations?: { stale: boolean; failedPollsInARow: number; offlineWelcomes: 'allowed' | 'refused' };
  };
  tpm: { kind: 'tpm' | 'software'; ready: boolean };
  transports: {
    mqtt: { listeners: { name: string; address: string; port: number; tls: boolean }[]; connections: number };
    ble: { enabled: boolean; adapterState: string; active: number };
  };
  decisions: { welcome: number; reject: number; offline: number };
  /** The pipeline's rate limits in force (requests per minute; SIGHUP changes them). */
  rateLimits: { perConnectionPerMin: number; perDevicePerMin: number; globalPerMin: number };
  /** Devices whose recent attempts failed (the length of `/v1/failing`). */
  failing?: number;
  /** The v2 data plane: the durable queue, its uploader and the command relay (absent without one). */
  uplink?: UplinkStatus;
}

/** The data plane as the operator sees it (daemon/uplink/; counters since the daemon started). */
export interface UplinkStatus {
  queue: {
    /** Telemetry records waiting for the backend, their bytes, and the oldest one's age (s). */
    records: number;
    bytes: number;
    oldestAgeSec: number;
    /** Device acks waiting for the backend. */
    acks: number;
    /** Pubs answered busy (queue full or a failed commit). */
    busy: number;
    /** Records deleted unsent for age. */
    expired: number;
  };
  uploader: {
    circuit: 'closed' | 'open' | 'half-open';
    uploaded: number;
    duplicates: number;
    /** Records and acks the backend refused for good (dropped, logged). */
    refused: number;
    acksUploaded: number;
    failures: number;
    /** Unix milliseconds of the last answered upload. */
    lastSuccessAt?: number;
    lastError?: string;
  };
  /** The command relay's counters (its poll count and cursor are not shown). */
  commands: Omit<CommandStats, 'polls' | 'cursor'>;
}

export interface PeripheralInfo {
  dev: string;
  transport: TransportKind;
  connection: string;
  /** For display only; never an identity. */
  remote: string;
  state: 'pending' | 'welcomed';
  /** Unix milliseconds. */
  since: number;
  offline: boolean;
  /** Unix seconds the device lease expires, when known. */
  leaseExp?: number;
  /** The live protocol-v2 session of this connection, if any. */
  session?: PeripheralSession;
  /** Commands the gateway holds for this device, not yet acknowledged (v2 data plane). */
  commandsPending?: number;
}

/** A protocol-v2 session as the operator sees it (no keys: `sid` names the session, it is not secret). */
export type PeripheralSession = Pick<SessionInfo, 'version' | 'sid' | 'ageMs' | 'lifeSeconds' | 'framesIn' | 'framesOut' | 'drops' | 'denied' | 'msgs' | 'msgDrops'>;

export interface EventPage {
  events: DecisionEvent[];
  /** Pass as `since` to get the events after these. */
  next: number;
  /** True when events after `since` were already overwritten in the bounded ring. */
  truncated: boolean;
}

/** `/v1/scan`: what the running BLE transport has heard, or why there is no BLE. */
export interface ScanReport {
  ble: { available: true; adapterState: string; scanning: boolean } | { available: false; reason: string };
  /** The log's bounds: addresses kept at most, and seconds an address is kept unseen. */
  limits?: { maxEntries: number; ttlSec: number };
  /** The most recently seen first. */
  peripherals: ScanPeripheral[];
}

export type { ScanPeripheral } from '../transports/ble/scan.js';

export interface StatusSource {
  getStatus(): StatusReport | Promise<StatusReport>;
  getPeripherals(): PeripheralInfo[] | Promise<PeripheralInfo[]>;
  /** Events with seq > since, oldest first, at most `limit`; only device `dev`'s when given. */
  getEvents(since: number, limit: number, dev?: string): EventPage;
  /** Devices whose recent attempts failed, the most recent first (`/v1/failing`). */
  getFailing(): FailingPeripheral[] | Promise<FailingPeripheral[]>;
  runChecks(): Promise<CheckReport>;
  /** Nearby BLE peripherals (`/v1/scan`); a source without it has no BLE to report. */
  getScan?(): ScanReport | Promise<ScanReport>;
  /** A private prom-client Registry (never the global one) served at /metrics. */
  readonly registry: Registry;
}
