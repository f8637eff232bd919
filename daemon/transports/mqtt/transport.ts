/**
 * The MQTT transport: an embedded aedes 1.x broker (MQTT 3.1.1) on a TCP listener (loopback by
 * default) and an optional TLS listener. Auth messages on `gatehouse/v1/{dev}/up` go to the
 * AuthPipeline; its reply is published on `.../down` at QoS 1 (protocol-v1 "MQTT transport").
 * The access policy lives in acl.ts, the connections in connection-table.ts, the aedes hooks in
 * hooks/ (one file per verb); this file owns the broker and the listeners and wires them.
 */
import { silentLogger } from '../../../common/log/logger.js';
import { EventEmitter } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'winston';
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
import { openSession } from '../../sessions/open.js';
import type { RefusalCounts } from './refusals.js';
import { MqttAdmission } from './admission.js';
import { dropNumberCache, forgetCleanOutgoing } from './aedes-patches.js';

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
  /** Live v2 sessions of the table the transport was given (the daemon's is shared with BLE). */
  sessions: number;
  /** That table's v2 session counters (opened, ended by reason, frames dropped by code, denied). */
  sessionCounters: SessionCounters;
  /** Connections refused, by why (CONNACK 3 or closed at accept). */
  refused: RefusalCounts;
  /** Connections this process can hold before it runs out of descriptors (undefined without /proc). */
  descriptorCapacity: number | undefined;
}

/** Pending-connection queue of the listeners: as deep as the kernel allows (see #listen). */
const LISTEN_BACKLOG = 65535;

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
  readonly #msgRelay: MqttTransportOptions['msgRelay'];
  readonly #counters = { frameViolations: 0 };
  readonly #admission: MqttAdmission;
  #broker: Aedes | undefined;
  #servers: (net.Server | tls.Server)[] = [];
  #unsubscribeRevocations: (() => void) | undefined;

  constructor(options: MqttTransportOptions) {
    super();
    this.#o = resolveOptions(options);
    this.#tcp = options.tcp === false ? undefined : options.tcp;
    this.#tls = options.tls;
    this.#revocations = options.revocations;
    this.#log = (options.logger ?? silentLogger()).child({ area: 'mqtt' });
    this.#admission = new MqttAdmission(this.#o, this.#log);
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
    this.#sessions =
      options.sessions ??
      new SessionTable({
        firstFrameTimeoutMs: this.#o.firstFrameTimeoutMs,
        ...(clock === undefined ? { now: () => performance.now() } : { now: () => clock.now(), timers: clock }),
      });
    this.#dataPlane = options.dataPlane;
    this.#dataPlane?.attach(this.#sessions);
    this.#msgRelay = options.msgRelay;
    this.#msgRelay?.attach(this.#sessions);
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
      refusedAtAccept: this.#admission.refusedAtAccept,
      ...this.#table.counters,
      connections: this.#table.size,
      welcomed: this.#table.welcomedCount(),
      droppedAuthMessages: this.#ingress.dropped,
      sessions: this.#sessions.size,
      sessionCounters: this.#sessions.counters(),
      refused: this.#admission.refused,
      descriptorCapacity: this.#admission.descriptorCapacity,
    };
  }

  /** The live v2 sessions of this transport's connections. */
  sessions(): SessionInfo[] {
    return this.#sessions.list().filter((s) => s.transport === 'mqtt');
  }

  /** Publishes on the embedded broker (a v2 session's pub for local subscribers, whatever its transport). */
  publishLocal(topic: string, body: Uint8Array): Promise<void> {
    return publishLocal(this.#broker, topic, body, this.#o.operationTimeoutMs);
  }

  /** A v2 session on `conn`: frames go to it alone; its pub frames are held to the lease policy. */
  async #openSession(conn: MqttConnection, opening: SessionOpening): Promise<void> {
    const services = { table: this.#sessions, publishLocal: (topic: string, body: Uint8Array) => this.publishLocal(topic, body), ...(this.#dataPlane === undefined ? {} : { dataPlane: this.#dataPlane }) };
    const session = await openSession(services, opening, conn.ingress, {
      send: (bytes) => deliverDown(conn, opening.dev, 2, bytes, this.#o.operationTimeoutMs),
      close: () => this.#table.close(conn),
    });
    this.#log.debug('v2 session opened', { conn: conn.id, dev: opening.dev, sid: session.info().sid, life: opening.lifeSeconds, offline: opening.offline });
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
      ...connectHooks({ table, log: this.#log, acl, keepaliveMaxSec: this.#o.keepaliveMaxSec, noSlot: (conn) => this.#admission.noSlot(conn, table.slots()) }),
      ...publishHooks({
        table,
        log: this.#log,
        acl,
        ingress: this.#ingress,
        maxUnwelcomedPerDevice: this.#o.maxUnwelcomedPerDevice,
        ...(this.#msgRelay === undefined ? {} : { brokerMessage: (topic: string, body: Uint8Array) => void this.#msgRelay?.offer(topic, body) }),
      }),
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
    this.#admission.measureDescriptors();
    this.#log.info('MQTT broker listening', { addresses: this.addresses() });
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
    if (this.#broker !== undefined) await this.#bounded(this.#sessions.shutdown('mqtt'), 'sessions bye shutdown');
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
    server.on('error', (err) => this.#admission.listenerError(err));
    this.#servers.push(server);
  }

  #accept(socket: net.Socket | tls.TLSSocket): void {
    const broker = this.#broker;
    if (!this.#admission.accept(socket, this.#table.size, broker !== undefined) || broker === undefined) {
      socket.destroy();
      return;
    }
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
