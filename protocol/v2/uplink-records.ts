/**
 * The data-plane records of protocol-v2 "Backend HTTP API (v2 additions)", decoded (byte
 * strings as `Uint8Array`s): what the gateway queues and uploads and what the backend stores.
 */
import type { CommandStatus } from './types.js';

/** One telemetry record (`POST /v1/gateways/{gw}/telemetry`). */
export interface TelemetryRecord {
  dev: string;
  /** The session id (8 bytes). */
  sid: Uint8Array;
  seq: number;
  topic: string;
  body: Uint8Array;
  /** When the gateway received the frame, unix milliseconds. */
  receivedAt: number;
  /** The peripheral's message id, when it sent one. */
  mid?: number;
}

/** One device ack (`POST /v1/gateways/{gw}/acks`). */
export interface AckRecord {
  dev: string;
  cid: number;
  status: CommandStatus;
  /** Unix milliseconds. */
  at: number;
}
