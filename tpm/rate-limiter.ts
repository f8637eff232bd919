/**
 * The TPM signature rate limit. TPM-FAIL (CVE-2019-11090, CVE-2019-16863) recovered ECDSA
 * keys from the timing of a few thousand signatures; Gatehouse needs about one signature a day
 * (protocol-v1: the TPM only authorises the session key), so a low rate costs nothing and makes
 * collecting such a sample set take far longer than a key's useful life.
 */
import type { Clock } from '../common/clock.js';
import { TokenBucket, type BucketSpec } from '../common/token-bucket.js';
import { TpmError } from './errors.js';

/**
 * Default: 10 back to back, then one every 10 s (0.1 per second; config `tpm.signRatePerSec` has
 * the same default). What the gateway needs: one signature per session renewal (every 12 h by
 * default, every 150 s at the shortest session the config allows), a forced renewal at most every
 * 5 min, and failed renewals retried with exponential backoff (0.5 s doubling to 150–300 s): the
 * burst covers the quick early retries and a start, the sustained rate everything after with a
 * wide margin. 0.1 rather than 1/6: a number a config file and the docs can state exactly.
 */
export const DEFAULT_SIGN_RATE_LIMIT: BucketSpec = { burst: 10, perSecond: 0.1 };

/** A token bucket whose refusal is a `TpmError`. */
export class SignRateLimiter {
  readonly #bucket: TokenBucket;

  /** Throws GH_TPM_BAD_CONFIG unless burst >= 1 and perSecond > 0. */
  constructor(limit: BucketSpec, clock: Clock) {
    if (!(limit.burst >= 1) || !(limit.perSecond > 0)) {
      throw new TpmError('GH_TPM_BAD_CONFIG', `sign rate limit needs burst >= 1 and perSecond > 0, got ${JSON.stringify(limit)}`);
    }
    this.#bucket = new TokenBucket(limit, clock);
  }

  /** Take one token or throw GH_TPM_RATE_LIMITED saying when to retry. */
  take(): void {
    const wait = this.#bucket.take();
    if (wait === 0) return;
    const retryAfterMs = Math.ceil(wait * 1000);
    throw new TpmError('GH_TPM_RATE_LIMITED', `TPM signing rate limit reached; retry in ${retryAfterMs} ms`);
  }
}
