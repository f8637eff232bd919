/**
 * The MQTT transport: an embedded aedes 1.x broker (MQTT 3.1.1) on a TCP listener (loopback by
 * default) and an optional TLS listener. Auth messages on `gatehouse/v1/{dev}/up` go to the
 * AuthPipeline; its reply is published on `.../down` at QoS 1 (protocol-v1 "MQTT transport").
 * The access policy lives in acl.ts, the connections in connection-table.ts, the aedes hooks in
 * hooks/ (one file per verb); this file owns the broker and the listeners and wires them.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'winston';
import winston from 'winston';
import type { RevocationSource } from '../../pipeline/types.js';
import type { MqttConnection } from './connection.js';
import { MqttConnectionTable } from './connection-table.js';
import { MqttError } from './errors.js';
import { MqttFrameGuard } from './frame-guard.js';
import { connectHooks } from './hooks/connect.js';
import { deliverDown, deliverHooks, publishLocal } from './hooks/deliver.js';
import { publishHooks } from './hooks/publish.js';
import { subscribeHooks } from './hooks/subscribe.js';
import { MqttIngress } from './ingress.js';
import { resolveOptions, type MqttTransportOptions, type ResolvedOptions } from './options.js';
import { SessionTable, type SessionCounters } from '../../sessions/table.js';
import type { SessionInfo } from '../../sessions/session.js';
import type { SessionOpening } from '../../pipeline/types.js';
import { inAuthNamespace, topicMatches } from './topics.js';
import { Refusals, type RefusalCounts } from './refusals.js';
import { isDescriptorExhaustion, openDescriptorCount, openFileLimit } from '../../../common/descriptors.js';
import { TokenBucket } from '../../../common/token-bucket.js';

export type { MqttSettings, MqttTransportOptions } from './options.js';

/** Counters for metrics and tests. */
export interface MqttTransportStats {
  connections: number;
  welcomed: number;
  refusedAtAccept: number;
  frameViolations: number;
  droppedAuthMessages: number;
  closedByAuthTimeout: number;
  closedSuperseded: number;
  closedRevoked: number;
  /** v1 connections closed when their welcome ran out (lease exp or protocol.maxSessionAgeSec). */
  closedExpired: number;
  /** Live v2 sessions. */
  sessions: number;
  /** v2 session counters (opened, ended by reason, frames dropped by code, denied). */
  sessionCounters: SessionCounters;
  /** Connections refused, by why (CONNACK 3 or closed at accept). */
  refused: RefusalCounts;
  /** Connections this process can hold before it runs out of descriptors (undefined without /proc). */
  descriptorCapacity: number | undefined;
}

/** Pending-connection queue of the listeners: as deep as the kernel allows (see #listen). */
const LISTEN_BACKLOG = 65535;

/** The part of aedes' persistence (aedes-persistence 'memory') that forgetCleanOutgoing replaces. */
interface OutgoingClear {
  outgoingClearMessageId(client: Client, packet: { messageId?: number }): Promise<unknown>;
}

/**
 * aedes-persistence's memory store answers every PUBACK by looking up the client's outgoing
 * queue and *creates* an empty one when there is none (`getMapRef(…, CREATE_ON_EMPTY)`); nothing
 * deletes it for a clean session. Our broker-side client ids are unique per connection
 * (`mqtt:<n>`), so each connection that ever acknowledged a QoS 1 message left a map entry
 * behind for the life of the process. Every session here is clean, and aedes never queues
 * outgoing messages of a clean session in the store (deliverQoS writes them at once), so there is
 * nothing to clear for it; persistent sessions (none today) keep the store's behaviour.
 */
function forgetCleanOutgoing(broker: Aedes): void {
  const persistence = (broker as unknown as { persistence: OutgoingClear }).persistence;
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingClearMessageId = (client, packet) => (client.clean ? Promise.resolve(undefined) : clear(client, packet));
}

