/**
 * protocol-v1 payload maps: the per-type field tables and the one validator every parser and
 * encoder goes through, so what we send and what we accept are checked by the same code.
 */
import type { CborMap, CborValue } from './cbor.js';
import { ed25519PublicKeyProblem } from './crypto.js';
import { ProtocolError, type ProtocolErrorCode } from './errors.js';
import { isValidId } from './ids.js';
import { isReasonCode } from './reasons.js';
import { PROTOCOL_VERSION, type MessageType, type Policy } from './types.js';

type FieldKind = 'id' | 'nonce' | 'hash' | 'pubkey' | 'cose' | 'uint' | 'reason' | 'policy';

interface FieldSpec {
  key: number;
  name: string;
  kind: FieldKind;
  optional?: boolean;
}

// protocol-v1 "Encoding" key table.
const F = {
  dev: { key: 3, name: 'dev', kind: 'id' },
  pn: { key: 4, name: 'pn', kind: 'nonce' },
  gn: { key: 5, name: 'gn', kind: 'nonce' },
  gw: { key: 6, name: 'gw', kind: 'id' },
  hh: { key: 7, name: 'hh', kind: 'hash' },
  cred: { key: 8, name: 'cred', kind: 'cose' },
  spk: { key: 9, name: 'spk', kind: 'pubkey' },
  tpk: { key: 10, name: 'tpk', kind: 'hash' },
  iat: { key: 11, name: 'iat', kind: 'uint' },
  exp: { key: 12, name: 'exp', kind: 'uint' },
  reason: { key: 13, name: 'reason', kind: 'reason' },
  policy: { key: 14, name: 'policy', kind: 'policy' },
  dpk: { key: 15, name: 'dpk', kind: 'pubkey' },
  retry: { key: 16, name: 'retry', kind: 'uint' },
} as const satisfies Record<string, FieldSpec>;

export const KEY_TYPE = 1;
export const KEY_VERSION = 2;

/** Fields of each message type besides type (1) and version (2), in key order. */
export const SCHEMAS: Readonly<Record<MessageType, readonly FieldSpec[]>> = {
  'challenge-request': [F.dev],
  challenge: [F.dev, F.gn, F.gw],
  hello: [F.dev, F.pn, F.gn],
  welcome: [F.dev, F.gw, F.hh, F.cred],
  reject: [F.dev, { ...F.hh, optional: true }, F.reason, { ...F.retry, optional: true }],
  'gw-cred': [F.gw, F.spk, F.tpk, F.iat, F.exp],
  lease: [F.dev, F.gw, F.policy, F.dpk, F.iat, F.exp],
};

export const MESSAGE_TYPES = Object.keys(SCHEMAS) as MessageType[];

/** Nonces (pn, gn) are 16 bytes; hashes (hh, tpk) SHA-256; keys (spk, dpk) raw Ed25519. */
export const NONCE_BYTES = 16;
export const HASH_BYTES = 32;
export const PUBKEY_BYTES = 32;
/** Limits on a policy's topic filters (spec silent; see docs/protocol.md). */
export const MAX_TOPIC_FILTER_CHARS = 256;

function malformed(code: ProtocolErrorCode, message: string): ProtocolError {
  return new ProtocolError(code, 'malformed', message);
}

/** Why `filter` is not an acceptable MQTT topic filter, or undefined (MQTT 3.1.1 §4.7). */
export function topicFilterProblem(filter: unknown): string | undefined {
  if (typeof filter !== 'string') return 'is not a text string';
  if (filter.length === 0 || filter.length > MAX_TOPIC_FILTER_CHARS) return `must be 1–${MAX_TOPIC_FILTER_CHARS} characters`;
  if (filter.includes('\u0000')) return 'contains U+0000';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string;
    // [MQTT-4.7.1-2] '#' alone and last; [MQTT-4.7.1-3] '+' occupies a whole level.
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return "uses '#' other than as the whole last level";
    if (level.includes('+') && level !== '+') return "uses '+' other than as a whole level";
  }
  return undefined;
}

function checkPolicy(value: CborValue): Policy {
  if (!(value instanceof Map)) throw malformed('GH_MSG_BAD_POLICY', 'policy must be a map {"pub": [...], "sub": [...]}');
  for (const k of value.keys()) {
    if (k !== 'pub' && k !== 'sub') throw malformed('GH_MSG_BAD_POLICY', `policy has unknown key ${JSON.stringify(k)}`);
  }
  const out: Policy = { pub: [], sub: [] };
  for (const name of ['pub', 'sub'] as const) {
    const list = value.get(name);
    if (list === undefined) throw malformed('GH_MSG_BAD_POLICY', `policy lacks "${name}"`);
    if (!Array.isArray(list)) throw malformed('GH_MSG_BAD_POLICY', `policy "${name}" must be an array of text strings`);
    for (const filter of list) {
      const problem = topicFilterProblem(filter);
      if (problem !== undefined) throw malformed('GH_MSG_BAD_POLICY', `policy "${name}" topic filter ${problem}`);
      out[name].push(filter as string);
    }
  }
  return out;
}

