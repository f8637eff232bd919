/**
 * Options of the MQTT transport, their defaults and their validation (all problems reported at
 * once, each naming its option).
 */
import type { Logger } from 'winston';
import type { AuthPipeline, RevocationSource } from '../../pipeline/types.js';
import { MqttError } from './errors.js';

export interface MqttTransportOptions {
  pipeline: AuthPipeline;
  revocations?: RevocationSource;
  logger?: Logger;
  /** Plain TCP listener; `false` disables it. Default 127.0.0.1, port 1883 (0 picks a free port). */
  tcp?: { host?: string; port?: number } | false;
  /** TLS listener with a server certificate (PEM); off unless given. */
  tls?: { host?: string; port?: number; cert: string | Buffer; key: string | Buffer };
  /** Concurrent connections; beyond it new ones are dropped at accept. Default 1000. */
  maxConnections?: number;
  /** Largest MQTT packet accepted (fixed header included). Default 65536. */
  maxPacketBytes?: number;
  /** protocol-v1: a connection not welcomed within this is closed. Default 60000. */
  authTimeoutMs?: number;
  /** Time between accept and CONNECT. Default 10000. */
  connectTimeoutMs?: number;
  /** Largest keepalive (seconds) a client may ask for; 0 (none) is refused too. Default 300. */
  keepaliveMaxSec?: number;
  /** Allow retained publishes on policy topics. Default false. */
  allowRetain?: boolean;
  /** Auth messages queued per connection for the pipeline; beyond it they are dropped. Default 16. */
  maxQueuedPerConnection?: number;
  /** Bound on one down publish and on stop(). Default 5000. */
  operationTimeoutMs?: number;
  /** stop() waits this long at most for auth messages being decided and replies being published. Default 5000. */
  drainTimeoutMs?: number;
  /** Distinct subscriptions one connection may hold; beyond it SUBACK 0x80. Default 32. */
  maxSubscriptionsPerConnection?: number;
}

/** The options with every default applied. */
export type ResolvedOptions = Required<Omit<MqttTransportOptions, 'revocations' | 'logger' | 'tcp' | 'tls'>>;

/** Applies the defaults and validates; throws GH_MQTT_BAD_OPTION naming every bad option. */
export function resolveOptions(options: MqttTransportOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    pipeline: options.pipeline,
    maxConnections: options.maxConnections ?? 1000,
    maxPacketBytes: options.maxPacketBytes ?? 65536,
    authTimeoutMs: options.authTimeoutMs ?? 60_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    keepaliveMaxSec: options.keepaliveMaxSec ?? 300,
    allowRetain: options.allowRetain ?? false,
    maxQueuedPerConnection: options.maxQueuedPerConnection ?? 16,
    operationTimeoutMs: options.operationTimeoutMs ?? 5000,
    drainTimeoutMs: options.drainTimeoutMs ?? 5000,
    maxSubscriptionsPerConnection: options.maxSubscriptionsPerConnection ?? 32,
  };
  const bad: string[] = [];
  for (const name of [
    'maxConnections',
    'authTimeoutMs',
    'connectTimeoutMs',
    'keepaliveMaxSec',
    'maxQueuedPerConnection',
    'operationTimeoutMs',
    'maxSubscriptionsPerConnection',
  ] as const) {
    const v = o[name];
    if (!Number.isSafeInteger(v) || v < 1) bad.push(`${name}: expected an integer >= 1, got ${String(v)}`);
  }
  if (!Number.isSafeInteger(o.drainTimeoutMs) || o.drainTimeoutMs < 0) bad.push(`drainTimeoutMs: expected an integer >= 0, got ${String(o.drainTimeoutMs)}`);
  // An auth message is at most 1024 bytes; the topic and headers need room too.
  if (!Number.isSafeInteger(o.maxPacketBytes) || o.maxPacketBytes < 2048) {
    bad.push(`maxPacketBytes: expected an integer >= 2048, got ${String(o.maxPacketBytes)}`);
  }
  if (options.tcp === false && options.tls === undefined) bad.push('tcp/tls: at least one listener is needed');
  if (bad.length > 0) throw new MqttError('GH_MQTT_BAD_OPTION', `invalid MQTT options: ${bad.join('; ')}`);
  return o;
}
