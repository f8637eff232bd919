/**
 * The validated config turned into the settings each component takes. The schema holds every
 * default (CONTRIBUTING.md §7); components take these resolved values and keep no default of
 * their own for a configurable value.
 */
import type { BackendClientSettings } from '../backend-client/client.js';
import type { MqttSettings } from '../transports/mqtt/options.js';
import type { DataPlaneSettings } from '../uplink/data-plane.js';
import type { MsgRelaySettings } from '../sessions/msg-relay.js';
import type { GatehouseConfig } from './schema.js';

/** `backend.*` for the backend client. */
export function backendClientSettings(cfg: GatehouseConfig): BackendClientSettings {
  const b = cfg.backend;
  return {
    maxBatch: b.batch.maxSize,
    maxWaitMs: b.batch.maxWaitMs,
    flushWhenIdle: b.batch.flushWhenIdle,
    maxInFlight: b.maxInFlight,
    maxQueue: b.queueLimit,
    requestTimeoutMs: b.requestTimeoutMs,
    breaker: { failureThreshold: b.circuit.failureThreshold, openMs: b.circuit.openMs },
    revocationPollMs: b.revocationPollSec * 1000,
    maxFailedRevocationPolls: b.revocations.maxFailedPolls,
    maxLeases: b.leaseCache.enabled ? b.leaseCache.maxEntries : 0,
  };
}

/** protocol-v2: with no ack after 30 s, G sends the same command again. */
const COMMAND_RESEND_MS = 30_000;

/** `dataPlane.*` for the data plane. */
export function dataPlaneSettings(cfg: GatehouseConfig): DataPlaneSettings {
  const d = cfg.dataPlane;
  return {
    queue: { maxBytes: d.queue.maxBytes, maxAgeSec: d.queue.maxAgeSec, busyRetrySec: d.queue.busyRetrySec },
    publishLocal: d.publishLocal,
    commands: { waitSec: d.commands.waitSec, maxPerDevice: d.commands.maxPerDevice, resendMs: COMMAND_RESEND_MS },
  };
}

/** `dataPlane.msgQueuePerSession` for the msg relay. */
export function msgRelaySettings(cfg: GatehouseConfig): MsgRelaySettings {
  return { maxQueuedPerSession: cfg.dataPlane.msgQueuePerSession };
}

/** `mqtt.*` for the MQTT transport (the TLS listener's certificate and key are read by the caller). */
export function mqttSettings(cfg: GatehouseConfig): MqttSettings {
  const m = cfg.mqtt;
  return {
    tcp: m.tcp.enabled ? { host: m.tcp.host, port: m.tcp.port } : false,
    maxConnections: m.maxConnections,
    maxUnwelcomed: m.maxUnwelcomed,
    maxConnectionsPerSource: m.maxConnectionsPerSource,
    acceptsPerSourcePerSec: m.acceptsPerSourcePerSec,
    maxPacketBytes: m.maxPacketBytes,
    authTimeoutMs: m.authTimeoutSec * 1000,
    connectTimeoutMs: m.connectTimeoutSec * 1000,
    keepaliveMaxSec: m.keepaliveMaxSec,
    maxUnwelcomedPerDevice: m.maxUnwelcomedPerDevice,
    versions: cfg.protocol.versions,
    firstFrameTimeoutMs: cfg.protocol.firstFrameTimeoutSec * 1000,
  };
}
