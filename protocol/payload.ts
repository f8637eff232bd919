/**
 * protocol-v1 payload maps: the per-type field tables and the one validator every parser and
 * encoder goes through, so what we send and what we accept are checked by the same code.
 */
import type { CborMap, CborValue } from './cbor.js';
import { ed25519PublicKeyProblem } from './crypto.js';
import { ProtocolError, type ProtocolErrorCode } from './errors.js';
import { isValidId } from './ids.js';
import { isByeReason, isReasonCode } from './reasons.js';
import { PROTOCOL_VERSION, type MessageType, type Policy } from './types.js';

type FieldKind =
  | 'id'
  | 'nonce'
  | 'hash'
  | 'pubkey'
  | 'cose'
  | 'uint'
  | 'reason'
  | 'policy'
  // protocol-v2 "New payload keys"
  | 'x25519'
  | 'seq'
  | 'seqs'
  | 'topic'
  | 'body'
  | 'status'
  | 'bye-reason';

export interface FieldSpec {
  key: number;
  name: string;
  kind: FieldKind;
  optional?: boolean;
  /** `body`: the largest byte string accepted. */
  max?: number;
}

// protocol-v1 "Encoding" key table, then protocol-v2's keys 17–31.
export const F = {
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
  ge: { key: 17, name: 'ge', kind: 'x25519' },
  pe: { key: 18, name: 'pe', kind: 'x25519' },
  grant: { key: 19, name: 'grant', kind: 'cose' },
  upto: { key: 20, name: 'upto', kind: 'seq' },
  topic: { key: 21, name: 'topic', kind: 'topic' },
  body: { key: 22, name: 'body', kind: 'body' },
  cid: { key: 23, name: 'cid', kind: 'uint' },
  status: { key: 24, name: 'status', kind: 'status' },
  life: { key: 25, name: 'life', kind: 'uint' },
  cmd: { key: 26, name: 'cmd', kind: 'cose' },
  lease: { key: 27, name: 'lease', kind: 'cose' },
  denied: { key: 28, name: 'denied', kind: 'seqs' },
  busy: { key: 29, name: 'busy', kind: 'seqs' },
  mid: { key: 30, name: 'mid', kind: 'uint' },
  lost: { key: 31, name: 'lost', kind: 'seqs' },
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

/**
 * A family of payload maps checked by one table: protocol-v1's messages, protocol-v2's
 * messages, protocol-v2's frame plaintexts. `version` is the value key 2 must hold, or null for
 * maps that carry no version (frame plaintexts, where key 2 is an unknown key).
 */
export interface PayloadProfile {
  readonly name: string;
  readonly schemas: Readonly<Record<string, readonly FieldSpec[]>>;
  readonly version: number | null;
}

export const V1_PROFILE: PayloadProfile = { name: 'protocol-v1', schemas: SCHEMAS, version: PROTOCOL_VERSION };

/** protocol-v2: the largest sequence number (`piv` is at most 5 bytes). */
export const MAX_SEQ = 2 ** 40 - 1;
/** protocol-v2: a topic name is 1–128 bytes of UTF-8. */
export const MAX_TOPIC_BYTES = 128;

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

const utf8Encoder = new TextEncoder();

/** Why `topic` is not an acceptable protocol-v2 topic name (key 21), or undefined. */
export function topicNameProblem(topic: unknown): string | undefined {
  if (typeof topic !== 'string') return 'is not a text string';
  const n = utf8Encoder.encode(topic).length;
  if (n === 0 || n > MAX_TOPIC_BYTES) return `must be 1–${MAX_TOPIC_BYTES} bytes of UTF-8, got ${n}`;
  // protocol-v2 key 21: a topic name, so no wildcards [MQTT-4.7.1-1], and no U+0000 [MQTT-4.7.3-2].
  if (topic.includes('\u0000')) return 'contains U+0000';
  if (topic.includes('+') || topic.includes('#')) return "contains a wildcard ('+' or '#')";
  return undefined;
}

function isSeq(v: CborValue): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_SEQ;
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
    case 'x25519':
      return bytesOf(PUBKEY_BYTES);
    case 'seq':
      if (!isSeq(value)) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a sequence number (0 to 2^40 - 1)`);
      return value;
    case 'seqs': {
      if (!Array.isArray(value)) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be an array of sequence numbers`);
      if (value.length === 0) throw malformed('GH_MSG_BAD_SEQ_LIST', `${where} must not be empty (leave it out instead)`);
      let prev = -1;
      for (const v of value) {
        if (!isSeq(v)) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be an array of sequence numbers (0 to 2^40 - 1)`);
        if (v <= prev) throw malformed('GH_MSG_BAD_SEQ_LIST', `${where} must be sorted and without repeats`);
        prev = v;
      }
      return value.slice();
    }
    case 'topic': {
      const problem = topicNameProblem(value);
      if (problem !== undefined) throw malformed(typeof value === 'string' ? 'GH_MSG_BAD_TOPIC' : 'GH_MSG_FIELD_TYPE', `${where} ${problem}`);
      return value;
    }
    case 'body':
      if (!(value instanceof Uint8Array)) throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a byte string`);
      if (spec.max !== undefined && value.length > spec.max) throw malformed('GH_MSG_BODY_TOO_LARGE', `${where} is ${value.length} bytes, at most ${spec.max}`);
      return value;
    case 'status':
      if (value !== 'done' && value !== 'failed' && value !== 'refused') throw malformed('GH_MSG_BAD_STATUS', `${where} must be "done", "failed" or "refused"`);
      return value;
    case 'bye-reason':
      if (typeof value !== 'string') throw malformed('GH_MSG_FIELD_TYPE', `${where} must be a text string`);
      if (!isByeReason(value)) throw malformed('GH_MSG_BAD_REASON', `${where}: unknown reason code ${JSON.stringify(value)}`);
      return value;
  }
}

