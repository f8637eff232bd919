/**
 * protocol-v1 messages: encoders, signers and strict parsers. Parsers check size, CBOR, COSE
 * structure (strict profile), alg, type, version and every field; they do NOT verify
 * signatures (call `verifySign1` with the right key for that).
 */
import { CborError, decodeCbor, encodeCbor, MAX_MESSAGE_BYTES, type CborValue } from './cbor.js';
import { decodeSign1, signSign1, type DecodedSign1 } from './cose.js';
import { sha256 } from './crypto.js';
import { ProtocolError } from './errors.js';
import { isValidId } from './ids.js';
import { buildPayload, checkPayload, payloadType } from './payload.js';
import {
  COSE_ALG_EDDSA,
  type Challenge,
  type ChallengeRequest,
  type GatewayCredential,
  type Hello,
  type Lease,
  type MessageType,
  type Policy,
  type Reject,
  type Signed,
  type Signer,
  type Welcome,
} from './types.js';

export { MAX_MESSAGE_BYTES };
export { isValidId };

function checkSize(bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array)) throw new ProtocolError('GH_MSG_INPUT', 'malformed', 'message must be a Uint8Array');
  // protocol-v1 "Encoding": any message over 1024 bytes is refused.
  if (bytes.length > MAX_MESSAGE_BYTES) {
    throw new ProtocolError('GH_MSG_TOO_LARGE', 'malformed', `message of ${bytes.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  }
}

function decodePayloadBytes(payload: Uint8Array): CborValue {
  try {
    return decodeCbor(payload, { allowTopLevelTag: false });
  } catch (cause) {
    if (cause instanceof CborError) throw new CborError(cause.code, `payload: ${cause.message}`, { cause });
    throw cause;
  }
}

function decodeUnsigned(bytes: Uint8Array): CborValue {
  checkSize(bytes);
  return decodeCbor(bytes, { allowTopLevelTag: false });
}

/** Check a decoded COSE_Sign1 whose payload map is already decoded as a message of `type`. */
function checkSigned<T>(d: DecodedSign1, payloadMap: CborValue, type: MessageType): Signed<T> {
  // protocol-v1 "Encoding": peripherals, the backend and the session key all sign with EdDSA.
  if (d.alg !== COSE_ALG_EDDSA) {
    throw new ProtocolError('GH_MSG_WRONG_ALG', 'malformed', `a ${type} must be signed with EdDSA (-8), not alg ${d.alg}`);
  }
  const payload = checkPayload<T>(payloadMap, type);
  return { bytes: d.bytes, alg: d.alg, kid: d.kid, payload, toBeSigned: d.toBeSigned, signature: d.signature };
}

/** Decode a signed message of `type` (structure only, signature not verified). */
function parseSigned<T>(bytes: Uint8Array, type: MessageType): Signed<T> {
  checkSize(bytes);
  const d = decodeSign1(bytes);
  return checkSigned<T>(d, decodePayloadBytes(d.payload), type);
}

async function signMessage(message: { type: MessageType } & object, type: MessageType, signer: Signer): Promise<Uint8Array> {
  const bytes = await signSign1(encodeCbor(buildPayload(message, type)), signer);
  checkSize(bytes);
  return bytes;
}

function requireKid(kid: string, expected: string, what: string): void {
  if (kid !== expected) throw new ProtocolError('GH_MSG_KID_MISMATCH', 'malformed', `${what}: kid ${JSON.stringify(kid)} does not match ${JSON.stringify(expected)}`);
}

/** Encode a challenge-request `{1:"challenge-request", 2:1, 3:dev}` (unsigned). */
export function encodeChallengeRequest(m: ChallengeRequest): Uint8Array {
  return encodeCbor(buildPayload(m, 'challenge-request'));
}

/** Parse a challenge-request. */
export function decodeChallengeRequest(bytes: Uint8Array): ChallengeRequest {
  return checkPayload<ChallengeRequest>(decodeUnsigned(bytes), 'challenge-request');
}

/** Encode a challenge `{1:"challenge", 2:1, 3:dev, 5:gn, 6:gw}` (unsigned). */
export function encodeChallenge(m: Challenge): Uint8Array {
  return encodeCbor(buildPayload(m, 'challenge'));
}

/** Parse a challenge. */
export function decodeChallenge(bytes: Uint8Array): Challenge {
  return checkPayload<Challenge>(decodeUnsigned(bytes), 'challenge');
}

/** Sign a hello with the peripheral's key (kid must be the dev id). */
export async function signHello(m: Hello, signer: Signer): Promise<Uint8Array> {
  requireKid(signer.kid, m.dev, 'hello');
  return signMessage(m, 'hello', signer);
}

/** Parse a hello (kid must equal dev). Signature not verified. */
export function parseHello(bytes: Uint8Array): Signed<Hello> {
  return helloKid(parseSigned<Hello>(bytes, 'hello'));
}

function helloKid(s: Signed<Hello>): Signed<Hello> {
  requireKid(s.kid, s.payload.dev, 'hello');
  return s;
}

function welcomeKid(s: Signed<Welcome>): Signed<Welcome> {
  requireKid(s.kid, s.payload.gw, 'welcome');
  return s;
}

/** Sign a welcome with the gateway session key (kid must be the gw id). */
export async function signWelcome(m: Welcome, signer: Signer): Promise<Uint8Array> {
  requireKid(signer.kid, m.gw, 'welcome');
  return signMessage(m, 'welcome', signer);
}

/** Parse a welcome (kid must equal gw). Neither the welcome nor its cred is verified. */
export function parseWelcome(bytes: Uint8Array): Signed<Welcome> {
  return welcomeKid(parseSigned<Welcome>(bytes, 'welcome'));
}

/** Sign a reject with the gateway session key. */
export async function signReject(m: Reject, signer: Signer): Promise<Uint8Array> {
  return signMessage(m, 'reject', signer);
}

/** Encode an unsigned reject: only when the gateway has no session key yet (protocol-v1). */
export function encodeUnsignedReject(m: Reject): Uint8Array {
  return encodeCbor(buildPayload(m, 'reject'));
}

/** A parsed reject: `signed` is null for an unsigned one. Advisory either way. */
export interface ParsedReject {
  message: Reject;
  signed: Signed<Reject> | null;
}

/** Parse a signed (COSE_Sign1) or unsigned (bare map) reject. */
export function parseReject(bytes: Uint8Array): ParsedReject {
  checkSize(bytes);
  if (looksLikeMap(bytes)) return { message: checkPayload<Reject>(decodeUnsigned(bytes), 'reject'), signed: null };
  const signed = parseSigned<Reject>(bytes, 'reject');
  return { message: signed.payload, signed };
}

/** Sign a gateway credential with the backend key. */
export async function signGatewayCredential(m: GatewayCredential, signer: Signer): Promise<Uint8Array> {
  return signMessage(m, 'gw-cred', signer);
}

/** Parse a gateway credential. Signature not verified. */
export function parseGatewayCredential(bytes: Uint8Array): Signed<GatewayCredential> {
  return parseSigned<GatewayCredential>(bytes, 'gw-cred');
}

/** Sign a device lease with the backend key. */
export async function signLease(m: Lease, signer: Signer): Promise<Uint8Array> {
  return signMessage(m, 'lease', signer);
}

/** Parse a device lease. Signature not verified. */
export function parseLease(bytes: Uint8Array): Signed<Lease> {
  return parseSigned<Lease>(bytes, 'lease');
}

// Major type 5 (map) in the initial byte: an unsigned message; COSE_Sign1 starts 0xD2 or 0x84.
function looksLikeMap(bytes: Uint8Array): boolean {
  return bytes.length > 0 && (bytes[0] as number) >> 5 === 5;
}

function notAMessage(bytes: Uint8Array, direction: string): never {
  // Let the CBOR decoder name the precise defect when there is one.
  decodeCbor(bytes);
  throw new ProtocolError('GH_MSG_NOT_A_MESSAGE', 'malformed', `not a ${direction} message (expected a CBOR map or a COSE_Sign1)`);
}

/** What a peripheral sends: a challenge-request or a hello. */
export type UpMessage = { type: 'challenge-request'; message: ChallengeRequest } | { type: 'hello'; signed: Signed<Hello> };

/** What a peripheral receives: a challenge, a welcome or a reject. */
export type DownMessage =
  | { type: 'challenge'; message: Challenge }
  | { type: 'welcome'; signed: Signed<Welcome> }
  | { type: 'reject'; message: Reject; signed: Signed<Reject> | null };

/** Decode a message travelling peripheral → gateway (structure only). */
export function decodeUpMessage(bytes: Uint8Array): UpMessage {
  checkSize(bytes);
  if (looksLikeMap(bytes)) {
    const map = decodeUnsigned(bytes);
    if (payloadType(map) === 'hello') throw new ProtocolError('GH_MSG_NOT_SIGNED', 'malformed', 'a hello must be a COSE_Sign1');
    return { type: 'challenge-request', message: checkPayload<ChallengeRequest>(map, 'challenge-request') };
  }
  if (bytes[0] === 0xd2 || bytes[0] === 0x84) {
    const d = decodeSign1(bytes);
    return { type: 'hello', signed: helloKid(checkSigned<Hello>(d, decodePayloadBytes(d.payload), 'hello')) };
  }
  return notAMessage(bytes, 'peripheral-to-gateway');
}

/** Decode a message travelling gateway → peripheral (structure only). */
export function decodeDownMessage(bytes: Uint8Array): DownMessage {
  checkSize(bytes);
  if (looksLikeMap(bytes)) {
    const map = decodeUnsigned(bytes);
    const t = payloadType(map);
    if (t === 'reject') return { type: 'reject', message: checkPayload<Reject>(map, 'reject'), signed: null };
    if (t === 'welcome') throw new ProtocolError('GH_MSG_NOT_SIGNED', 'malformed', 'a welcome must be a COSE_Sign1');
    return { type: 'challenge', message: checkPayload<Challenge>(map, 'challenge') };
  }
  if (bytes[0] === 0xd2 || bytes[0] === 0x84) {
    const d = decodeSign1(bytes);
    const map = decodePayloadBytes(d.payload);
    if (payloadType(map) === 'reject') {
      const signed = checkSigned<Reject>(d, map, 'reject');
      return { type: 'reject', message: signed.payload, signed };
    }
    return { type: 'welcome', signed: welcomeKid(checkSigned<Welcome>(d, map, 'welcome')) };
  }
  return notAMessage(bytes, 'gateway-to-peripheral');
}

/** protocol-v1 hh: SHA-256 of the hello's COSE_Sign1 bytes exactly as received. */
export function helloHash(helloBytes: Uint8Array): Uint8Array {
  return sha256(helloBytes);
}

/** Replace `{dev}` in every topic filter of `policy` with the device id (protocol-v1 key 14). */
export function expandPolicy(policy: Policy, dev: string): Policy {
  if (!isValidId(dev)) throw new ProtocolError('GH_MSG_BAD_ID', 'malformed', 'dev must be 1–64 characters of [A-Za-z0-9._:-]');
  const expand = (filters: string[]): string[] => filters.map((f) => f.replaceAll('{dev}', dev));
  return { pub: expand(policy.pub), sub: expand(policy.sub) };
}

/** The default policy a lease carries when the registry sets none (protocol-v1 "MQTT transport"). */
export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({ pub: ['devices/{dev}/#'], sub: ['devices/{dev}/cmd/#'] });
