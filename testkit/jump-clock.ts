/** A test clock whose wall-clock time can jump (fault tests). */
import type { TimerClock, TimerHandle } from '../common/clock.js';

/**
 * Wall-clock time that can jump (an NTP step, an RTC reset) while timers keep their meaning:
 * every timer is due at a clock time, and a jump re-arms them against the new time.
 */
export class JumpClock implements TimerClock {
  #offset = 0;
  readonly #timers = new Map<object, { fn: () => void; dueAt: number; real: NodeJS.Timeout }>();

  now(): number {
    return Date.now() + this.#offset;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = {};
    this.#arm(handle, fn, this.now() + Math.max(0, ms));
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    const t = this.#timers.get(handle);
    if (t !== undefined) clearTimeout(t.real);
    this.#timers.delete(handle);
  }

  /** Step the clock by `ms` (negative: backwards); timers now due fire at once. */
  jump(ms: number): void {
    this.#offset += ms;
    for (const [handle, t] of [...this.#timers]) {
      clearTimeout(t.real);
      this.#arm(handle, t.fn, t.dueAt);
    }
  }

  /** Drop every timer (after the gateway stopped). */
  dispose(): void {
    for (const t of this.#timers.values()) clearTimeout(t.real);
    this.#timers.clear();
  }

  #arm(handle: object, fn: () => void, dueAt: number): void {
    const real = setTimeout(() => {
      this.#timers.delete(handle);
      fn();
    }, Math.min(2_147_483_647, Math.max(0, dueAt - this.now())));
    real.unref();
    this.#timers.set(handle, { fn, dueAt, real });
  }
}
