/**
 * The MQTT transport's ingress: what happens to a message a peripheral published on its up
 * topic (protocol-v1 "MQTT transport"). decodeUpMessage → challenge-request or hello → the
 * AuthPipeline → the reply published on the down topic at QoS 1. One message at a time per
 * connection, in arrival order, from a bounded queue.
 */
import type { Logger } from 'winston';
import { decodeUpMessage, expandPolicy, type UpMessage } from '../../../protocol/index.js';
import type { ReasonCode, Policy } from '../../../protocol/index.js';
import type { AuthPipeline } from '../../pipeline/types.js';
import type { MqttConnection } from './connection.js';

/** Verdicts after which an earlier welcome on the same connection no longer stands. */
const WITHDRAWS_WELCOME: ReadonlySet<ReasonCode> = new Set<ReasonCode>(['revoked', 'unknown-device', 'not-allowed-here']);

/** What the ingress needs from the transport. */
export interface IngressHost {
  pipeline: AuthPipeline;
  log: Logger;
  /** Auth messages waiting per connection; beyond it they are dropped. */
  maxQueued: number;
  /** False once the connection is closed or being closed. */
  isLive(conn: MqttConnection): boolean;
  publishDown(dev: string, payload: Uint8Array): Promise<void>;
  close(conn: MqttConnection): void;
  /** Called after the connection's policy is set, before the welcome is published. */
  onWelcomed(conn: MqttConnection, dev: string): void;
  onDropped(conn: MqttConnection): void;
  /** Called when a connection has no auth message left to decide or answer. */
  onIdle(conn: MqttConnection): void;
}

export class MqttIngress {
  readonly #h: IngressHost;

  constructor(host: IngressHost) {
    this.#h = host;
  }

  /** Queues one up payload of `conn` (already bound to `dev` by the ACL). */
  enqueue(conn: MqttConnection, dev: string, payload: Uint8Array): void {
    if (conn.queue.length >= this.#h.maxQueued) {
      conn.dropped += 1;
      this.#h.onDropped(conn);
      // Once per connection at warn; a flood would otherwise flood the log too.
      if (conn.dropped === 1) this.#h.log.warn('auth messages dropped: queue full', { conn: conn.id, dev, max: this.#h.maxQueued });
      return;
    }
    conn.queue.push(payload);
    if (!conn.draining) void this.#drain(conn, dev);
  }

  async #drain(conn: MqttConnection, dev: string): Promise<void> {
    conn.draining = true;
    try {
      for (let bytes = conn.queue.shift(); bytes !== undefined; bytes = conn.queue.shift()) {
        if (!this.#h.isLive(conn)) return;
        try {
          const reply = await this.#handle(conn, dev, bytes);
          if (this.#h.isLive(conn)) await this.#h.publishDown(dev, reply);
          if (conn.closeAfterReply) {
            this.#h.close(conn);
            return;
          }
        } catch (err) {
          this.#h.log.error('auth message failed', { conn: conn.id, dev, error: err instanceof Error ? err.message : String(err) });
        }
      }
    } finally {
      conn.draining = false;
      this.#h.onIdle(conn);
    }
  }

  async #handle(conn: MqttConnection, dev: string, bytes: Uint8Array): Promise<Uint8Array> {
    let up: UpMessage | undefined;
    try {
      up = decodeUpMessage(bytes);
    } catch {
      up = undefined;
    }
    if (up?.type === 'challenge-request' && up.message.dev === dev) return this.#h.pipeline.challenge(conn.ingress, dev);
    // A hello, or anything that does not decode: the hello checks answer the precise reject.
    const outcome = await this.#h.pipeline.hello(conn.ingress, bytes, dev);
    // A peer that left while the backend decided is not welcomed: it must not close a live one.
    if (outcome.welcomed !== undefined && this.#h.isLive(conn)) this.#welcome(conn, outcome.welcomed.dev, outcome.welcomed.policy);
    const reason = outcome.rejected?.reason;
    if (conn.welcomed && reason !== undefined && WITHDRAWS_WELCOME.has(reason)) {
      // The backend no longer vouches for the device: its earlier welcome is void.
      this.#h.log.info('connection closed: welcomed device refused on a new hello', { conn: conn.id, dev, reason });
      conn.closeAfterReply = true;
    }
    return outcome.reply;
  }

  /** Applies the lease policy before the welcome is published, so the peer may use it at once. */
  #welcome(conn: MqttConnection, dev: string, policy: Policy): void {
    // Default deny: the lease's policy verbatim; an empty one grants nothing beyond the auth topics.
    conn.policy = expandPolicy(policy, dev);
    clearTimeout(conn.authTimer);
    conn.authTimer = undefined;
    this.#h.onWelcomed(conn, dev);
  }
}
