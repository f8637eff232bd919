/**
 * protocol-v2 messages: challenge-request, challenge (with `ge`), hello (with `gw`, `ge`, `pe`,
 * always tagged), grant, welcome (online: grant; offline: cred + lease), reject (2:2) and
 * command. Parsers check size, CBOR, the strict COSE profile, alg, type, version and every
 * field; they do NOT verify signatures.
 */
import { CborError, decodeCbor, encodeCbor, type CborMap, type CborValue } from '../cbor.js';
import { decodeSign1, signSign1, type DecodedSign1 } from '../cose.js';
import { ProtocolError, type ProtocolErrorCode } from '../errors.js';
import { buildPayloadIn, checkPayloadIn, F, KEY_TYPE, payloadTypeIn, SCHEMAS, type FieldSpec, type PayloadProfile } from '../payload.js';
import { COSE_ALG_EDDSA, type Signed, type Signer } from '../types.js';
import { MAX_FRAME_BYTES } from './frame-payloads.js';
import type { ChallengeRequestV2, ChallengeV2, Command, Grant, HelloV2, MessageTypeV2, RejectV2, WelcomeV2 } from './types.js';

/** protocol-v2 "Sizes": v1's bound for the challenge-request, challenge, hello, reject, grant. */
export const MAX_MESSAGE_BYTES_V2 = 1024;
/** A v2 welcome may be up to 1,280 bytes. */
export const MAX_WELCOME_BYTES = 1280;
/** A command is at most 1,200 bytes, its body at most 800. */
export const MAX_COMMAND_BYTES = 1200;
export const MAX_COMMAND_BODY_BYTES = 800;

const opt = (f: FieldSpec): FieldSpec => ({ ...f, optional: true });

const V2_SCHEMAS: Readonly<Record<MessageTypeV2, readonly FieldSpec[]>> = {
  'challenge-request': [F.dev],
  challenge: [F.dev, F.gn, F.gw, F.ge],
  hello: [F.dev, F.pn, F.gn, F.gw, F.ge, F.pe],
  // Exactly one of {19} or {8, 27}: checked after the table (welcomeShape).
  welcome: [F.dev, F.gw, F.hh, opt(F.cred), opt(F.grant), F.life, opt(F.lease)],
  reject: SCHEMAS.reject,
  grant: [F.dev, F.gw, F.hh, F.spk, F.iat, F.life],
  command: [F.dev, F.hh, F.iat, F.exp, F.topic, { ...F.body, max: MAX_COMMAND_BODY_BYTES }, F.cid],
};

export const V2_PROFILE: PayloadProfile = { name: 'protocol-v2', schemas: V2_SCHEMAS, version: 2 };

const SIZE: Readonly<Record<MessageTypeV2, number>> = {
  'challenge-request': MAX_MESSAGE_BYTES_V2,
  challenge: MAX_MESSAGE_BYTES_V2,
  hello: MAX_MESSAGE_BYTES_V2,
  welcome: MAX_WELCOME_BYTES,
  reject: MAX_MESSAGE_BYTES_V2,
  grant: MAX_MESSAGE_BYTES_V2,
  command: MAX_COMMAND_BYTES,
};

function malformed(code: ProtocolErrorCode, message: string): ProtocolError {
  return new ProtocolError(code, 'malformed', message);
}

function checkSize(bytes: Uint8Array, max: number, what: string): void {
  if (!(bytes instanceof Uint8Array)) throw malformed('GH_MSG_INPUT', 'message must be a Uint8Array');
  if (bytes.length > max) throw malformed('GH_MSG_TOO_LARGE', `${what} of ${bytes.length} bytes exceeds ${max}`);
}

function welcomeShape(w: WelcomeV2): WelcomeV2 {
  const m = w as unknown as Record<string, unknown>;
  const online = m.grant !== undefined;
  const offline = m.cred !== undefined || m.lease !== undefined;
  if (online === offline || (offline && (m.cred === undefined || m.lease === undefined))) {
    throw malformed('GH_MSG_WELCOME_SHAPE', 'a v2 welcome carries exactly one of {19: grant} or {8: cred, 27: lease}');
  }
  return w;
}

