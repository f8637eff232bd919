/**
 * Waiting on events with a deadline: the only synchronisation tests use (never a sleep).
 */
import type { EventEmitter } from 'node:events';

/** Resolve on the first `event` whose args satisfy `match`, or fail after `ms`. */
export function waitForEvent<T extends unknown[]>(
  on: (listener: (...args: T) => void) => () => void,
  match: (...args: T) => boolean,
  what: string,
  ms = 10_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const off = on((...args: T) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/** {@link waitForEvent} on the `name` event of a Node `EventEmitter`. */
export function waitForEmitter<T extends unknown[]>(
  emitter: EventEmitter,
  name: string,
  match: (...args: T) => boolean,
  what: string,
  ms = 10_000,
): Promise<T> {
  return waitForEvent<T>(
    (l) => {
      emitter.on(name, l);
      return () => emitter.off(name, l);
    },
    match,
    what,
    ms,
  );
}

/**
 * Resolve once `check` holds, asked every `everyMs`, or fail after `ms`: for state that changes
 * without an event to wait on (a row at the backend, a counter of another process's part).
 */
export async function pollUntil(check: () => boolean | Promise<boolean>, what: string, ms = 15_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
