/**
 * The outbound queue of `msg` frames of one v2 session (protocol-v2 "msg"): bounded, one frame in
 * flight at a time, in arrival order. Enqueueing never waits, so a slow connection or link never
 * holds up the broker or any other session: when the queue is full the arriving message is
 * dropped and counted. Receipts and commands do not pass through here, so msgs never delay them.
 */
import type { FramePayload } from '../../protocol/index.js';

/** What became of a message offered to one session. */
export type MsgEnqueueResult = 'queued' | 'full' | 'ended';

/** Per-session msg counters. */
export interface MsgOutboxCounts {
  /** msg frames handed to the connection or link. */
  relayed: number;
  /** Dropped on arrival: the queue held its bound. */
  full: number;
  /** Queued but never sent: the session ended first, or the connection refused the frame. */
  unsent: number;
  /** Waiting now. */
  queued: number;
}

export class MsgOutbox {
  readonly #send: (p: FramePayload) => Promise<boolean>;
  readonly #queue: { topic: string; body: Uint8Array }[] = [];
  #draining = false;
  #closed = false;
  #relayed = 0;
  #full = 0;
  #unsent = 0;

  /** `send` seals the frame with the session's next gateway-side seq and hands it over. */
  constructor(send: (p: FramePayload) => Promise<boolean>) {
    this.#send = send;
  }

  counts(): MsgOutboxCounts {
    return { relayed: this.#relayed, full: this.#full, unsent: this.#unsent, queued: this.#queue.length };
  }

  /** Queue one message; `maxQueued` bounds the messages waiting behind the one in flight. */
  enqueue(topic: string, body: Uint8Array, maxQueued: number): MsgEnqueueResult {
    if (this.#closed) return 'ended';
    if (this.#queue.length >= maxQueued) {
      this.#full += 1;
      return 'full';
    }
    this.#queue.push({ topic, body });
    if (!this.#draining) void this.#drain();
    return 'queued';
  }

  /** The session ended: what is still queued is never sent (its keys are gone). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsent += this.#queue.length;
    this.#queue.length = 0;
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      for (let m = this.#queue.shift(); m !== undefined && !this.#closed; m = this.#queue.shift()) {
        let sent = false;
        try {
          sent = await this.#send({ type: 'msg', topic: m.topic, body: m.body });
        } catch {
          // Not sealable (the relay checks topic and body first): never sent, counted.
        }
        if (sent) this.#relayed += 1;
        else this.#unsent += 1;
      }
    } finally {
      this.#draining = false;
    }
  }
}