/** Check a v2 payload map as `type`. */
export function checkPayloadV2<T>(map: CborValue, type: MessageTypeV2): T {
  const p = checkPayloadIn<T>(map, type, V2_PROFILE);
  if (type === 'welcome') welcomeShape(p as WelcomeV2);
  return p;
}

function buildV2(m: { type: MessageTypeV2 } & object, type: MessageTypeV2): CborMap {
  const map = buildPayloadIn(m, type, V2_PROFILE);
  if (type === 'welcome') welcomeShape(m as WelcomeV2);
  return map;
}

function decodePayloadBytes(payload: Uint8Array, max: number): CborValue {
  try {
    return decodeCbor(payload, { allowTopLevelTag: false, maxBytes: max });
  } catch (cause) {
    if (cause instanceof CborError) throw new CborError(cause.code, `payload: ${cause.message}`, { cause });
    throw cause;
  }
}

function requireKid(kid: string, expected: string, what: string): void {
  if (kid !== expected) throw malformed('GH_MSG_KID_MISMATCH', `${what}: kid ${JSON.stringify(kid)} does not match ${JSON.stringify(expected)}`);
}

/** A decoded v2 COSE_Sign1: always tagged (protocol-v2: v2 COSE objects are always tagged). */
function decodeTagged(bytes: Uint8Array, max: number, type: MessageTypeV2): DecodedSign1 {
  checkSize(bytes, max, `a v2 ${type}`);
  const d = decodeSign1(bytes, { maxBytes: max });
  if (!d.tagged) throw malformed('GH_MSG_NOT_TAGGED', `a v2 ${type} must carry tag 18`);
  return d;
}

function checkSignedV2<T>(d: DecodedSign1, map: CborValue, type: MessageTypeV2): Signed<T> {
  if (d.alg !== COSE_ALG_EDDSA) throw malformed('GH_MSG_WRONG_ALG', `a ${type} must be signed with EdDSA (-8), not alg ${d.alg}`);
  const payload = checkPayloadV2<T>(map, type);
  return { bytes: d.bytes, alg: d.alg, kid: d.kid, payload, toBeSigned: d.toBeSigned, signature: d.signature };
}

function parseSignedV2<T>(bytes: Uint8Array, type: MessageTypeV2): Signed<T> {
  const d = decodeTagged(bytes, SIZE[type], type);
  return checkSignedV2<T>(d, decodePayloadBytes(d.payload, SIZE[type]), type);
}

async function signV2(m: { type: MessageTypeV2 } & object, type: MessageTypeV2, signer: Signer): Promise<Uint8Array> {
  const bytes = await signSign1(encodeCbor(buildV2(m, type)), signer);
  checkSize(bytes, SIZE[type], `a v2 ${type}`);
  return bytes;
}

function decodeUnsignedV2<T>(bytes: Uint8Array, type: MessageTypeV2): T {
  checkSize(bytes, SIZE[type], `a v2 ${type}`);
  return checkPayloadV2<T>(decodeCbor(bytes, { allowTopLevelTag: false }), type);
}

function encodeUnsignedV2(m: { type: MessageTypeV2 } & object, type: MessageTypeV2): Uint8Array {
  const bytes = encodeCbor(buildV2(m, type));
  checkSize(bytes, SIZE[type], `a v2 ${type}`);
  return bytes;
}

/** `{1:"challenge-request", 2:2, 3:dev}` (unsigned; MQTT only). */
export function encodeChallengeRequestV2(m: ChallengeRequestV2): Uint8Array {
  return encodeUnsignedV2(m, 'challenge-request');
}
export function decodeChallengeRequestV2(bytes: Uint8Array): ChallengeRequestV2 {
  return decodeUnsignedV2<ChallengeRequestV2>(bytes, 'challenge-request');
}

/** `{1:"challenge", 2:2, 3:dev, 5:gn, 6:gw, 17:ge}` (unsigned). */
export function encodeChallengeV2(m: ChallengeV2): Uint8Array {
  return encodeUnsignedV2(m, 'challenge');
}
export function decodeChallengeV2(bytes: Uint8Array): ChallengeV2 {
  return decodeUnsignedV2<ChallengeV2>(bytes, 'challenge');
}