/**
 * mqtt-packet (aedes' encoder, loaded as aedes loads it: a dependency of aedes, not ours) writes
 * every 16-bit number (packet ids, topic lengths) from a table of 65,536 two-byte Buffers that it
 * builds at its first packet: 6.6 MB of heap, ~14 MB of RSS, for the life of the process.
 * Without it each number is a two-byte Buffer from the pool when written. The switch is
 * process-wide (anything else using this mqtt-packet, mqtt.js included, writes the same bytes).
 */
function dropNumberCache(): void {
  const mqttPacket = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } };
  mqttPacket.writeToStream.cacheNumbers = false;
}

/** Lifecycle events, for the status socket and tests (no payloads, no secrets). */
export interface MqttTransportEvents {
  /** A subscription was granted (`filter` as granted). */
  subscribed: [connection: string, filter: string, qos: number];
  /** A connection was welcomed as `dev`. */
  welcomed: [connection: string, dev: string];
  /** A connection closed. */
  closed: [connection: string, dev: string | undefined];
}

export class MqttTransport extends EventEmitter<MqttTransportEvents> {
  readonly #o: ResolvedOptions;
  readonly #tcp: { host: string; port: number } | undefined;
  readonly #tls: MqttTransportOptions['tls'];
  readonly #revocations: RevocationSource | undefined;
  readonly #log: Logger;
  readonly #table: MqttConnectionTable;
  readonly #ingress: MqttIngress;
  readonly #sessions: SessionTable;
  readonly #dataPlane: MqttTransportOptions['dataPlane'];
  readonly #counters = { refusedAtAccept: 0, frameViolations: 0 };
  readonly #refusals: Refusals;
  /** Open sockets per source address (pre-CONNECT included). */
  readonly #openBySource = new Map<string, number>();
  /** Accept-rate buckets per source address, least recently seen first (bounded). */
  readonly #acceptBySource = new Map<string, TokenBucket>();
  /** Connections the descriptor limit leaves room for (set at start). */
  #descriptorCapacity: number | undefined;
  #broker: Aedes | undefined;
  #servers: (net.Server | tls.Server)[] = [];
  #unsubscribeRevocations: (() => void) | undefined;

