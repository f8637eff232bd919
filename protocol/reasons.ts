/** protocol-v1 "Reason codes": the only values key 13 (reason) may take. */
export const REASON_CODES = [
  'malformed',
  'unsupported-version',
  'stale-challenge',
  'unknown-device',
  'bad-signature',
  'revoked',
  'not-allowed-here',
  'rate-limited',
  'busy',
  'backend-unavailable',
  'internal',
] as const;

export type ReasonCode = (typeof REASON_CODES)[number];

const REASON_SET: ReadonlySet<string> = new Set(REASON_CODES);

export function isReasonCode(value: unknown): value is ReasonCode {
  return typeof value === 'string' && REASON_SET.has(value);
}

/**
 * protocol-v2 "New reason codes (for `bye`)": a `bye` may carry any v1 code (`revoked` and
 * `malformed` keep their meaning) or one of these four. A reject still carries only v1's codes.
 */
export const BYE_ONLY_REASON_CODES = ['expired', 'idle', 'replaced', 'shutdown'] as const;
export const BYE_REASON_CODES = [...REASON_CODES, ...BYE_ONLY_REASON_CODES] as const;

export type ByeReason = (typeof BYE_REASON_CODES)[number];

const BYE_REASON_SET: ReadonlySet<string> = new Set(BYE_REASON_CODES);

export function isByeReason(value: unknown): value is ByeReason {
  return typeof value === 'string' && BYE_REASON_SET.has(value);
}
