/**
 * Options of the MQTT transport: the configurable values, the built-in limits and their
 * validation (all problems reported at once, each naming its option).
 */
import type { Logger } from 'winston';
import type { TimerClock } from '../../../common/clock.js';
import type { AuthPipeline, RevocationSource } from '../../pipeline/types.js';
import { MqttError } from './errors.js';
import type { SessionDataPlane } from '../../sessions/session.js';
import type { SessionTable } from '../../sessions/table.js';
import type { MsgRelay } from '../../sessions/msg-relay.js';

/**
 * The transport's configurable values, resolved from the config (daemon/config/settings.ts): the
 * schema holds their defaults, so none has one here.
 */
export interface MqttSettings {
  /** Plain TCP listener (port 0 picks a free port); `false` disables it. */
  tcp: { host: string; port: number } | false;
  /** Concurrent connections given CONNACK 0; beyond it CONNACK 3 (server unavailable). */
  maxConnections: number;
  /** Of those, connections not yet welcomed (at most maxConnections take effect); beyond it CONNACK 3. */
  maxUnwelcomed: number;
  /** Open connections from one source address; beyond it new ones are closed at accept. */
  maxConnectionsPerSource: number;
  /** New connections per second from one source address (burst the same); beyond it closed at accept. */
  acceptsPerSourcePerSec: number;
  /** Largest MQTT packet accepted (fixed header included). */
  maxPacketBytes: number;
  /** protocol-v1: a connection not welcomed within this is closed. */
  authTimeoutMs: number;
  /** Time between accept and CONNECT. */
  connectTimeoutMs: number;
  /** Largest keepalive (seconds) a client may ask for; 0 (none) is refused too. */
  keepaliveMaxSec: number;
  /** Unwelcomed connections bound to one device at once (bound by what they publish). */
  maxUnwelcomedPerDevice: number;
  /** Protocol versions answered (protocol-v2 "Negotiation"); others get `unsupported-version`. */
  versions: readonly (1 | 2)[];
  /** A v2 session with no frame that decrypts within this ends (`bye idle`); at least 60 s in the config. */
  firstFrameTimeoutMs: number;
}

/** Built-in limits, not configurable (tests and benches change some). */
export const MQTT_TUNING = {
  /** Allow retained publishes on policy topics. */
  allowRetain: false,
  /** Auth messages queued per connection for the pipeline; beyond it they are dropped. */
  maxQueuedPerConnection: 16,
  /** Bound on one down publish and on each step of stop(). */
  operationTimeoutMs: 5000,
  /** stop() waits this long at most for auth messages being decided and replies being published. */
  drainTimeoutMs: 5000,
  /** Distinct subscriptions one connection may hold; beyond it SUBACK 0x80. */
  maxSubscriptionsPerConnection: 32,
  /**
   * Connections over capacity held until their CONNECT so they hear CONNACK 3; beyond
   * maxConnections + this they are closed at accept (each holds a descriptor meanwhile).
   */
  refusalSlots: 64,
  /** Descriptors kept free for everything else (backend link, status socket, SQLite, TPM, logs). */
  descriptorReserve: 64,
  /** Source addresses whose accept rate is tracked; the least recently seen is forgotten beyond it. */
  maxTrackedSources: 10_000,
};

export interface MqttTransportOptions extends MqttSettings, Partial<typeof MQTT_TUNING> {
  pipeline: AuthPipeline;
  revocations?: RevocationSource;
  /** The durable data plane for v2 pubs, acks and commands (daemon/uplink/); absent, pubs are only published locally. */
  dataPlane?: SessionDataPlane & { attach(table: SessionTable): void };
  /** protocol-v2 "msg": broker messages to the v2 sessions their `sub` grants; absent, none are relayed. */
  msgRelay?: MsgRelay;
  /**
   * The gateway's v2 session table, shared with the other transports (daemon/compose.ts); absent,
   * the transport keeps its own (transport tests).
   */
  sessions?: SessionTable;
  logger?: Logger;
  /** Arms the auth, v1 session-age and v2 session timers (default: monotonic, real timers); tests inject one. */
  clock?: TimerClock;
  /** TLS listener with a server certificate (PEM); off unless given. */
  tls?: { host: string; port: number; cert: string | Buffer; key: string | Buffer };
}

