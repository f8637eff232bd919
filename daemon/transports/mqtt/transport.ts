/**
 * The MQTT transport: an embedded aedes 1.x broker (MQTT 3.1.1) on a TCP listener (loopback by
 * default) and an optional TLS listener. Auth messages on `gatehouse/v1/{dev}/up` go to the
 * AuthPipeline; its reply is published on `.../down` at QoS 1 (protocol-v1 "MQTT transport").
 * The access policy lives in acl.ts; this file only wires aedes hooks to it.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type ConnectPacket, type PublishPacket, type Subscription } from 'aedes';
import type { Logger } from 'winston';
import winston from 'winston';
import type { RevocationSource } from '../../pipeline/types.js';
import { checkClientId, checkDeliver, checkPublish, checkSubscribe, checkWillAtConnect, type AclOptions } from './acl.js';
import { MqttConnection } from './connection.js';
import { MqttError } from './errors.js';
import { MqttFrameGuard } from './frame-guard.js';
import { MqttIngress } from './ingress.js';
import { resolveOptions, type MqttTransportOptions, type ResolvedOptions } from './options.js';
import { downTopic, parseAuthTopic } from './topics.js';

export type { MqttTransportOptions } from './options.js';

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
}

// aedes AuthErrorCode is a const enum in its typings; MQTT 3.1.1 §3.2.2.3 return codes.
const IDENTIFIER_REJECTED = 2;
/** Pending-connection queue of the listeners: as deep as the kernel allows (see #listen). */
const LISTEN_BACKLOG = 65535;
const NOT_AUTHORIZED = 5;

function connackError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

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