/** Sign a message whose kid must be one of its own fields (`kidOf`). */
async function signKidBound<T extends { type: MessageTypeV2 }>(m: T, type: MessageTypeV2, signer: Signer, kidOf: (m: T) => string): Promise<Uint8Array> {
  requireKid(signer.kid, kidOf(m), type);
  return signV2(m, type, signer);
}
/** Parse a signed message whose kid must be one of its own fields (`kidOf`). */
function parseKidBound<T>(bytes: Uint8Array, type: MessageTypeV2, kidOf: (m: T) => string): Signed<T> {
  const s = parseSignedV2<T>(bytes, type);
  requireKid(s.kid, kidOf(s.payload), type);
  return s;
}

/** `COSE_Sign1[sk_P, kid=dev]({1:"hello", 2:2, 3:dev, 4:pn, 5:gn, 6:gw, 17:ge, 18:pe})`, tagged. */
export async function signHelloV2(m: HelloV2, signer: Signer): Promise<Uint8Array> {
  return signKidBound(m, 'hello', signer, (h) => h.dev);
}
/** Parse a v2 hello (tagged, kid = dev). Signature not verified. */
export function parseHelloV2(bytes: Uint8Array): Signed<HelloV2> {
  return parseKidBound<HelloV2>(bytes, 'hello', (h) => h.dev);
}

/** `COSE_Sign1[sk_S, kid=kid_S]({1:"grant", 2:2, 3:dev, 6:gw, 7:hh, 9:spk, 11:iat, 25:life})`. */
export async function signGrant(m: Grant, signer: Signer): Promise<Uint8Array> {
  return signV2(m, 'grant', signer);
}
export function parseGrant(bytes: Uint8Array): Signed<Grant> {
  return parseSignedV2<Grant>(bytes, 'grant');
}

/** A v2 welcome, online (19) or offline (8 + 27), signed with the session key (kid = gw). */
export async function signWelcomeV2(m: WelcomeV2, signer: Signer): Promise<Uint8Array> {
  return signKidBound(m, 'welcome', signer, (w) => w.gw);
}
/** Parse a v2 welcome (tagged, kid = gw, ≤ 1,280 bytes). Nothing inside it is verified. */
export function parseWelcomeV2(bytes: Uint8Array): Signed<WelcomeV2> {
  return parseKidBound<WelcomeV2>(bytes, 'welcome', (w) => w.gw);
}

/** A v2 reject (2:2), signed with the session key. */
export async function signRejectV2(m: RejectV2, signer: Signer): Promise<Uint8Array> {
  return signV2(m, 'reject', signer);
}
/** An unsigned v2 reject: only while the gateway has no session key (as v1). */
export function encodeUnsignedRejectV2(m: RejectV2): Uint8Array {
  return encodeUnsignedV2(m, 'reject');
}
export interface ParsedRejectV2 {
  message: RejectV2;
  signed: Signed<RejectV2> | null;
}
/** Parse a signed (tagged COSE_Sign1) or unsigned (bare map) v2 reject. Advisory either way. */
export function parseRejectV2(bytes: Uint8Array): ParsedRejectV2 {
  checkSize(bytes, MAX_MESSAGE_BYTES_V2, 'a v2 reject');
  if (isMap(bytes)) return { message: decodeUnsignedV2<RejectV2>(bytes, 'reject'), signed: null };
  const signed = parseSignedV2<RejectV2>(bytes, 'reject');
  return { message: signed.payload, signed };
}

/** `COSE_Sign1[sk_S, kid=kid_S]({1:"command", 2:2, 3:dev, 7:hh, 23:cid, 21:topic, 22:body, 11:iat, 12:exp})`. */
export async function signCommand(m: Command, signer: Signer): Promise<Uint8Array> {
  return signV2(m, 'command', signer);
}
export function parseCommand(bytes: Uint8Array): Signed<Command> {
  return parseSignedV2<Command>(bytes, 'command');
}

function isMap(bytes: Uint8Array): boolean {
  return bytes.length > 0 && (bytes[0] as number) >> 5 === 5;
}

