/**
 * protocol-v1 "Backend HTTP API": a nonce seen before within the 300 s window is rejected. A
 * request whose `created` is within ±window of now is remembered until `created + window`,
 * after which it would be refused as stale anyway. Bounded: when full of live nonces the cache
 * answers `full` instead of forgetting one (forgetting would let a replay through).
 */
export type NonceOutcome = 'fresh' | 'replay' | 'full';

export class NonceCache {
  /** key → unix seconds after which the entry may be dropped. */
  readonly #entries = new Map<string, number>();
  #lastSweep = 0;

  readonly #maxEntries: number;
  readonly #windowSeconds: number;

  constructor(
    maxEntries: number,
    windowSeconds: number,
  ) {
    this.#maxEntries = maxEntries;
    this.#windowSeconds = windowSeconds;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Record `nonce` for `keyid` (signed at `created`); `replay` if it was already seen. */
  check(keyid: string, nonce: string, created: number, now: number): NonceOutcome {
    const key = `${keyid}\u0000${nonce}`;
    const until = this.#entries.get(key);
    if (until !== undefined && until >= now) return 'replay';
    // Sweep once a minute, or when full (at most once a second, so a flood cannot make every request O(n)).
    if (now - this.#lastSweep >= 60 || (this.#entries.size >= this.#maxEntries && now > this.#lastSweep)) this.#sweep(now);
    if (this.#entries.size >= this.#maxEntries) return 'full';
    this.#entries.set(key, created + this.#windowSeconds);
    return 'fresh';
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [k, until] of this.#entries) if (until < now) this.#entries.delete(k);
  }
}
