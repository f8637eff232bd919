/**
 * The MQTT connections the transport holds: lookups by aedes client and by device, the welcome
 * that supersedes an older connection of the same device, revocation, and closing from the
 * gateway side. The hooks and the ingress reach connections only through this table.
 */
import type { Duplex } from 'node:stream';
import type { Client } from 'aedes';
import type { Logger } from 'winston';
import type { Policy } from '../../../protocol/index.js';
import { MqttConnection } from './connection.js';
import { monotonicClock, type TimerClock } from '../../../common/clock.js';

/** What the transport hears from the table (lifecycle events and the auth timeout). */
export interface ConnectionTableEvents {
  /** A connection was welcomed as `dev` (its policy is set, the welcome not yet published). */
  welcomed(conn: MqttConnection, dev: string): void;
  /** A connection closed, whoever closed it; called once per connection. */
  closed(conn: MqttConnection): void;
}

export interface ConnectionTableOptions {
  log: Logger;
  /** protocol-v1: a connection not welcomed within this is closed. */
  authTimeoutMs: number;
  events: ConnectionTableEvents;
  /** Arms the auth and v1 session-age timers (default: monotonic, real timers). */
  clock?: TimerClock;
}

/** Connections the table closed, by why. */
export interface ConnectionTableCounters {
  closedByAuthTimeout: number;
  closedSuperseded: number;
  closedRevoked: number;
  /** v1 connections closed at min(lease exp, protocol.maxSessionAgeSec) after their welcome. */
  closedExpired: number;
}

export class MqttConnectionTable {
  readonly #o: ConnectionTableOptions;
  readonly #byId = new Map<string, MqttConnection>();
  readonly #byClient = new WeakMap<Client, MqttConnection>();
  /** The latest welcomed connection of each device (see welcome). */
  readonly #welcomedByDev = new Map<string, MqttConnection>();
  /** Connections bound to each device and not welcomed (the per-device cap reads it: a scan of every connection per PUBLISH was O(n²) over a storm). */
  readonly #unwelcomedByDev = new Map<string, Set<MqttConnection>>();
  /** Non-empty client ids of live connections: a second CONNECT with one is refused. */
  readonly #byClientId = new Map<string, MqttConnection>();
  readonly #counters: ConnectionTableCounters = { closedByAuthTimeout: 0, closedSuperseded: 0, closedRevoked: 0, closedExpired: 0 };
  /** Connections given CONNACK 0: the slots that capacity and the unwelcomed bound count. */
  readonly #admitted = new Set<MqttConnection>();
  #admittedWelcomed = 0;
  #seq = 0;
  readonly #clock: TimerClock;

  constructor(options: ConnectionTableOptions) {
    this.#o = options;
    this.#clock = options.clock ?? monotonicClock;
  }

  /** Open connections. */
  get size(): number {
    return this.#byId.size;
  }