/** Topics and payload sizes from clients go to logs only shortened. */
function short(s: string): string {
  return s.length > 96 ? `${s.slice(0, 96)}…` : s;
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
  readonly #acl: AclOptions;
  readonly #byClient = new WeakMap<Client, MqttConnection>();
  readonly #conns = new Map<string, MqttConnection>();
  /** The latest welcomed connection of each device (see #onWelcomed). */
  readonly #welcomedByDev = new Map<string, MqttConnection>();
  readonly #stats: MqttTransportStats = {
    connections: 0,
    welcomed: 0,
    refusedAtAccept: 0,
    frameViolations: 0,
    droppedAuthMessages: 0,
    closedByAuthTimeout: 0,
    closedSuperseded: 0,
    closedRevoked: 0,
  };
  #broker: Aedes | undefined;
  #servers: (net.Server | tls.Server)[] = [];
  #unsubscribeRevocations: (() => void) | undefined;
  #seq = 0;
  readonly #ingress: MqttIngress;
  /** stop() waiting for in-flight auth messages to be answered. */
  readonly #idleWaiters: (() => void)[] = [];

  constructor(options: MqttTransportOptions) {
    super();
    this.#o = resolveOptions(options);
    this.#tcp = options.tcp === false ? undefined : { host: options.tcp?.host ?? '127.0.0.1', port: options.tcp?.port ?? 1883 };
    this.#tls = options.tls;
    this.#revocations = options.revocations;
    this.#log = (options.logger ?? winston.createLogger({ silent: true })).child({ area: 'mqtt' });
    this.#acl = { allowRetain: this.#o.allowRetain };
    this.#ingress = new MqttIngress({
      pipeline: this.#o.pipeline,
      log: this.#log,
      maxQueued: this.#o.maxQueuedPerConnection,
      isLive: (conn) => !conn.closing && this.#conns.has(conn.id),
      publishDown: (dev, payload) => this.#publishDown(dev, payload),
      close: (conn) => this.#close(conn),
      onWelcomed: (conn, dev) => this.#onWelcomed(conn, dev),
      onDropped: () => {
        this.#stats.droppedAuthMessages += 1;
      },
      onIdle: () => this.#checkIdle(),
    });
  }

  /** Counters and gauges. */
  stats(): MqttTransportStats {
    return { ...this.#stats, connections: this.#conns.size, welcomed: [...this.#conns.values()].filter((c) => c.welcomed).length };
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
    const broker = await Aedes.createBroker({
      connectTimeout: this.#o.connectTimeoutMs,
      preConnect: (client, packet, cb) => this.#preConnect(client, packet, cb),
      authenticate: (client, _user, _pass, cb) => this.#authenticate(client, cb),
      authorizePublish: (client, packet, cb) => this.#authorizePublish(client, packet, cb),
      authorizeSubscribe: (client, sub, cb) => this.#authorizeSubscribe(client, sub, cb),
      authorizeForward: (client, packet) => this.#authorizeForward(client, packet),
      published: (packet, client, cb) => this.#published(packet, client, cb),
    });
    forgetCleanOutgoing(broker);
    broker.on('connectionError', (_client: Client, err: Error) => this.#log.debug('connection error before CONNECT', { error: err.message }));
    broker.on('unsubscribe', (filters: string[], client: Client) => {
      const conn = this.#byClient.get(client);
      for (const f of filters) conn?.subscriptions.delete(f);
    });
    broker.on('clientError', (client: Client, err: Error) => {
      const conn = this.#byClient.get(client);
      this.#log.debug('client error', { conn: conn?.id, error: err.message });
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
        await this.#listen(server, this.#tls.host ?? '127.0.0.1', this.#tls.port ?? 8883);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.#unsubscribeRevocations = this.#revocations?.onRevoked((devices) => this.#revoked(devices));
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
    const broker = this.#broker;
    this.#broker = undefined;
    if (broker !== undefined) {
      await this.#bounded(new Promise<void>((resolve) => broker.close(() => resolve())), 'broker close');
    }
    for (const conn of this.#conns.values()) {
      clearTimeout(conn.authTimer);
      conn.stream.destroy();
    }
    await this.#bounded(Promise.all(closed).then(() => undefined), 'listener close');
  }

  #busy(): boolean {
    for (const c of this.#conns.values()) if (c.draining || c.queue.length > 0) return true;
    return false;
  }

  #checkIdle(): void {
    if (this.#idleWaiters.length > 0 && !this.#busy()) for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** Resolves once no connection has an auth message being decided or answered (bounded). */
  async #drained(): Promise<void> {
    if (this.#broker === undefined || !this.#busy()) return;
    this.#log.info('draining in-flight auth messages', { maxMs: this.#o.drainTimeoutMs });
    await this.#bounded(new Promise<void>((resolve) => this.#idleWaiters.push(resolve)), 'drain', this.#o.drainTimeoutMs);
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
    server.maxConnections = this.#o.maxConnections + 16;
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
    server.on('error', (err) => this.#log.error('MQTT listener error', { error: err.message }));
    this.#servers.push(server);
  }

  #accept(socket: net.Socket | tls.TLSSocket): void {
    const broker = this.#broker;
    if (broker === undefined || this.#conns.size >= this.#o.maxConnections) {
      this.#stats.refusedAtAccept += 1;
      this.#log.warn('connection refused: too many connections', { max: this.#o.maxConnections });
      socket.destroy();
      return;
    }
    // Measured: with Nagle each request/response round trip costs ~88 ms on loopback.
    socket.setNoDelay(true);
    socket.on('error', (err) => this.#log.debug('socket error', { error: err.message }));
    this.#seq += 1;
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const id = `mqtt:${this.#seq}`;
    const guard = new MqttFrameGuard(socket, {
      maxPacketBytes: this.#o.maxPacketBytes,
      onViolation: (violation, detail) => {
        this.#stats.frameViolations += 1;
        this.#log.warn('connection closed: MQTT framing violation', { conn: id, remote, violation, detail });
      },
    });
    const c = new MqttConnection(this.#seq, remote, guard);
    this.#conns.set(c.id, c);
    guard.on('close', () => this.#closed(c));
    c.authTimer = setTimeout(() => {
      if (c.welcomed) return;
      this.#stats.closedByAuthTimeout += 1;
      this.#log.info('connection closed: not welcomed in time', { conn: c.id, ms: this.#o.authTimeoutMs });
      this.#close(c);
    }, this.#o.authTimeoutMs);
    c.client = broker.handle(guard);
    this.#byClient.set(c.client, c);
    this.#log.debug('connection accepted', { conn: c.id, remote });
  }

  #closed(conn: MqttConnection): void {
    if (!this.#conns.delete(conn.id)) return;
    if (conn.boundDev !== undefined && this.#welcomedByDev.get(conn.boundDev) === conn) this.#welcomedByDev.delete(conn.boundDev);
    clearTimeout(conn.authTimer);
    conn.queue.length = 0;
    this.#checkIdle();
    this.#o.pipeline.connectionClosed(conn.ingress);
    this.#log.debug('connection closed', { conn: conn.id, dev: conn.boundDev, droppedAuthMessages: conn.dropped });
    this.#emitSafely('closed', conn.id, conn.boundDev);
  }

  /** Closes a connection from the gateway side; its will is not published. */
  #close(conn: MqttConnection): void {
    conn.closing = true;
    clearTimeout(conn.authTimer);
    if (conn.client !== undefined) conn.client.close();
    conn.stream.destroy();
  }

  #preConnect(client: Client, packet: ConnectPacket, cb: (error: Error | null, success: boolean) => void): void {
    const conn = this.#byClient.get(client);
    if (conn === undefined) {
      cb(new Error('unknown connection'), false);
      return;
    }
    // [MQTT-3.1.2-14] will QoS 3 and [MQTT-3.1.2-22] a password without a user name are protocol
    // violations: close the connection without a CONNACK [MQTT-4.8.0-1].
    const violation = (packet.will?.qos ?? 0) > 2 ? 'will QoS 3' : packet.password !== undefined && packet.username === undefined ? 'password without user name' : undefined;
    if (violation !== undefined) {
      this.#log.info('CONNECT refused: protocol violation', { conn: conn.id, why: violation });
      cb(new Error(violation), false);
      return;
    }
    conn.clientId = typeof packet.clientId === 'string' ? packet.clientId : '';
    conn.keepalive = packet.keepalive ?? 0;
    if (packet.will !== undefined && packet.will !== null) {
      const will = checkWillAtConnect(packet.will.topic, packet.will.retain === true, this.#acl);
      conn.willProblem = will.ok ? undefined : will.why;
    }
    // The broker-side id is ours and unique: a peer naming another device's client id can
    // neither take over ([MQTT-3.1.4-2]) nor read that device's session. Sessions are clean:
    // persistent sessions would keep state for every connection ever made.
    packet.clientId = conn.id;
    packet.clean = true;
    cb(null, true);
  }

  #authenticate(client: Client, cb: (error: AuthenticateError | null, success: boolean | null) => void): void {
    const conn = this.#byClient.get(client);
    if (conn === undefined) {
      cb(connackError('unknown connection', NOT_AUTHORIZED), false);
      return;
    }
    const id = checkClientId(conn.clientId);
    if (!id.ok) {
      this.#log.info('CONNECT refused: client id', { conn: conn.id, clientId: short(conn.clientId), why: id.why });
      cb(connackError(id.why, IDENTIFIER_REJECTED), false);
      return;
    }
    // MQTT 3.1.1 cannot tell a client which keepalive to use; like mosquitto's max_keepalive,
    // a keepalive of 0 (never) or above the limit is refused as "identifier rejected".
    if (conn.keepalive === 0 || conn.keepalive > this.#o.keepaliveMaxSec) {
      this.#log.info('CONNECT refused: keepalive', { conn: conn.id, keepalive: conn.keepalive, max: this.#o.keepaliveMaxSec });
      cb(connackError('keepalive out of range', IDENTIFIER_REJECTED), false);
      return;
    }
    if (conn.willProblem !== undefined) {
      this.#log.info('CONNECT refused: will', { conn: conn.id, why: conn.willProblem });
      cb(connackError(conn.willProblem, NOT_AUTHORIZED), false);
      return;
    }
    cb(null, true);
  }

  #authorizePublish(client: Client | null, packet: PublishPacket, cb: (error?: Error | null) => void): void {
    const conn = client === null ? undefined : this.#byClient.get(client);
    if (conn === undefined) {
      cb(new Error('publish refused'));
      return;
    }
    const d = checkPublish(conn, packet.topic, packet.qos, packet.retain, this.#acl);
    if (!d.ok) {
      // MQTT 3.1.1 has no negative PUBACK: the connection is closed (aedes does it on error).
      this.#log.warn('publish refused', { conn: conn.id, dev: conn.boundDev, topic: short(packet.topic), why: d.why });
      cb(new Error(`publish refused: ${d.why}`));
      return;
    }
    if (d.bind !== undefined) conn.boundDev = d.bind;
    cb(null);
  }

  #authorizeSubscribe(client: Client, sub: Subscription, cb: (error: Error | null, subscription?: Subscription | null) => void): void {
    const conn = this.#byClient.get(client);
    const d = conn === undefined ? { ok: false as const, why: 'unknown connection' } : checkSubscribe(conn, sub.topic, sub.qos);
    if (!d.ok || conn === undefined) {
      // cb(err) would drop the connection; cb(null, null) refuses only this filter (SUBACK 0x80).
      this.#log.warn('subscribe refused', { conn: conn?.id, topic: short(sub.topic), why: d.ok ? 'unknown' : d.why });
      cb(null, null);
      return;
    }
    // Each subscription costs broker memory (client table and matcher): bounded per connection.
    if (!conn.subscriptions.has(sub.topic) && conn.subscriptions.size >= this.#o.maxSubscriptionsPerConnection) {
      this.#log.warn('subscribe refused', { conn: conn.id, topic: short(sub.topic), why: 'too many subscriptions' });
      cb(null, null);
      return;
    }
    conn.subscriptions.add(sub.topic);
    if (d.bind !== undefined) conn.boundDev = d.bind;
    const qos = d.qos ?? 1;
    cb(null, { ...sub, qos });
    this.#emitSafely('subscribed', conn.id, sub.topic, qos);
  }

  #authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const conn = this.#byClient.get(client);
    return conn !== undefined && checkDeliver(conn, packet.topic) ? packet : null;
  }

  #published(packet: AedesPublishPacket, client: Client | null, cb: (error?: Error | null) => void): void {
    cb(null);
    if (client === null) return;
    const conn = this.#byClient.get(client);
    const auth = parseAuthTopic(packet.topic);
    if (conn === undefined || auth === undefined || auth.direction !== 'up' || conn.boundDev !== auth.dev) return;
    this.#ingress.enqueue(conn, auth.dev, new Uint8Array(packet.payload as Buffer));
  }

  /** protocol-v1: "A later welcome of the same dev on another connection closes the older one." */
  #onWelcomed(conn: MqttConnection, dev: string): void {
    this.#emitSafely('welcomed', conn.id, dev);
    // protocol-v1: "A later welcome of the same dev on another connection closes the older one."
    // Each welcome closes its predecessor, so at most one live welcomed connection per dev is
    // recorded: a map lookup instead of a scan of every connection (O(n²) in a storm).
    const other = this.#welcomedByDev.get(dev);
    this.#welcomedByDev.set(dev, conn);
    if (other !== undefined && other !== conn && other.boundDev === dev && other.welcomed && !other.closing) {
      this.#stats.closedSuperseded += 1;
      this.#log.info('connection closed: device welcomed on a newer connection', { conn: other.id, dev, newer: conn.id });
      this.#close(other);
    }
  }

  /** A listener's fault must not break the broker's hooks. */
  #emitSafely<K extends keyof MqttTransportEvents>(event: K, ...args: MqttTransportEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: MqttTransportEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log.warn('transport event listener failed', { event, error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** protocol-v1: "A revoked device's connection is closed." */
  #revoked(devices: string[]): void {
    const set = new Set(devices);
    for (const conn of this.#conns.values()) {
      if (conn.boundDev !== undefined && set.has(conn.boundDev) && !conn.closing) {
        this.#stats.closedRevoked += 1;
        this.#log.info('connection closed: device revoked', { conn: conn.id, dev: conn.boundDev });
        this.#close(conn);
      }
    }
  }

  async #publishDown(dev: string, payload: Uint8Array): Promise<void> {
    const broker = this.#broker;
    if (broker === undefined) throw new MqttError('GH_MQTT_NOT_RUNNING', 'broker stopped');
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve, reject) => {
          broker.publish(
            { cmd: 'publish', topic: downTopic(dev), payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
            (err) => (err ? reject(err) : resolve()),
          );
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new MqttError('GH_MQTT_PUBLISH_TIMEOUT', `publish on down topic not done within ${this.#o.operationTimeoutMs} ms`)),
            this.#o.operationTimeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}
