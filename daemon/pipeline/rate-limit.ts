/**
 * Token buckets for the pipeline's rate limits (per connection, per device, global). Time comes
 * from the injected clock. Keyed tables are bounded: beyond `maxKeys` the least recently
 * touched bucket is dropped (the global bucket still holds the line against key rotation).
 */
import type { Clock } from '../../common/clock.js';
import { TokenBucket, type BucketSpec } from '../../common/token-bucket.js';

/** Whole seconds to wait for a bucket's answer (at least 1, rounded up): the `retry` of `busy`. */
function retrySeconds(waitSeconds: number): number {
  return Math.max(1, Math.ceil(waitSeconds));
}

/** A table of token buckets keyed by string (Map: never a plain-object lookup on client input). */
export class KeyedBuckets {
  #spec: BucketSpec;
  readonly #clock: Clock;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(spec: BucketSpec, clock: Clock, maxKeys: number) {
    this.#spec = spec;
    this.#clock = clock;
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** New limits (SIGHUP reload): existing buckets keep their tokens, capped at the new burst. */
  setSpec(spec: BucketSpec): void {
    this.#spec = spec;
    for (const b of this.#buckets.values()) b.setSpec(spec);
  }

  /** Takes one token for `key`; answers 0 on success or the seconds to wait. */
  take(key: string): number {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
      bucket = new TokenBucket(this.#spec, this.#clock);
    } else {
      this.#buckets.delete(key);
    }
    // Re-inserted so the Map's order is least recently touched first.
    this.#buckets.set(key, bucket);
    const wait = bucket.take();
    return wait === 0 ? 0 : retrySeconds(wait);
  }

  /** Gives back a token taken by `take` (when a later check refused the request). */
  giveBack(key: string): void {
    this.#buckets.get(key)?.giveBack();
  }

  delete(key: string): void {
    this.#buckets.delete(key);
  }
}

/** The three limits protocol-v1 "Gateway checks on a hello" asks for, each taken at its own step. */
export class RateLimiter {
  readonly #perConnection: KeyedBuckets;
  readonly #perDevice: KeyedBuckets;
  readonly #global: KeyedBuckets;

  constructor(
    specs: { perConnection: BucketSpec; perDevice: BucketSpec; global: BucketSpec },
    clock: Clock,
    maxKeys: number,
  ) {
    this.#perConnection = new KeyedBuckets(specs.perConnection, clock, maxKeys);
    this.#perDevice = new KeyedBuckets(specs.perDevice, clock, maxKeys);
    this.#global = new KeyedBuckets(specs.global, clock, 1);
  }

  /**
   * The connection's token, taken before a message is parsed: every message costs one, well
   * formed or not, so a connection cannot buy unmetered work (a parse, a reject) with garbage.
   * Answers 0, or the seconds to wait.
   */
  takeConnection(conn: string): number {
    return this.#perConnection.take(conn);
  }

  /** The gateway's token, taken before the backend is asked or a challenge is issued. */
  takeGlobal(): number {
    return this.#global.take('');
  }

  /**
   * The device's token, taken only once the hello's signature has verified: a peer claiming
   * another device's id cannot spend that device's allowance.
   */
  takeDevice(dev: string): number {
    return this.#perDevice.take(dev);
  }

  connectionClosed(conn: string): void {
    this.#perConnection.delete(conn);
  }

  /** Replaces the three limits without dropping state (SIGHUP reload). */
  setSpecs(specs: { perConnection: BucketSpec; perDevice: BucketSpec; global: BucketSpec }): void {
    this.#perConnection.setSpec(specs.perConnection);
    this.#perDevice.setSpec(specs.perDevice);
    this.#global.setSpec(specs.global);
  }

  /** Number of keyed buckets held (for tests and metrics: stays bounded). */
  get tracked(): { connections: number; devices: number } {
    return { connections: this.#perConnection.size, devices: this.#perDevice.size };
  }
}
