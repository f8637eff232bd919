/**
 * Redaction: secrets never reach logs (secrets never reach logs: CONTRIBUTING.md §8).
 * Any field whose name looks like a key, secret, nonce, credential or signature is masked,
 * at any depth; raw bytes are never printed, only their length.
 */

/** Field names masked wherever they occur (case-insensitive). */
export const REDACTED_NAME =
  /(?:key|secret|nonce|credential|cred|^gn$|^pn$|signature|^sig$|password|passphrase|token|seed|authorization|cookie)/i;

/** Fields that match the pattern above but only ever hold an identifier or a path, never the secret. */
const ALLOWED_NAMES: ReadonlySet<string> = new Set(['keyFile', 'caFile', 'certFile', 'kid', 'backendKid', 'keyId', 'keyStore']);

export const REDACTED = '[redacted]';
const MAX_DEPTH = 6;

function redactValue(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value instanceof Uint8Array) return `[${value.length} bytes]`;
  if (value instanceof Error) return { message: value.message, ...('code' in value ? { code: (value as { code: unknown }).code } : {}) };
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_DEPTH) return '[nested]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretName(k) ? REDACTED : redactValue(v, depth + 1, seen);
  }
  return out;
}

/** True when a field of this name must never be logged. */
export function isSecretName(name: string): boolean {
  return !ALLOWED_NAMES.has(name) && REDACTED_NAME.test(name);
}

/**
 * Redact a log record's fields in place of a copy. Top-level winston fields (`level`,
 * `message`) pass through; every other field is masked by name or made safe by type.
 */
export function redactFields(fields: Record<string, unknown>): Record<string, unknown> {
  const seen = new WeakSet<object>();
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (k === 'level' || k === 'message') out[k] = v;
    else out[k] = isSecretName(k) ? REDACTED : redactValue(v, 1, seen);
  }
  return out;
}
