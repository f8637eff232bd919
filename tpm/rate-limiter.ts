/**
 * Token bucket for TPM signatures. TPM-FAIL (CVE-2019-11090, CVE-2019-16863) recovered ECDSA
 * keys from the timing of a few thousand signatures; Gatehouse needs about one signature a day
 * (protocol-v1: the TPM only authorises the session key), so a low rate costs nothing and makes
 * collecting such a sample set take far longer than a key's useful life.
 */
import { TpmError } from './errors.js';

export interface RateLimit {
  /** Bucket size: signatures allowed back to back. */
  burst: number;
  /** Refill rate, tokens per second. */
  perSecond: number;
}

/**
 * Default: 10 back to back, then one every 10 s (0.1 per second; config `tpm.signRatePerSec` has
 * the same default). What the gateway needs: one signature per session renewal (every 12 h by
 * default, every 150 s at the shortest session the config allows), a forced renewal at most every
 * 5 min, and failed renewals retried with exponential backoff (0.5 s doubling to 150–300 s): the
 * burst covers the quick early retries and a start, the sustained rate everything after with a
 * wide margin. 0.1 rather than 1/6: a number a config file and the docs can state exactly.
 */
export const DEFAULT_SIGN_RATE_LIMIT: RateLimit = { burst: 10, perSecond: 0.1 };

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {
    if (!(limit.burst >= 1) || !(limit.perSecond > 0)) {
      throw new TpmError('GH_TPM_BAD_CONFIG', `sign rate limit needs burst >= 1 and perSecond > 0, got ${JSON.stringify(limit)}`);
    }
    this.tokens = limit.burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    const elapsed = Math.max(0, t - this.last) / 1000;
    this.last = t;
    this.tokens = Math.min(this.limit.burst, this.tokens + elapsed * this.limit.perSecond);
  }

  /** Take one token or throw GH_TPM_RATE_LIMITED saying when to retry. */
  take(): void {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return;
    }
    const retryAfterMs = Math.ceil(((1 - this.tokens) / this.limit.perSecond) * 1000);
    throw new TpmError('GH_TPM_RATE_LIMITED', `TPM signing rate limit reached; retry in ${retryAfterMs} ms`);
  }
}