/** The options with the built-in limits applied. */
export type ResolvedOptions = Required<Omit<MqttTransportOptions, 'revocations' | 'logger' | 'tcp' | 'tls' | 'dataPlane' | 'msgRelay' | 'clock' | 'sessions'>>;

/** Applies the built-in limits and validates; throws GH_MQTT_BAD_OPTION naming every bad option. */
export function resolveOptions(options: MqttTransportOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    ...MQTT_TUNING,
    pipeline: options.pipeline,
    maxConnections: options.maxConnections,
    maxUnwelcomed: options.maxUnwelcomed,
    maxConnectionsPerSource: options.maxConnectionsPerSource,
    acceptsPerSourcePerSec: options.acceptsPerSourcePerSec,
    maxPacketBytes: options.maxPacketBytes,
    authTimeoutMs: options.authTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs,
    keepaliveMaxSec: options.keepaliveMaxSec,
    maxUnwelcomedPerDevice: options.maxUnwelcomedPerDevice,
    versions: options.versions,
    firstFrameTimeoutMs: options.firstFrameTimeoutMs,
    ...definedOnly({
      allowRetain: options.allowRetain,
      maxQueuedPerConnection: options.maxQueuedPerConnection,
      operationTimeoutMs: options.operationTimeoutMs,
      drainTimeoutMs: options.drainTimeoutMs,
      maxSubscriptionsPerConnection: options.maxSubscriptionsPerConnection,
      refusalSlots: options.refusalSlots,
      descriptorReserve: options.descriptorReserve,
      maxTrackedSources: options.maxTrackedSources,
    }),
  };
  const bad: string[] = [];
  for (const name of [
    'maxConnections',
    'maxUnwelcomed',
    'maxConnectionsPerSource',
    'acceptsPerSourcePerSec',
    'maxTrackedSources',
    'authTimeoutMs',
    'connectTimeoutMs',
    'keepaliveMaxSec',
    'maxUnwelcomedPerDevice',
    'firstFrameTimeoutMs',
    'maxQueuedPerConnection',
    'operationTimeoutMs',
    'maxSubscriptionsPerConnection',
  ] as const) {
    const v = o[name];
    if (!Number.isSafeInteger(v) || v < 1) bad.push(`${name}: expected an integer >= 1, got ${String(v)}`);
  }
  for (const name of ['refusalSlots', 'descriptorReserve'] as const) {
    if (!Number.isSafeInteger(o[name]) || o[name] < 0) bad.push(`${name}: expected an integer >= 0, got ${String(o[name])}`);
  }
  if (!Number.isSafeInteger(o.drainTimeoutMs) || o.drainTimeoutMs < 0) bad.push(`drainTimeoutMs: expected an integer >= 0, got ${String(o.drainTimeoutMs)}`);
  // An auth message is at most 1024 bytes; the topic and headers need room too.
  if (!Number.isSafeInteger(o.maxPacketBytes) || o.maxPacketBytes < 2048) {
    bad.push(`maxPacketBytes: expected an integer >= 2048, got ${String(o.maxPacketBytes)}`);
  }
  if (!Array.isArray(o.versions) || o.versions.length === 0 || !o.versions.every((v) => v === 1 || v === 2)) bad.push(`versions: expected a non-empty list of 1 and/or 2, got ${String(o.versions)}`);
  if (options.tcp === false && options.tls === undefined) bad.push('tcp/tls: at least one listener is needed');
  if (bad.length > 0) throw new MqttError('GH_MQTT_BAD_OPTION', `invalid MQTT options: ${bad.join('; ')}`);
  return o;
}

/** The fields of `o` that are not undefined (so they do not override the built-in limits). */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
