/**
 * protocol-v2 "msg": a message published on the gateway's broker goes, as a protected `msg`
 * frame, to every live v2 session whose lease policy's `sub` filters grant its topic, whatever
 * the session's transport (every session table is attached here). Vouched for by the gateway
 * only: the peripheral never acts on one as a command.
 *
 * Choices where the spec is silent (docs/protocol.md "msg frames"): a topic longer than a frame's
 * topic field allows is not relayed (like a body over 1,024 bytes), counted; a v2 device's own
 * pub, published on the broker, is relayed to every other session it grants but not echoed to the
 * session it came from (MQTT 5's no-local); each session queues at most `maxQueuedPerSession`
 * messages behind the one in flight and drops, and counts, what arrives beyond that.
 */
import { MAX_PUB_BODY_BYTES, topicNameProblem } from '../../protocol/index.js';
import type { GatewaySessionV2 } from './session.js';
import type { SessionTable } from './table.js';

/** `dataPlane.msgQueuePerSession` from the config. */
export interface MsgRelaySettings {
  /** Messages one session queues behind the one in flight; beyond it they are dropped, counted. */
  maxQueuedPerSession: number;
}

/** Counters since start, every attached table included. */
export interface MsgRelayStats {
  /** Broker messages offered to the relay. */
  offered: number;
  /** Not relayed to anyone: body over 1,024 bytes, or a topic a frame cannot carry. */
  tooLarge: number;
  badTopic: number;
  /** Per session: frames relayed, dropped for a full queue, queued but never sent. */
  relayed: number;
  full: number;
  unsent: number;
}

export class MsgRelay {
  readonly #o: MsgRelaySettings;
  readonly #tables: SessionTable[] = [];
  #offered = 0;
  #tooLarge = 0;
  #badTopic = 0;

  constructor(o: MsgRelaySettings) {
    this.#o = o;
  }

  /** A transport's session table: its sessions receive msgs, and their local publishes are relayed. */
  attach(table: SessionTable): void {
    this.#tables.push(table);
    table.on('published', (origin, topic, body) => this.offer(topic, body, origin));
  }

  /**
   * A message published on the broker. Synchronous and never waits: each granted session gets it
   * queued or dropped. `origin` is the session whose pub it is (not echoed to it). Returns the
   * number of sessions it was queued for.
   */
  offer(topic: string, body: Uint8Array, origin?: GatewaySessionV2): number {
    this.#offered += 1;
    // protocol-v2 "msg": larger bodies are not relayed.
    if (body.length > MAX_PUB_BODY_BYTES) {
      this.#tooLarge += 1;
      return 0;
    }
    if (topicNameProblem(topic) !== undefined) {
      this.#badTopic += 1;
      return 0;
    }
    let queued = 0;
    for (const table of this.#tables) {
      for (const s of table.sessions()) {
        if (s === origin || !s.msgGranted(topic)) continue;
        if (s.queueMsg(topic, body, this.#o.maxQueuedPerSession) === 'queued') queued += 1;
      }
    }
    return queued;
  }

  stats(): MsgRelayStats {
    const out: MsgRelayStats = { offered: this.#offered, tooLarge: this.#tooLarge, badTopic: this.#badTopic, relayed: 0, full: 0, unsent: 0 };
    for (const t of this.#tables) {
      const m = t.counters().msgs;
      out.relayed += m.relayed;
      out.full += m.full;
      out.unsent += m.unsent;
    }
    return out;
  }
}
