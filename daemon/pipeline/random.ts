/**
 * Randomness as an injected dependency, so nonces can be made deterministic in tests.
 */
import { randomNonce } from '../../protocol/index.js';

/** Returns `n` cryptographically random bytes. */
export type RandomSource = (n: number) => Uint8Array;

/** The CSPRNG (`randomNonce`: node:crypto, pooled), the default random source. */
export const systemRandom: RandomSource = (n) => randomNonce(n);
