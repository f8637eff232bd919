/**
 * The MQTT transport's ingress: what happens to a message a peripheral published on its up
 * topic (protocol-v1 and protocol-v2 "MQTT transport"). The topic's version picks the decoder:
 * challenge-request or hello → the AuthPipeline → the reply delivered at QoS 1 to this
 * connection only (never to every subscriber of the down topic). One auth message at a time per
 * connection, in arrival order, from a bounded queue. A v2 frame goes straight to the session
 * that this connection owns; from any other connection it is discarded unread.
 */
import type { Logger } from 'winston';
import { decodeUpMessage, decodeUpMessageV2, expandPolicy, ProtocolError, type UpMessage, type UpMessageV2 } from '../../../protocol/index.js';
import type { ReasonCode } from '../../../protocol/index.js';
import type { AuthPipeline, ProtocolVersion, SessionOpening } from '../../pipeline/types.js';
import type { SessionTable } from '../../sessions/table.js';
import type { MqttConnection } from './connection.js';
import type { MqttConnectionTable } from './connection-table.js';

/** Verdicts after which an earlier welcome on the same connection no longer stands. */
const WITHDRAWS_WELCOME: ReadonlySet<ReasonCode> = new Set<ReasonCode>(['revoked', 'unknown-device', 'not-allowed-here']);

export interface IngressOptions {
  pipeline: AuthPipeline;
  log: Logger;
  /** Auth messages waiting per connection; beyond it they are dropped. */
  maxQueued: number;
  connections: MqttConnectionTable;
  /** Delivers a reply to `conn` alone on the device's down topic of `version`, QoS 1 (bounded in time). */
  deliver(conn: MqttConnection, dev: string, version: ProtocolVersion, payload: Uint8Array): Promise<void>;
  /** Protocol versions answered; a message on another version's topic gets `unsupported-version`. */
  versions: readonly ProtocolVersion[];
  /** The v2 sessions. */
  sessions: SessionTable;
  /** Opens the session a v2 welcome was delivered with (the transport supplies its hooks). */
  openSession(conn: MqttConnection, opening: SessionOpening): Promise<void>;
}

/** One auth message waiting, with the version of the topic it came on. */
interface Waiting {
  bytes: Uint8Array;
  version: ProtocolVersion;
}

/** One connection's auth messages waiting for the pipeline, oldest first. */
interface Lane {
  readonly queue: Waiting[];
  draining: boolean;
  /** Auth messages dropped because the queue was full. */
  dropped: number;
  /** Close once the current reply is published (a welcomed device refused on a new hello). */
  closeAfterReply: boolean;
}

export class MqttIngress {
  readonly #o: IngressOptions;
  readonly #lanes = new Map<MqttConnection, Lane>();
  /** Waiting in idle() for in-flight auth messages to be answered. */
  readonly #idleWaiters: (() => void)[] = [];
  #dropped = 0;

  constructor(options: IngressOptions) {
    this.#o = options;
  }

  /** Auth messages dropped because a connection's queue was full, all connections. */
  get dropped(): number {
    return this.#dropped;
  }

  /** True while some connection has an auth message being decided or answered. */
  get busy(): boolean {
    for (const lane of this.#lanes.values()) if (lane.draining || lane.queue.length > 0) return true;
    return false;
  }

  /** Resolves once no connection has an auth message being decided or answered (callers bound it). */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Queues one up payload of `conn` (already bound to `dev` by the ACL), from the topic of `version`. */
  enqueue(conn: MqttConnection, dev: string, payload: Uint8Array, version: ProtocolVersion = 1): void {
    if (version === 2 && payload[0] === 0xd0 && this.#o.versions.includes(2)) {
      // protocol-v2 "Whose frames": only the connection that owns the session; from any other
      // connection a frame is discarded unread and not counted.
      const session = this.#o.sessions.byConnection(conn.id);
      if (session !== undefined && session.dev === dev) session.receive(payload);
      return;
    }
    let lane = this.#lanes.get(conn);
    if (lane === undefined) {
      lane = { queue: [], draining: false, dropped: 0, closeAfterReply: false };
      this.#lanes.set(conn, lane);
    }
    if (lane.queue.length >= this.#o.maxQueued) {
      lane.dropped += 1;
      this.#dropped += 1;
      // Once per connection at warn; a flood would otherwise flood the log too.
      if (lane.dropped === 1) this.#o.log.warn('auth messages dropped: queue full', { conn: conn.id, dev, max: this.#o.maxQueued });
      return;
    }
    lane.queue.push({ bytes: payload, version });
    if (!lane.draining) void this.#drain(conn, lane, dev);
  }

  /** The connection closed: its waiting messages are dropped. Answers how many were dropped for a full queue. */
  forget(conn: MqttConnection): number {
    const lane = this.#lanes.get(conn);
    if (lane === undefined) return 0;
    lane.queue.length = 0;
    if (!lane.draining) this.#lanes.delete(conn);
    this.#checkIdle();
    return lane.dropped;
  }

  #checkIdle(): void {
    if (this.#idleWaiters.length > 0 && !this.busy) for (const w of this.#idleWaiters.splice(0)) w();
  }

  async #drain(conn: MqttConnection, lane: Lane, dev: string): Promise<void> {
    const table = this.#o.connections;
    lane.draining = true;
    try {
      for (let m = lane.queue.shift(); m !== undefined; m = lane.queue.shift()) {
        if (!table.isLive(conn)) return;
        try {
          const { reply, opening } = await this.#handleVersion(conn, lane, dev, m);
          if (table.isLive(conn)) await this.#o.deliver(conn, dev, m.version, reply);
          // The session starts once its welcome is out (protocol-v2: bound to this connection).
          if (opening !== undefined && table.isLive(conn)) await this.#o.openSession(conn, opening);
          if (lane.closeAfterReply) {
            table.close(conn);
            return;
          }
        } catch (err) {
          this.#o.log.error('auth message failed', { conn: conn.id, dev, error: err instanceof Error ? err.message : String(err) });
        }
      }
    } finally {
      lane.draining = false;
      if (!table.isLive(conn)) this.#lanes.delete(conn);
      this.#checkIdle();
    }
  }