/** The `type` field of a payload map, or a ProtocolError when it has none or an unknown one. */
export function payloadType(map: CborValue): MessageType {
  return payloadTypeIn(map, V1_PROFILE) as MessageType;
}

/** The `type` field of a payload map, checked against `profile`'s types. */
export function payloadTypeIn(map: CborValue, profile: PayloadProfile): string {
  if (!(map instanceof Map)) throw malformed('GH_MSG_NOT_MAP', 'payload must be a CBOR map');
  const type = map.get(KEY_TYPE);
  if (type === undefined) throw malformed('GH_MSG_MISSING_FIELD', 'missing field type (key 1)');
  if (typeof type !== 'string') throw malformed('GH_MSG_FIELD_TYPE', 'field type (key 1) must be a text string');
  if (!Object.hasOwn(profile.schemas, type)) throw malformed('GH_MSG_UNKNOWN_TYPE', `unknown ${profile.name} type ${JSON.stringify(type)}`);
  return type;
}

/**
 * Check a payload map against the `expected` type's table and return the typed object. Order
 * (documented in docs/protocol.md): map, type, version (a version other than 1 is
 * `unsupported-version` before anything else is looked at), unknown keys, each field.
 */
export function checkPayload<T>(map: CborValue, expected: MessageType): T {
  return checkPayloadIn<T>(map, expected, V1_PROFILE);
}

/** {@link checkPayload} for any profile (protocol-v2 messages, frame plaintexts). */
export function checkPayloadIn<T>(map: CborValue, expected: string, profile: PayloadProfile): T {
  const type = payloadTypeIn(map, profile);
  if (type !== expected) throw malformed('GH_MSG_WRONG_TYPE', `expected a ${expected} message, got ${type}`);
  const m = map as CborMap;
  if (profile.version !== null) {
    const version = m.get(KEY_VERSION);
    if (version === undefined) throw malformed('GH_MSG_MISSING_FIELD', 'missing field version (key 2)');
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
      throw malformed('GH_MSG_FIELD_TYPE', 'field version (key 2) must be an unsigned integer');
    }
    if (version !== profile.version) {
      throw new ProtocolError('GH_MSG_UNSUPPORTED_VERSION', 'unsupported-version', `protocol version ${version} is not supported here (only ${profile.version})`);
    }
  }
  const schema = profile.schemas[expected] ?? [];
  for (const key of m.keys()) {
    if (key === KEY_TYPE || (key === KEY_VERSION && profile.version !== null)) continue;
    if (!schema.some((f) => f.key === key)) {
      throw malformed('GH_MSG_UNKNOWN_FIELD', `unknown key ${JSON.stringify(key)} in a ${expected} message`);
    }
  }
  const out: Record<string, unknown> = profile.version === null ? { type: expected } : { type: expected, version: profile.version };
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
  return buildPayloadIn(message, expected, V1_PROFILE);
}

/** {@link buildPayload} for any profile. */
export function buildPayloadIn(message: { type: string } & object, expected: string, profile: PayloadProfile): CborMap {
  if (message.type !== expected) throw malformed('GH_MSG_WRONG_TYPE', `expected a ${expected} message, got ${String(message.type)}`);
  const fields = message as unknown as Record<string, unknown>;
  const map: CborMap = new Map<number, CborValue>([[KEY_TYPE, expected]]);
  if (profile.version !== null) map.set(KEY_VERSION, fields.version as CborValue);
  const schema = profile.schemas[expected] ?? [];
  for (const spec of schema) {
    const value = fields[spec.name];
    if (value === undefined) continue;
    map.set(spec.key, toCbor(spec, value));
  }
  for (const name of Object.keys(fields)) {
    if (name !== 'type' && (name !== 'version' || profile.version === null) && fields[name] !== undefined && !schema.some((f) => f.name === name)) {
      throw malformed('GH_MSG_UNKNOWN_FIELD', `unknown field ${name} in a ${expected} message`);
    }
  }
  checkPayloadIn(map, expected, profile);
  return map;
}
