/**
 * The one token bucket. A bucket holds up to `burst` tokens and gains `perSecond` of them per
 * second of the injected clock; `take()` spends one or answers how long until one is there.
 * Callers turn that answer into their own refusal (the TPM store's `GH_TPM_RATE_LIMITED`, the
 * pipeline's `busy` with `retry`).
 */
import type { Clock } from './clock.js';

/** A bucket's size and refill rate. */
export interface BucketSpec {
  /** Bucket size: takes allowed back to back. */
  burst: number;
  /** Refill rate, tokens per second (> 0). */
  perSecond: number;
}

export class TokenBucket {
  #spec: BucketSpec;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  /** Starts full. */
  constructor(spec: BucketSpec, clock: Clock) {
    this.#spec = spec;
    this.#clock = clock;
    this.#tokens = spec.burst;
    this.#last = clock.now();
  }

  get spec(): BucketSpec {
    return this.#spec;
  }

  /** New limits: the bucket keeps its tokens, capped at the new burst. */
  setSpec(spec: BucketSpec): void {
    this.#spec = spec;
    this.#tokens = Math.min(this.#tokens, spec.burst);
  }

  /**
   * Takes one token: answers 0, or the seconds (unrounded) until a token is available, which is
   * the wait before a retry can succeed. Nothing is taken when the answer is not 0.
   */
  take(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return (1 - this.#tokens) / this.#spec.perSecond;
  }

  /** Gives back a token taken by `take` (when a later check refused the request). */
  giveBack(): void {
    this.#tokens = Math.min(this.#spec.burst, this.#tokens + 1);
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = Math.max(0, now - this.#last) / 1000;
    this.#last = now;
    this.#tokens = Math.min(this.#spec.burst, this.#tokens + elapsed * this.#spec.perSecond);
  }
}
