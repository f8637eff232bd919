/**
 * Circuit breaker for the backend (closed → open → half-open → closed). After
 * `failureThreshold` consecutive unreachable failures it opens: calls fail at once (and the
 * offline rule answers) instead of piling up timeouts. After `openMs` one probe is let through
 * (half-open); its success closes the circuit, its failure opens it again.
 */
import type { TimerClock } from '../../common/clock.js';

export type CircuitState = 'closed' | 'open' | 'half-open';

/** `backend.circuit.*` from the config (the schema holds the defaults). */
export interface BreakerSettings {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** How long it stays open before a probe. */
  openMs: number;
}

export class CircuitBreaker {
  readonly #clock: TimerClock;
  readonly #threshold: number;
  readonly #openMs: number;
  #state: CircuitState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probing = false;
  #opens = 0;

  constructor(clock: TimerClock, settings: BreakerSettings) {
    this.#clock = clock;
    this.#threshold = settings.failureThreshold;
    this.#openMs = settings.openMs;
  }

  /** Times the circuit opened. */
  get opens(): number {
    return this.#opens;
  }

  /** The state now (an open circuit whose time is up reads as half-open). */
  get current(): CircuitState {
    if (this.#state === 'open' && this.#clock.now() - this.#openedAt >= this.#openMs) return 'half-open';
    return this.#state;
  }

  /** Milliseconds until a probe is allowed (0 when not open). */
  get retryInMs(): number {
    return this.current === 'open' ? Math.max(0, this.#openMs - (this.#clock.now() - this.#openedAt)) : 0;
  }

  /** May a request go out now? In half-open, only one probe at a time. */
  tryAcquire(): boolean {
    const s = this.current;
    if (s === 'closed') return true;
    if (s === 'open') return false;
    if (this.#probing) return false;
    this.#state = 'half-open';
    this.#probing = true;
    return true;
  }

  success(): void {
    this.#failures = 0;
    this.#probing = false;
    this.#state = 'closed';
  }

  /** Record an unreachable failure. */
  failure(): void {
    this.#failures += 1;
    if (this.#state === 'half-open' || this.#failures >= this.#threshold) {
      if (this.#state !== 'open') this.#opens += 1;
      this.#state = 'open';
      this.#openedAt = this.#clock.now();
    }
    this.#probing = false;
  }

  /** A request that ended without telling anything about reachability (e.g. aborted). */
  release(): void {
    this.#probing = false;
  }

  /**
   * A failed call's outcome: an unreachable backend is a failure, an aborted call counts as no
   * call at all, and any other answer shows the backend reachable.
   */
  failed(err: { readonly unreachable: boolean; readonly kind: string }): void {
    if (err.unreachable) this.failure();
    else if (err.kind === 'aborted') this.release();
    else this.success();
  }
}
