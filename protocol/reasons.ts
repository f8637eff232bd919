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