function checkField(spec: FieldSpec, value: CborValue): unknown {
  const where = `field ${spec.name} (key ${spec.key})`;
  const bytesOf = (n: number): Uint8Array => {
    if (!(value instanceof Uint8Array)) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a byte string`);
    if (value.length !== n) throw malformed('GH_MSG_FIELD_LENGTH', `${where} must be ${n} bytes, got ${value.length}`);
    return value;
  };
  switch (spec.kind) {
    case 'id':
      if (typeof value !== 'string') throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a text string`);
      if (!isValidId(value)) throw malformed('GH_MSG_BAD_ID', `${where} must be 1–64 characters of [A-Za-z0-9._:-]`);
      return value;
    case 'nonce':
      return bytesOf(NONCE_BYTES);
    case 'hash':
      return bytesOf(HASH_BYTES);
    case 'pubkey': {
      const pk = bytesOf(PUBKEY_BYTES);
      const problem = ed25519PublicKeyProblem(pk);
      if (problem !== undefined) throw malformed('GH_MSG_BAD_KEY', `${where}: ${problem}`);
      return pk;
    }
    case 'cose':
      if (!(value instanceof Uint8Array) || value.length === 0) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a non-empty byte string`);
      return value;
    case 'uint':
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be an unsigned integer`);
      return value;
    case 'reason':
      if (typeof value !== 'string') throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a text string`);
      if (!isReasonCode(value)) throw malformed('GH_MSG_BAD_REASON', `${where}: unknown reason code ${JSON.stringify(value)}`);
      return value;
    case 'policy':
      return checkPolicy(value);
  }
}

/** The `type` field of a payload map, or a ProtocolError when it has none or an unknown one. */
export function payloadType(map: CborValue): MessageType {
  if (!(map instanceof Map)) throw malformed('GH_MSG_NOT_MAP', 'payload must be a CBOR map');
  const type = map.get(KEY_TYPE);
  if (type === undefined) throw malformed('GH_MSG_MISSING_FIELD', 'missing field type (key 1)');
  if (typeof type !== 'string') throw malformed('GH_MSG_FIELD_TYPE', 'field type (key 1) must be a text string');
  if (!(MESSAGE_TYPES as string[]).includes(type)) throw malformed('GH_MSG_UNKNOWN_TYPE', `unknown message type ${JSON.stringify(type)}`);
  return type as MessageType;
}

/**
 * Check a payload map against the `expected` type's table and return the typed object. Order
 * (documented in docs/protocol.md): map, type, version (a version other than 1 is
 * `unsupported-version` before anything else is looked at), unknown keys, each field.
 */
export function checkPayload<T>(map: CborValue, expected: MessageType): T {
  const type = payloadType(map);
  if (type !== expected) throw malformed('GH_MSG_WRONG_TYPE', `expected a ${expected} message, got ${type}`);
  const m = map as CborMap;
  const version = m.get(KEY_VERSION);
  if (version === undefined) throw malformed('GH_MSG_MISSING_FIELD', 'missing field version (key 2)');
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw malformed('GH_MSG_FIELD_TYPE', 'field version (key 2) must be an unsigned integer');
  }
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError('GH_MSG_UNSUPPORTED_VERSION', 'unsupported-version', `protocol version ${version} is not supported (only 1)`);
  }
  const schema = SCHEMAS[expected];
  for (const key of m.keys()) {
    if (key === KEY_TYPE || key === KEY_VERSION) continue;
    if (!schema.some((f) => f.key === key)) {
      throw malformed('GH_MSG_UNKNOWN_FIELD', `unknown key ${JSON.stringify(key)} in a ${expected} message`);
    }
  }
  const out: Record<string, unknown> = { type: expected, version: PROTOCOL_VERSION };
  for (const spec of schema) {
    const value = m.get(spec.key);
    if (value === undefined) {
      if (spec.optional === true) continue;
      throw malformed('GH_MSG_MISSING_FIELD', `missing field ${spec.name} (key ${spec.key})`);
    }
    out[spec.name] = checkField(spec, value);
  }
  if (typeof out.iat === 'number' && typeof out.exp === 'number' && out.exp <= out.iat) {
    throw malformed('GH_MSG_BAD_VALIDITY', 'exp must be later than iat');
  }
  return out as T;
}

function toCbor(spec: FieldSpec, value: unknown): CborValue {
  if (spec.kind === 'policy') {
    const p = value as Policy;
    if (p === null || typeof p !== 'object') return value as CborValue;
    return new Map<string, CborValue>([
      ['pub', p.pub],
      ['sub', p.sub],
    ]);
  }
  return value as CborValue;
}

/**
 * Build the payload map of a typed message, validated by {@link checkPayload} before it is
 * returned, so encoders can never emit what parsers would refuse.
 */
export function buildPayload(message: { type: MessageType } & object, expected: MessageType): CborMap {
  if (message.type !== expected) throw malformed('GH_MSG_WRONG_TYPE', `expected a ${expected} message, got ${String(message.type)}`);
  const fields = message as unknown as Record<string, unknown>;
  const map: CborMap = new Map<number, CborValue>([
    [KEY_TYPE, expected],
    [KEY_VERSION, fields.version as CborValue],
  ]);
  for (const spec of SCHEMAS[expected]) {
    const value = fields[spec.name];
    if (value === undefined) continue;
    map.set(spec.key, toCbor(spec, value));
  }
  for (const name of Object.keys(fields)) {
    if (name !== 'type' && name !== 'version' && fields[name] !== undefined && !SCHEMAS[expected].some((f) => f.name === name)) {
      throw malformed('GH_MSG_UNKNOWN_FIELD', `unknown field ${name} in a ${expected} message`);
    }
  }
  checkPayload(map, expected);
  return map;
}
