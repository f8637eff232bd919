/**
 * Time as an injected dependency: nothing reads the wall clock or arms a timer directly, so
 * tests drive expiry, renewal, rate limits and backoff without waiting.
 *
 * One concept: a `Clock` tells the time; a `TimerClock` also arms timers, for the components
 * that schedule work (the backend client's renewal, batching, backoff).
 */

/** An opaque timer handle. */
export type TimerHandle = { readonly __timer: unique symbol } | object;

/** A source of time in milliseconds. */
export interface Clock {
  now(): number;
}

/** A clock that also arms timers. */
export interface TimerClock extends Clock {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The longest delay node's timers accept (2^31−1 ms); longer waits are chained. */
export const MAX_TIMER_MS = 2_147_483_647;

function realTimer(fn: () => void, ms: number): TimerHandle {
  const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
  t.unref();
  return t;
}

/**
 * The system wall clock (unix milliseconds). Timers are unref'd: they never keep the process
 * alive on their own.
 */
export const systemClock: TimerClock = {
  now: () => Date.now(),
  setTimeout: realTimer,
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A monotonic clock in milliseconds: elapsed time that wall-clock steps do not move. */
export const monotonicClock: TimerClock = {
  now: () => performance.now(),
  setTimeout: realTimer,
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Full-jitter exponential backoff: a random delay in [d/2, d] with d = min(base·2^attempt, max). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + random() * (d / 2));
}

/** A timer that may be longer than {@link MAX_TIMER_MS}: armed in steps on `clock`. */
export interface LongTimer {
  cancel(): void;
}

/** Calls `fn` after `ms` on `clock`, chaining timers for waits beyond what one timer accepts. */
export function longTimeout(clock: Pick<TimerClock, 'setTimeout' | 'clearTimeout'>, fn: () => void, ms: number): LongTimer {
  let handle: TimerHandle | undefined;
  let left = Math.max(0, ms);
  const arm = (): void => {
    const step = Math.min(left, MAX_TIMER_MS);
    left -= step;
    handle = clock.setTimeout(() => {
      handle = undefined;
      if (left > 0) arm();
      else fn();
    }, step);
  };
  arm();
  return {
    cancel: () => {
      if (handle !== undefined) clock.clearTimeout(handle);
      handle = undefined;
    },
  };
}
