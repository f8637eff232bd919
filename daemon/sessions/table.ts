/**
 * The live protocol-v2 sessions, by device and by connection: at most one per device (a newer
 * session ends the older one, `bye replaced`), revocation (`bye revoked`), shutdown
 * (`bye shutdown`), and the counters the status socket and /metrics show.
 */
import { EventEmitter } from 'node:events';
import type { FrameDropCode } from '../../protocol/index.js';
import type { SessionOpening, TransportKind } from '../pipeline/types.js';
import type { TimerClock } from '../../common/clock.js';
import { GatewaySessionV2, type SessionEndReason, type SessionHooks, type SessionInfo } from './session.js';

export interface SessionTableOptions {
  /** protocol-v2: a session with no frame that decrypts within this ends (`bye idle`). */
  firstFrameTimeoutMs: number;
  /** Monotonic milliseconds. */
  now(): number;
  /** Arms the sessions' timers (default: real timers); tests inject a clock with `now`. */
  timers?: Pick<TimerClock, 'setTimeout' | 'clearTimeout'>;
}

/** Counters since start. */
export interface SessionCounters {
  opened: number;
  /** Sessions ended, by reason. */
  ended: Partial<Record<SessionEndReason, number>>;
  /** Frames dropped, by code. */
  drops: Partial<Record<FrameDropCode, number>>;
  /** Frames whose plaintext or pub topic was denied. */
  denied: number;
  /** Broker messages for sessions whose `sub` grants them: relayed as `msg`, dropped (queue full), never sent. */
  msgs: { relayed: number; full: number; unsent: number };
}

/** What the table needs from the transport for one session. */
export type SessionTransportHooks = Omit<SessionHooks, 'ended' | 'dropped' | 'now'>;

/** Told when a session opens and ends (the command relay listens). */
export interface SessionTableEvents {
  opened: [session: GatewaySessionV2];
  ended: [session: GatewaySessionV2, reason: SessionEndReason];
  /** A session's pub was published on the local broker (the msg relay fans it out). */
  published: [session: GatewaySessionV2, topic: string, body: Uint8Array];
  /** A frame of the session was dropped (counted, never answered). */
  dropped: [session: GatewaySessionV2, code: FrameDropCode];
}

export class SessionTable extends EventEmitter<SessionTableEvents> {
  readonly #o: SessionTableOptions;
  readonly #byDev = new Map<string, GatewaySessionV2>();
  readonly #byConn = new Map<string, GatewaySessionV2>();
  readonly #counters: SessionCounters = { opened: 0, ended: {}, drops: {}, denied: 0, msgs: { relayed: 0, full: 0, unsent: 0 } };

  constructor(options: SessionTableOptions) {
    super();
    this.#o = options;
  }

  get size(): number {
    return this.#byConn.size;
  }

  counters(): SessionCounters {
    const live = [...this.#byConn.values()];
    const denied = this.#counters.denied + live.reduce((n, s) => n + s.info().denied, 0);
    const msgs = { ...this.#counters.msgs };
    for (const s of live) addMsgCounts(msgs, s);
    return { opened: this.#counters.opened, ended: { ...this.#counters.ended }, drops: { ...this.#counters.drops }, denied, msgs };
  }

  /** The live sessions. */
  sessions(): IterableIterator<GatewaySessionV2> {
    return this.#byConn.values();
  }

  list(): SessionInfo[] {
    return [...this.#byConn.values()].map((s) => s.info());
  }

  byConnection(conn: string): GatewaySessionV2 | undefined {
    return this.#byConn.get(conn);
  }

  byDevice(dev: string): GatewaySessionV2 | undefined {
    return this.#byDev.get(dev);
  }

  /**
   * Opens the session a welcome was delivered with, on `conn`. An older session of the device
   * (on this or another connection) ends with `bye replaced` first, and its connection closes
   * when it is another one (protocol-v2 "A newer v2 welcome for the same dev ends the older
   * session").
   */
  async open(opening: SessionOpening, conn: { id: string; transport: TransportKind }, hooks: SessionTransportHooks): Promise<GatewaySessionV2> {
    const older = [this.#byDev.get(opening.dev), this.#byConn.get(conn.id)];
    for (const s of new Set(older)) if (s !== undefined) await s.end('replaced');
    const session: GatewaySessionV2 = new GatewaySessionV2(
      opening,
      conn,
      {
        ...hooks,
        publishLocal: async (topic, body) => {
          await hooks.publishLocal(topic, body);
          this.emit('published', session, topic, body);
        },
        now: () => this.#o.now(),
        ...(this.#o.timers === undefined ? {} : { timers: this.#o.timers }),
        ended: (s, reason) => this.#ended(s, reason),
        dropped: (s, code) => {
          this.#counters.drops[code] = (this.#counters.drops[code] ?? 0) + 1;
          this.emit('dropped', s, code);
        },
      },
      this.#o.firstFrameTimeoutMs,
    );
    this.#byDev.set(opening.dev, session);
    this.#byConn.set(conn.id, session);
    this.#counters.opened += 1;
    this.emit('opened', session);
    return session;
  }

  /** protocol-v1 "A revoked device's connection is closed": its session ends with `bye revoked` first. */
  async revoke(devices: readonly string[]): Promise<void> {
    await Promise.all(devices.map((d) => this.#byDev.get(d)?.end('revoked')));
  }

  /** Every session (of `transport` only, when given) ends with `bye shutdown` (bounded by the caller). */
  async shutdown(transport?: TransportKind): Promise<void> {
    await Promise.all([...this.#byConn.values()].filter((s) => transport === undefined || s.transport === transport).map((s) => s.end('shutdown')));
  }

  /** The connection closed: its session ends without a bye. */
  connectionClosed(conn: string): void {
    void this.#byConn.get(conn)?.end('closed');
  }

  #ended(s: GatewaySessionV2, reason: SessionEndReason): void {
    this.#counters.ended[reason] = (this.#counters.ended[reason] ?? 0) + 1;
    this.#counters.denied += s.info().denied;
    addMsgCounts(this.#counters.msgs, s);
    if (this.#byDev.get(s.dev) === s) this.#byDev.delete(s.dev);
    if (this.#byConn.get(s.connection) === s) this.#byConn.delete(s.connection);
    this.emit('ended', s, reason);
  }
}

function addMsgCounts(into: SessionCounters['msgs'], s: GatewaySessionV2): void {
  const m = s.msgCounts;
  into.relayed += m.relayed;
  into.full += m.full;
  into.unsent += m.unsent;
}