  get counters(): ConnectionTableCounters {
    return { ...this.#counters };
  }

  /** Open connections that are welcomed. */
  welcomedCount(): number {
    let n = 0;
    for (const c of this.#byId.values()) if (c.welcomed) n += 1;
    return n;
  }

  connections(): IterableIterator<MqttConnection> {
    return this.#byId.values();
  }

  /** The id the next connection will get (for logging before it exists). */
  nextId(): string {
    return `mqtt:${this.#seq + 1}`;
  }

  /**
   * Adds a connection over `stream` and starts its auth timer. The caller attaches the aedes
   * client (attach) and calls closed() when the stream closes.
   */
  open(remote: string, stream: Duplex): MqttConnection {
    this.#seq += 1;
    const conn = new MqttConnection(this.#seq, remote, stream, this.#clock);
    this.#byId.set(conn.id, conn);
    conn.startAuthTimer(this.#o.authTimeoutMs, () => {
      if (conn.welcomed) return;
      this.#counters.closedByAuthTimeout += 1;
      this.#o.log.info('connection closed: not welcomed in time', { conn: conn.id, ms: this.#o.authTimeoutMs });
      this.close(conn);
    });
    return conn;
  }

  /** Records the aedes client that serves `conn`. */
  attach(conn: MqttConnection, client: Client): void {
    conn.attach(client);
    this.#byClient.set(client, conn);
  }

  byClient(client: Client | null): MqttConnection | undefined {
    return client === null ? undefined : this.#byClient.get(client);
  }

  /** Whether `clientId` is held by a live connection other than `conn`. */
  clientIdInUse(clientId: string, conn: MqttConnection): boolean {
    const other = this.#byClientId.get(clientId);
    return other !== undefined && other !== conn && this.#byId.has(other.id);
  }

  /** Records `conn`'s client id (after CONNECT was accepted). */
  holdClientId(conn: MqttConnection): void {
    if (conn.clientId !== '') this.#byClientId.set(conn.clientId, conn);
  }

  /** `conn` got CONNACK 0: it holds a slot until it closes. */
  admit(conn: MqttConnection): void {
    if (this.#byId.has(conn.id)) this.#admitted.add(conn);
  }

  /** Slots held: connections given CONNACK 0 and still open, and how many of them are not welcomed. */
  slots(): { admitted: number; unwelcomed: number } {
    return { admitted: this.#admitted.size, unwelcomed: this.#admitted.size - this.#admittedWelcomed };
  }

  /** Live connections bound to `dev` and not welcomed (the per-device cap counts them). */
  unwelcomedBoundTo(dev: string): number {
    let n = 0;
    for (const c of this.#unwelcomedByDev.get(dev) ?? []) if (!c.closing) n += 1;
    return n;
  }

  /** Binds `conn` to `dev` when the ACL asks for it (protocol-v1: "bound to the first dev it uses"). */
  bind(conn: MqttConnection, dev: string | undefined): void {
    if (dev === undefined || conn.boundDev === dev) return;
    this.#forgetUnwelcomed(conn);
    conn.bind(dev);
    if (conn.welcomed || !this.#byId.has(conn.id)) return;
    let set = this.#unwelcomedByDev.get(dev);
    if (set === undefined) this.#unwelcomedByDev.set(dev, (set = new Set()));
    set.add(conn);
  }

  #forgetUnwelcomed(conn: MqttConnection): void {
    const dev = conn.boundDev;
    if (dev === undefined) return;
    const set = this.#unwelcomedByDev.get(dev);
    if (set?.delete(conn) === true && set.size === 0) this.#unwelcomedByDev.delete(dev);
  }

  /** The live welcomed connection of `dev`, if any. */
  byDevice(dev: string): MqttConnection | undefined {
    const conn = this.#welcomedByDev.get(dev);
    return conn !== undefined && conn.boundDev === dev && conn.welcomed && !conn.closing ? conn : undefined;
  }

  /** False once the connection is closed or being closed. */
  isLive(conn: MqttConnection): boolean {
    return !conn.closing && this.#byId.has(conn.id);
  }

  /**
   * Welcomes `conn` as `dev` under `policy` (already expanded), then closes the device's older
   * connection: protocol-v1 "A later welcome of the same dev on another connection closes the
   * older one." Each welcome closes its predecessor, so at most one live welcomed connection
   * per dev is recorded: a map lookup instead of a scan of every connection (O(n²) in a storm).
   *
   * v1 with `lifeSeconds` (min(lease exp − now, protocol.maxSessionAgeSec), from the pipeline):
   * the connection is closed when it runs out, so a v1 welcome lasts no longer than its lease.
   * (A v2 session ends itself at its `life` with `bye expired`.)
   */
  welcome(conn: MqttConnection, dev: string, policy: Policy, version: 1 | 2 = 1, lifeSeconds?: number): void {
    if (!conn.welcomed && this.#admitted.has(conn)) this.#admittedWelcomed += 1;
    this.#forgetUnwelcomed(conn);
    conn.welcome(policy, version);
    if (version === 1 && lifeSeconds !== undefined) {
      const ms = Math.max(0, lifeSeconds) * 1000;
      conn.startLifeTimer(ms, () => {
        if (!this.isLive(conn)) return;
        this.#counters.closedExpired += 1;
        this.#o.log.info('connection closed: v1 session expired (lease exp or protocol.maxSessionAgeSec)', { conn: conn.id, dev, lifeSeconds });
        this.close(conn);
      });
    } else {
      conn.stopLifeTimer();
    }
    this.#o.events.welcomed(conn, dev);
    const other = this.byDevice(dev);
    this.#welcomedByDev.set(dev, conn);
    if (other !== undefined && other !== conn) {
      this.#counters.closedSuperseded += 1;
      this.#o.log.info('connection closed: device welcomed on a newer connection', { conn: other.id, dev, newer: conn.id });
      this.close(other);
    }
  }

  /** protocol-v1: "A revoked device's connection is closed." Answers the connections closed. */
  revoke(devices: readonly string[]): MqttConnection[] {
    const set = new Set(devices);
    const closed: MqttConnection[] = [];
    for (const conn of this.#byId.values()) {
      if (conn.boundDev !== undefined && set.has(conn.boundDev) && !conn.closing) {
        this.#counters.closedRevoked += 1;
        this.#o.log.info('connection closed: device revoked', { conn: conn.id, dev: conn.boundDev });
        this.close(conn);
        closed.push(conn);
      }
    }
    return closed;
  }

  /** Closes a connection from the gateway side; its will is not published. */
  close(conn: MqttConnection): void {
    conn.markClosing();
    conn.client?.close();
    conn.stream.destroy();
  }

  /** The stream of `conn` closed: forget it. Answers false when it was already forgotten. */
  closed(conn: MqttConnection): boolean {
    if (!this.#byId.delete(conn.id)) return false;
    this.#forgetUnwelcomed(conn);
    if (this.#admitted.delete(conn) && conn.welcomed) this.#admittedWelcomed -= 1;
    if (this.#byClientId.get(conn.clientId) === conn) this.#byClientId.delete(conn.clientId);
    if (conn.boundDev !== undefined && this.#welcomedByDev.get(conn.boundDev) === conn) this.#welcomedByDev.delete(conn.boundDev);
    conn.stopAuthTimer();
    conn.stopLifeTimer();
    this.#o.events.closed(conn);
    return true;
  }

  /** Stops every auth timer and destroys every stream (the broker is already closed). */
  destroyAll(): void {
    for (const conn of this.#byId.values()) {
      conn.stopAuthTimer();
      conn.stopLifeTimer();
      conn.stream.destroy();
    }
  }
}