  async #handleVersion(conn: MqttConnection, lane: Lane, dev: string, m: Waiting): Promise<{ reply: Uint8Array; opening?: SessionOpening }> {
    // protocol-v2 "Negotiation": a version the gateway is not configured for is answered
    // unsupported-version, in the topic's version.
    if (!this.#o.versions.includes(m.version)) return { reply: await this.#o.pipeline.reject(conn.ingress, dev, 'unsupported-version', m.version) };
    if (m.version === 1) return { reply: await this.#handle(conn, lane, dev, m.bytes) };
    return this.#handleV2(conn, lane, dev, m.bytes);
  }

  async #handleV2(conn: MqttConnection, lane: Lane, dev: string, bytes: Uint8Array): Promise<{ reply: Uint8Array; opening?: SessionOpening }> {
    let up: UpMessageV2 | undefined;
    try {
      up = decodeUpMessageV2(bytes);
    } catch (e) {
      // A message whose version differs from its topic's is answered unsupported-version.
      if (e instanceof ProtocolError && e.reason === 'unsupported-version') {
        return { reply: await this.#o.pipeline.reject(conn.ingress, dev, 'unsupported-version', 2) };
      }
      up = undefined;
    }
    if (up?.type === 'challenge-request' && up.message.dev === dev) {
      // protocol-v2: a challenge-request from the connection that owns the session ends it
      // (bye replaced) and starts a new exchange on the same connection, which stays open.
      const session = this.#o.sessions.byConnection(conn.id);
      if (session !== undefined) await session.end('replaced', { keepConnection: true });
      return { reply: await this.#o.pipeline.challenge(conn.ingress, dev, 2) };
    }
    const outcome = await this.#o.pipeline.hello(conn.ingress, bytes, dev, 2);
    if (outcome.welcomed !== undefined && outcome.session !== undefined && this.#o.connections.isLive(conn)) {
      // The older session of the device says bye replaced before its connection is closed.
      await this.#o.sessions.byDevice(dev)?.end('replaced');
      // No plaintext broker rights for a v2 session: the table records the welcome without a policy.
      this.#o.connections.welcome(conn, outcome.welcomed.dev, outcome.session.policy, 2);
      return { reply: outcome.reply, opening: outcome.session };
    }
    this.#withdraw(conn, lane, dev, outcome.rejected?.reason);
    return { reply: outcome.reply };
  }

  #withdraw(conn: MqttConnection, lane: Lane, dev: string, reason: ReasonCode | undefined): void {
    if (conn.welcomed && reason !== undefined && WITHDRAWS_WELCOME.has(reason)) {
      // The backend no longer vouches for the device: its earlier welcome is void.
      this.#o.log.info('connection closed: welcomed device refused on a new hello', { conn: conn.id, dev, reason });
      lane.closeAfterReply = true;
    }
  }

  async #handle(conn: MqttConnection, lane: Lane, dev: string, bytes: Uint8Array): Promise<Uint8Array> {
    let up: UpMessage | undefined;
    try {
      up = decodeUpMessage(bytes);
    } catch (e) {
      // A message whose version differs from its topic's is answered unsupported-version.
      if (e instanceof ProtocolError && e.reason === 'unsupported-version') return this.#o.pipeline.reject(conn.ingress, dev, 'unsupported-version', 1);
      up = undefined;
    }
    if (up?.type === 'challenge-request' && up.message.dev === dev) return this.#o.pipeline.challenge(conn.ingress, dev);
    // A hello, or anything that does not decode: the hello checks answer the precise reject.
    const outcome = await this.#o.pipeline.hello(conn.ingress, bytes, dev);
    // A peer that left while the backend decided is not welcomed: it must not close a live one.
    // The policy is set before the welcome is published, so the peer may use it at once.
    // Default deny: the lease's policy verbatim; an empty one grants nothing beyond the auth topics.
    const welcomed = outcome.welcomed;
    if (welcomed !== undefined && this.#o.connections.isLive(conn)) {
      this.#o.connections.welcome(conn, welcomed.dev, expandPolicy(welcomed.policy, welcomed.dev), 1, welcomed.lifeSeconds);
    }
    this.#withdraw(conn, lane, dev, outcome.rejected?.reason);
    return outcome.reply;
  }
}
