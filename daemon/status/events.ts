/**
 * A bounded ring of decision events for `/v1/events?since=`. Old events are overwritten; a
 * reader that fell behind learns so through `truncated`.
 */
import type { DecisionEvent } from '../pipeline/types.js';
import type { EventPage } from './types.js';

export class EventRing {
  readonly #buf: (DecisionEvent | undefined)[];
  #seq = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.#buf = new Array<DecisionEvent | undefined>(capacity);
  }

  /** Store an event, assigning the next sequence number (starting at 1). */
  push(event: Omit<DecisionEvent, 'seq'>): DecisionEvent {
    this.#seq += 1;
    const e: DecisionEvent = { ...event, seq: this.#seq };
    this.#buf[this.#seq % this.capacity] = e;
    return e;
  }

  /** The newest sequence number (0 when empty). */
  get last(): number {
    return this.#seq;
  }

  /**
   * Events with seq > since, oldest first, at most `limit`; only those of device `dev` when
   * given (then `next` is the last event looked at, so a follower does not look at it again).
   */
  since(since: number, limit: number, dev?: string): EventPage {
    let after = since;
    let truncated = false;
    // A cursor beyond our newest event comes from before a restart: start over and say so.
    if (after > this.#seq) {
      after = 0;
      truncated = true;
    }
    const oldest = Math.max(1, this.#seq - this.capacity + 1);
    if (this.#seq > 0 && after + 1 < oldest) truncated = true;
    const events: DecisionEvent[] = [];
    let next = after;
    for (let s = Math.max(after + 1, oldest); s <= this.#seq && events.length < limit; s++) {
      const e = this.#buf[s % this.capacity];
      if (e === undefined) continue;
      next = e.seq;
      if (dev === undefined || e.dev === dev) events.push(e);
    }
    return { events, next, truncated };
  }
}
