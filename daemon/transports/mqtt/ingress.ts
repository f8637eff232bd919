/**
 * The MQTT transport's ingress: what happens to a message a peripheral published on its up
 * topic (protocol-v1 "MQTT transport"). decodeUpMessage → challenge-request or hello → the
 * AuthPipeline → the reply published on the down topic at QoS 1. One message at a time per
 * connection, in arrival order, from a bounded queue.
 */
import type { Logger } from 'winston';
import { decodeUpMessage, expandPolicy, type UpMessage } from '../../../protocol/index.js';
import type { ReasonCode } from '../../../protocol/index.js';
import type { AuthPipeline } from '../../pipeline/types.js';
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
  /** Publishes a reply on the device's down topic at QoS 1 (bounded in time). */
  publishDown(dev: string, payload: Uint8Array): Promise<void>;
}

/** One connection's auth messages waiting for the pipeline, oldest first. */
interface Lane {
  readonly queue: Uint8Array[];
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

  /** Queues one up payload of `conn` (already bound to `dev` by the ACL). */
  enqueue(conn: MqttConnection, dev: string, payload: Uint8Array): void {
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
    lane.queue.push(payload);
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
      for (let bytes = lane.queue.shift(); bytes !== undefined; bytes = lane.queue.shift()) {
        if (!table.isLive(conn)) return;
        try {
          const reply = await this.#handle(conn, lane, dev, bytes);
          if (table.isLive(conn)) await this.#o.publishDown(dev, reply);
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

  async #handle(conn: MqttConnection, lane: Lane, dev: string, bytes: Uint8Array): Promise<Uint8Array> {
    let up: UpMessage | undefined;
    try {
      up = decodeUpMessage(bytes);
    } catch {
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
      this.#o.connections.welcome(conn, welcomed.dev, expandPolicy(welcomed.policy, welcomed.dev));
    }
    const reason = outcome.rejected?.reason;
    if (conn.welcomed && reason !== undefined && WITHDRAWS_WELCOME.has(reason)) {
      // The backend no longer vouches for the device: its earlier welcome is void.
      this.#o.log.info('connection closed: welcomed device refused on a new hello', { conn: conn.id, dev, reason });
      lane.closeAfterReply = true;
    }
    return outcome.reply;
  }
}