/** What a v2 peripheral sends on its up topic or characteristic. */
export type UpMessageV2 =
  | { type: 'challenge-request'; message: ChallengeRequestV2 }
  | { type: 'hello'; signed: Signed<HelloV2> }
  /** A frame: open it with the session's receiver (envelope not yet checked). */
  | { type: 'frame'; bytes: Uint8Array };

/** What a v2 peripheral receives. */
export type DownMessageV2 =
  | { type: 'challenge'; message: ChallengeV2 }
  | { type: 'welcome'; signed: Signed<WelcomeV2> }
  | { type: 'reject'; message: RejectV2; signed: Signed<RejectV2> | null }
  | { type: 'frame'; bytes: Uint8Array };

/** protocol-v2 "MQTT transport": the first byte tells them apart: a map, tag 18, tag 16. */
function firstByte(bytes: Uint8Array, direction: string): 'map' | 'sign1' | 'frame' {
  if (!(bytes instanceof Uint8Array)) throw malformed('GH_MSG_INPUT', 'message must be a Uint8Array');
  checkSize(bytes, MAX_FRAME_BYTES, `a v2 ${direction} message`);
  if (isMap(bytes)) return 'map';
  if (bytes[0] === 0xd2) return 'sign1';
  if (bytes[0] === 0xd0) return 'frame';
  // Let the CBOR decoder name the precise defect when there is one.
  decodeCbor(bytes, { maxBytes: MAX_FRAME_BYTES });
  throw malformed('GH_MSG_NOT_A_MESSAGE', `not a v2 ${direction} message (expected a map, tag 18 or tag 16)`);
}

/** Decode a message travelling peripheral → gateway on v2 (structure only). */
export function decodeUpMessageV2(bytes: Uint8Array): UpMessageV2 {
  switch (firstByte(bytes, 'peripheral-to-gateway')) {
    case 'map': {
      checkSize(bytes, MAX_MESSAGE_BYTES_V2, 'a v2 challenge-request');
      const map = decodeCbor(bytes, { allowTopLevelTag: false });
      if (payloadTypeIn(map, V2_PROFILE) === 'hello') throw malformed('GH_MSG_NOT_SIGNED', 'a hello must be a COSE_Sign1');
      return { type: 'challenge-request', message: checkPayloadV2<ChallengeRequestV2>(map, 'challenge-request') };
    }
    case 'sign1':
      return { type: 'hello', signed: parseHelloV2(bytes) };
    case 'frame':
      return { type: 'frame', bytes: Uint8Array.from(bytes) };
  }
}

/** Decode a message travelling gateway → peripheral on v2 (structure only). */
export function decodeDownMessageV2(bytes: Uint8Array): DownMessageV2 {
  switch (firstByte(bytes, 'gateway-to-peripheral')) {
    case 'map': {
      checkSize(bytes, MAX_MESSAGE_BYTES_V2, 'a v2 challenge or reject');
      const map = decodeCbor(bytes, { allowTopLevelTag: false });
      const t = payloadTypeIn(map, V2_PROFILE);
      if (t === 'reject') return { type: 'reject', message: checkPayloadV2<RejectV2>(map, 'reject'), signed: null };
      if (t === 'welcome') throw malformed('GH_MSG_NOT_SIGNED', 'a welcome must be a COSE_Sign1');
      return { type: 'challenge', message: checkPayloadV2<ChallengeV2>(map, 'challenge') };
    }
    case 'sign1': {
      const d = decodeTagged(bytes, MAX_WELCOME_BYTES, 'welcome');
      const map = decodePayloadBytes(d.payload, MAX_WELCOME_BYTES);
      if (map instanceof Map && map.get(KEY_TYPE) === 'reject') {
        checkSize(bytes, MAX_MESSAGE_BYTES_V2, 'a v2 reject');
        const signed = checkSignedV2<RejectV2>(d, map, 'reject');
        return { type: 'reject', message: signed.payload, signed };
      }
      const signed = checkSignedV2<WelcomeV2>(d, map, 'welcome');
      requireKid(signed.kid, signed.payload.gw, 'welcome');
      return { type: 'welcome', signed };
    }
    case 'frame':
      return { type: 'frame', bytes: Uint8Array.from(bytes) };
  }
}