  constructor(options: MqttTransportOptions) {
    super();
    this.#o = resolveOptions(options);
    this.#tcp = options.tcp === false ? undefined : options.tcp;
    this.#tls = options.tls;
    this.#revocations = options.revocations;
    this.#log = (options.logger ?? winston.createLogger({ silent: true })).child({ area: 'mqtt' });
    this.#refusals = new Refusals(this.#log);
    this.#table = new MqttConnectionTable({
      log: this.#log,
      authTimeoutMs: this.#o.authTimeoutMs,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      events: {
        welcomed: (conn, dev) => this.#emitSafely('welcomed', conn.id, dev),
        closed: (conn) => this.#closed(conn),
      },
    });
    const clock = options.clock;
    this.#sessions = new SessionTable({
      firstFrameTimeoutMs: this.#o.firstFrameTimeoutMs,
      ...(clock === undefined ? { now: () => performance.now() } : { now: () => clock.now(), timers: clock }),
    });
    this.#dataPlane = options.dataPlane;
    this.#dataPlane?.attach(this.#sessions);
    this.#ingress = new MqttIngress({
      pipeline: this.#o.pipeline,
      log: this.#log,
      maxQueued: this.#o.maxQueuedPerConnection,
      connections: this.#table,
      deliver: (conn, dev, version, payload) => deliverDown(conn, dev, version, payload, this.#o.operationTimeoutMs),
      versions: this.#o.versions,
      sessions: this.#sessions,
      openSession: (conn, opening) => this.#openSession(conn, opening),
    });
  }

  /** Counters and gauges. */
  stats(): MqttTransportStats {
    return {
      ...this.#counters,
      ...this.#table.counters,
      connections: this.#table.size,
      welcomed: this.#table.welcomedCount(),
      droppedAuthMessages: this.#ingress.dropped,
      sessions: this.#sessions.size,
      sessionCounters: this.#sessions.counters(),
      refused: this.#refusals.counts,
      descriptorCapacity: this.#descriptorCapacity,
    };
  }

  /** The live v2 sessions, for the status socket. */
  sessions(): SessionInfo[] {
    return this.#sessions.list();
  }

  /** A v2 session on `conn`: frames go to it alone; its pub frames are held to the lease policy. */
  async #openSession(conn: MqttConnection, opening: SessionOpening): Promise<void> {
    const session = await this.#sessions.open(opening, conn.ingress, {
      send: (bytes) => deliverDown(conn, opening.dev, 2, bytes, this.#o.operationTimeoutMs),
      close: () => this.#table.close(conn),
      pubAllowed: (topic) => !inAuthNamespace(topic) && !topic.startsWith('$') && opening.policy.pub.some((f) => topicMatches(f, topic)),
      publishLocal: (topic, body) => publishLocal(this.#broker, topic, body, this.#o.operationTimeoutMs),
      ...(this.#dataPlane === undefined ? {} : { dataPlane: this.#dataPlane }),
    });
    this.#log.info('v2 session opened', { conn: conn.id, dev: opening.dev, sid: session.info().sid, life: opening.lifeSeconds, offline: opening.offline });
  }

  /** Bound listener addresses (after start). */
  addresses(): { tcp?: AddressInfo; tls?: AddressInfo } {
    const out: { tcp?: AddressInfo; tls?: AddressInfo } = {};
    for (const s of this.#servers) {
      const a = s.address();
      if (a !== null && typeof a === 'object') {
        if (s instanceof tls.Server) out.tls = a;
        else out.tcp = a;
      }
    }
    return out;
  }

  /** Starts the broker, then the listeners. */
  async start(): Promise<void> {
    if (this.#broker !== undefined) return;
    dropNumberCache();
    const table = this.#table;
    const acl = { allowRetain: this.#o.allowRetain };
    const subscribe = subscribeHooks({
      table,
      log: this.#log,
      maxSubscriptionsPerConnection: this.#o.maxSubscriptionsPerConnection,
      onSubscribed: (conn, filter, qos) => this.#emitSafely('subscribed', conn, filter, qos),
    });
    const broker = await Aedes.createBroker({
      connectTimeout: this.#o.connectTimeoutMs,
      ...connectHooks({ table, log: this.#log, acl, keepaliveMaxSec: this.#o.keepaliveMaxSec, noSlot: (conn) => this.#noSlot(conn) }),
      ...publishHooks({ table, log: this.#log, acl, ingress: this.#ingress, maxUnwelcomedPerDevice: this.#o.maxUnwelcomedPerDevice }),
      authorizeSubscribe: subscribe.authorizeSubscribe,
      ...deliverHooks(table),
    });
    forgetCleanOutgoing(broker);
    broker.on('connectionError', (_client: Client, err: Error) => this.#log.debug('connection error before CONNECT', { error: err.message }));
    broker.on('unsubscribe', (filters: string[], client: Client) => subscribe.unsubscribed(filters, client));
    broker.on('clientError', (client: Client, err: Error) => {
      this.#log.debug('client error', { conn: table.byClient(client)?.id, error: err.message });
    });
    this.#broker = broker;
    try {
      if (this.#tcp !== undefined) {
        const server = net.createServer((socket) => this.#accept(socket));
        await this.#listen(server, this.#tcp.host, this.#tcp.port);
      }
      if (this.#tls !== undefined) {
        const server = tls.createServer(
          { cert: this.#tls.cert, key: this.#tls.key, minVersion: 'TLSv1.2', handshakeTimeout: this.#o.connectTimeoutMs },
          (socket) => this.#accept(socket),
        );
        // With a listener here Node no longer destroys the socket itself (handshake timeout included).
        server.on('tlsClientError', (err, socket) => {
          this.#log.debug('TLS handshake failed', { error: err.message });
          socket.destroy();
        });
        await this.#listen(server, this.#tls.host, this.#tls.port);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.#unsubscribeRevocations = this.#revocations?.onRevoked((devices) => {
      // A v2 session says bye revoked before its connection is closed.
      void this.#sessions.revoke(devices).finally(() => this.#table.revoke(devices));
    });
    this.#measureDescriptors();
    this.#log.info('MQTT broker listening', { addresses: this.addresses() });
  }

  /**
   * How many connections the descriptor limit leaves room for: RLIMIT_NOFILE less what is open
   * now (listeners, backend link, SQLite, logs) less a reserve. Past it the kernel's EMFILE makes
   * libuv accept and close connections silently, so the transport refuses first, and says so.
   */
  #measureDescriptors(): void {
    const limit = openFileLimit();
    const open = openDescriptorCount();
    if (limit === undefined || open === undefined || limit.soft === Infinity) return;
    this.#descriptorCapacity = Math.max(0, limit.soft - open - this.#o.descriptorReserve);
    const wanted = this.#o.maxConnections + this.#o.refusalSlots;
    if (this.#descriptorCapacity < wanted) {
      this.#log.error('descriptor limit below the configured capacity: connections beyond it will be refused', {
        limitNofile: limit.soft,
        openNow: open,
        reserve: this.#o.descriptorReserve,
        connectionsPossible: this.#descriptorCapacity,
        maxConnections: this.#o.maxConnections,
        refusalSlots: this.#o.refusalSlots,
      });
    }
  }

  /** Why `conn` gets CONNACK 3 instead of a slot, if it does. */
  #noSlot(conn: MqttConnection): string | undefined {
    const slots = this.#table.slots();
    if (slots.admitted >= this.#o.maxConnections) {
      this.#refusals.refuse('capacity', { conn: conn.id, max: this.#o.maxConnections });
      return 'server at capacity';
    }
    if (slots.unwelcomed >= Math.min(this.#o.maxUnwelcomed, this.#o.maxConnections)) {
      this.#refusals.refuse('unwelcomed-slots', { conn: conn.id, max: this.#o.maxUnwelcomed });
      return 'too many connections waiting to be welcomed';
    }
    return undefined;
  }

  /** Takes an accept token of `source`; false when it has none. */
  #acceptAllowed(source: string): boolean {
    let bucket = this.#acceptBySource.get(source);
    if (bucket === undefined) {
      if (this.#acceptBySource.size >= this.#o.maxTrackedSources) {
        const oldest = this.#acceptBySource.keys().next();
        if (!oldest.done) this.#acceptBySource.delete(oldest.value);
      }
      const n = this.#o.acceptsPerSourcePerSec;
      bucket = new TokenBucket({ burst: n, perSecond: n }, { now: () => performance.now() });
    } else {
      this.#acceptBySource.delete(source);
    }
    this.#acceptBySource.set(source, bucket);
    return bucket.take() === 0;
  }

  /**
   * Stops the listeners first (no new connections), lets auth messages already received be
   * decided and answered (bounded by `drainTimeoutMs`: a SIGTERM loses no in-flight exchange),
   * then stops the broker and every connection, each bounded in time.
   */
  async stop(): Promise<void> {
    this.#unsubscribeRevocations?.();
    this.#unsubscribeRevocations = undefined;
    const servers = this.#servers;
    this.#servers = [];
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await this.#drained();
    if (this.#broker !== undefined) await this.#bounded(this.#sessions.shutdown(), 'sessions bye shutdown');
    const broker = this.#broker;
    this.#broker = undefined;
    if (broker !== undefined) {
      await this.#bounded(new Promise<void>((resolve) => broker.close(() => resolve())), 'broker close');
    }
    this.#table.destroyAll();
    await this.#bounded(Promise.all(closed).then(() => undefined), 'listener close');
  }

  /** Resolves once no connection has an auth message being decided or answered (bounded). */
  async #drained(): Promise<void> {
    if (this.#broker === undefined || !this.#ingress.busy) return;
    this.#log.info('draining in-flight auth messages', { maxMs: this.#o.drainTimeoutMs });
    await this.#bounded(this.#ingress.idle(), 'drain', this.#o.drainTimeoutMs);
  }

  async #bounded(p: Promise<void>, what: string, ms = this.#o.operationTimeoutMs): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#log.warn('shutdown step timed out', { step: what, ms });
        resolve();
      }, ms);
    });
    await Promise.race([p, timeout]);
    clearTimeout(timer);
  }

  async #listen(server: net.Server | tls.Server, host: string, port: number): Promise<void> {
    // A backstop to our own count at accept: the kernel queue is not drained into aedes.
    server.maxConnections = this.#o.maxConnections + this.#o.refusalSlots + 16;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new MqttError('GH_MQTT_LISTEN', `cannot listen on ${host}:${port}`, { cause: err }));
      server.once('error', onError);
      // A reconnect storm (every peripheral after a gateway reboot) arrives faster than accept()
      // drains; an overflowing accept queue drops handshakes (peers retry after 1, 3, 7, 15 s) or
      // resets them, and every reset peer reconnects. The kernel caps the backlog at
      // net.core.somaxconn (4096 by default), so the operator's sysctl decides (docs/mqtt.md).
      server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => {
      if (isDescriptorExhaustion(err)) this.#refusals.refuse('descriptors', { error: err.message });
      else this.#log.error('MQTT listener error', { error: err.message });
    });
    this.#servers.push(server);
  }

  #accept(socket: net.Socket | tls.TLSSocket): void {
    const broker = this.#broker;
    const source = socket.remoteAddress ?? '?';
    const refusal =
      broker === undefined || this.#table.size >= this.#o.maxConnections + this.#o.refusalSlots
        ? ('capacity' as const)
        : this.#descriptorCapacity !== undefined && this.#table.size >= this.#descriptorCapacity
          ? ('descriptors' as const)
          : (this.#openBySource.get(source) ?? 0) >= this.#o.maxConnectionsPerSource
            ? ('per-source' as const)
            : !this.#acceptAllowed(source)
              ? ('accept-rate' as const)
              : undefined;
    if (broker === undefined || refusal !== undefined) {
      this.#counters.refusedAtAccept += 1;
      this.#refusals.refuse(refusal ?? 'capacity', { source, open: this.#table.size, max: this.#o.maxConnections });
      socket.destroy();
      return;
    }
    this.#openBySource.set(source, (this.#openBySource.get(source) ?? 0) + 1);
    socket.once('close', () => {
      const n = (this.#openBySource.get(source) ?? 1) - 1;
      if (n <= 0) this.#openBySource.delete(source);
      else this.#openBySource.set(source, n);
    });
    // Measured: with Nagle each request/response round trip costs ~88 ms on loopback.
    socket.setNoDelay(true);
    socket.on('error', (err) => this.#log.debug('socket error', { error: err.message }));
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const id = this.#table.nextId();
    const guard = new MqttFrameGuard(socket, {
      maxPacketBytes: this.#o.maxPacketBytes,
      onViolation: (violation, detail) => {
        this.#counters.frameViolations += 1;
        this.#log.warn('connection closed: MQTT framing violation', { conn: id, remote, violation, detail });
      },
    });
    const conn = this.#table.open(remote, guard);
    guard.on('close', () => this.#table.closed(conn));
    this.#table.attach(conn, broker.handle(guard));
    this.#log.debug('connection accepted', { conn: conn.id, remote });
  }

  /** The table forgot `conn`: drop its waiting auth messages and tell the pipeline. */
  #closed(conn: MqttConnection): void {
    const dropped = this.#ingress.forget(conn);
    this.#sessions.connectionClosed(conn.id);
    this.#o.pipeline.connectionClosed(conn.ingress);
    this.#log.debug('connection closed', { conn: conn.id, dev: conn.boundDev, droppedAuthMessages: dropped });
    this.#emitSafely('closed', conn.id, conn.boundDev);
  }

  /** A listener's fault must not break the broker's hooks. */
  #emitSafely<K extends keyof MqttTransportEvents>(event: K, ...args: MqttTransportEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: MqttTransportEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log.warn('transport event listener failed', { event, error: err instanceof Error ? err.message : String(err) });
    }
  }
}
