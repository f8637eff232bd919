/**
 * Time and randomness as injected dependencies, so expiry and rate limits are tested without
 * waiting and nonces can be made deterministic in tests.
 */
import { randomNonce } from '../../protocol/index.js';

/** A source of wall-clock time in unix milliseconds. */
export interface Clock {
  now(): number;
}

/** The system clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A monotonic clock in milliseconds: elapsed time that wall-clock steps do not move. */
export const monotonicClock: Clock = { now: () => performance.now() };

/** Returns `n` cryptographically random bytes. */
export type RandomSource = (n: number) => Uint8Array;

/** The CSPRNG (`randomNonce`: node:crypto, pooled), the default random source. */
export const systemRandom: RandomSource = (n) => randomNonce(n);
