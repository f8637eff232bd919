/**
 * An injected clock for tests: time moves only when the test says so, and due timers fire in
 * order as it moves. Not a fake of any component: the code under test takes a TimerClock.
 */
import type { TimerClock, TimerHandle } from '../common/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

export class ManualClock implements TimerClock {
  #t: number;
  #seq = 0;
  readonly #timers = new Map<object, Pending>();

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#t = startMs;
  }

  now(): number {
    return this.#t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = {};
    this.#timers.set(handle, { at: this.#t + Math.max(0, ms), seq: this.#seq++, fn });
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle);
  }

  /** Number of armed timers. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next timer is due, or undefined. */
  nextAt(): number | undefined {
    let min: number | undefined;
    for (const p of this.#timers.values()) if (min === undefined || p.at < min) min = p.at;
    return min;
  }

  /** Move time forward by `ms`, firing each due timer in order. */
  advance(ms: number): void {
    const end = this.#t + ms;
    for (;;) {
      let next: [object, Pending] | undefined;
      for (const e of this.#timers) {
        if (e[1].at <= end && (next === undefined || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))) next = e;
      }
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#t = Math.max(this.#t, next[1].at);
      next[1].fn();
    }
    this.#t = end;
  }
}
