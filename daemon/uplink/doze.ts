/**
 * The uplink loops' pause: a sleep on the injected clock that a wake() cuts short (new work, a
 * session opened, stop). Shared by the uploader and the command relay.
 */
import type { Logger } from 'winston';
import type { TimerClock, TimerHandle } from '../../common/clock.js';
import { silentLogger } from '../../common/log/logger.js';
import { CircuitBreaker, type BreakerSettings } from '../backend-client/breaker.js';
import type { BackendHttp } from '../backend-client/dispatcher.js';
import type { SessionProvider } from '../pipeline/types.js';

/** One loop's pause: at most one sleep at a time. */
export class Doze {
  readonly #clock: TimerClock;
  #wake: (() => void) | undefined;
  #timer: TimerHandle | undefined;

  constructor(clock: TimerClock) {
    this.#clock = clock;
  }

  /** Resolves after `ms` (never, without `ms`) or at the next wake(), whichever is first. */
  sleep(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      if (ms !== undefined) this.#timer = this.#clock.setTimeout(() => this.wake(), ms);
    });
  }

  /** Ends the current sleep now (nothing when none). */
  wake(): void {
    const w = this.#wake;
    this.#wake = undefined;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    w?.();
  }
}

/** What the uplink loops (uploader, command relay) share: session-signed backend calls behind a breaker, retried with backoff. */
export interface UplinkLoopOptions {
  gw: string;
  http: BackendHttp;
  session: SessionProvider;
  breaker: BreakerSettings;
  requestTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Wall clock (signatures' `created`) and timers. */
  clock: TimerClock;
  logger?: Logger;
}

/** What an uplink loop is built from its options: them, its logger, the breaker in front of its backend calls, its pause. */
export function loopParts<O extends UplinkLoopOptions>(o: O): { o: O; log: Logger; breaker: CircuitBreaker; doze: Doze } {
  return { o, log: o.logger ?? silentLogger(), breaker: new CircuitBreaker(o.clock, o.breaker), doze: new Doze(o.clock) };
}
