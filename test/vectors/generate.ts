/**
 * Generates test/vectors/protocol-v1.json: valid and invalid examples of every protocol-v1
 * message, from fixed seeds (Ed25519 signatures are deterministic), each with the verdict and
 * error code our parsers must give. Other implementations (firmware, a cloud backend) can run
 * the same file. `npm run vectors` rewrites it; test/vectors/protocol-v1.test.ts checks the
 * committed file is exactly what this produces.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CborTag,
  decodeCbor,
  Ed25519Signer,
  encodeCbor,
  encodeChallenge,
  encodeChallengeRequest,
  encodeUnsignedReject,
  helloHash,
  signGatewayCredential,
  signHello,
  signLease,
  signReject,
  signSign1,
  signWelcome,
  type CborMap,
  type CborValue,
  type GatewayCredential,
  type Lease,
  type Signer,
} from '../../protocol/index.js';
import { counting, fill, hex, keyTable, map, renderJson, utf8, writeWhenRun, type MessageVectorBase } from './kit.js';

export const VECTORS_PATH = join(dirname(fileURLToPath(import.meta.url)), 'protocol-v1.json');

export type DecoderName = 'decodeChallengeRequest' | 'decodeChallenge' | 'parseHello' | 'parseWelcome' | 'parseReject' | 'parseGatewayCredential' | 'parseLease' | 'decodeUpMessage' | 'decodeDownMessage';

export interface MessageVector extends MessageVectorBase<DecoderName> {
  /** For valid signed vectors: the key (in `keys`) it must be checked under, and the outcome. */
  verifyWith?: string;
  signature?: 'valid' | 'invalid';
  /** For valid vectors: the decoded payload, byte strings as hex. */
  decoded?: unknown;
}

export interface WelcomeCheckVector {
  name: string;
  welcome: string;
  hello: string;
  dev: string;
  /** Unix seconds, or null for a clockless peripheral. */
  now: number | null;
  /** The pinned backend key (from `keys`) and the kid it is pinned under. */
  backendKey: string;
  backendKid: string;
  expect: 'ok' | string;
  note: string;
}

export interface VectorFile {
  description: string;
  generator: string;
  /** Keys by name; `seed` is null for a key nobody holds (the small-order identity point). */
  keys: Record<string, { kid: string; seed: string | null; publicKey: string }>;
  messages: MessageVector[];
  welcomeChecks: WelcomeCheckVector[];
}

/** JSON view of a decoded value: byte strings as hex, everything else as is. */
function jsonView(v: unknown): unknown {
  if (v instanceof Uint8Array) return hex(v);
  if (Array.isArray(v)) return v.map(jsonView);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonView(x)]));
  return v;
}

/** COSE_Sign1 with arbitrary headers, signed for real (to build structurally invalid vectors). */
async function rawSign1(signer: Signer, payload: Uint8Array, prot: CborMap, unprot: CborMap = new Map(), tagged = true): Promise<Uint8Array> {
  const protBytes = encodeCbor(prot);
  const sig = await signer.sign(encodeCbor(['Signature1', protBytes, new Uint8Array(0), payload]));
  const body: CborValue = [protBytes, unprot, payload, sig];
  return encodeCbor(tagged ? new CborTag(18, body) : body);
}

function payloadOf(cose: Uint8Array): Uint8Array {
  return ((decodeCbor(cose) as CborTag).value as CborValue[])[2] as Uint8Array;
}

function withPayloadEdit(cose: Uint8Array, edit: (m: CborMap) => void): Uint8Array {
  const m = decodeCbor(payloadOf(cose)) as CborMap;
  edit(m);
  return encodeCbor(m);
}

/** Build every vector. Pure and deterministic. */
export async function generateVectors(): Promise<VectorFile> {
  const dev = 'sensor-0001';
  const gw = 'gw-lab-1';
  const backend = Ed25519Signer.fromSeed(fill(32, 0xb0), 'backend-1');
  const session = Ed25519Signer.fromSeed(fill(32, 0x5e), gw);
  const device = Ed25519Signer.fromSeed(fill(32, 0xde), dev);
  const attacker = Ed25519Signer.fromSeed(fill(32, 0xaa), dev);
  const attackerBackend = Ed25519Signer.fromSeed(fill(32, 0xab), 'backend-1');
  const gn = counting(16, 0x10);
  const pn = counting(16, 0x40);
  const tpk = counting(32, 0x70);
  const iat = 1_800_000_000;
  const exp = iat + 86_400;
  const kidBytes = (s: Signer): Uint8Array => utf8(s.kid);

  const keys: VectorFile['keys'] = keyTable([
    ['backend', backend, 0xb0],
    ['session', session, 0x5e],
    ['device', device, 0xde],
    ['attacker', attacker, 0xaa],
    ['attackerBackend', attackerBackend, 0xab],
  ]);
  // The identity point: under plain RFC 8032 verification, R = identity and S = 0 verify any message.
  const identityKey = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0));
  keys.smallOrder = { kid: dev, seed: null, publicKey: hex(identityKey) };

  const messages: MessageVector[] = [];
  const valid = (name: string, decoder: DecoderName, bytes: Uint8Array, decoded: unknown, note: string, verifyWith?: string, signature?: 'valid' | 'invalid'): void => {
    messages.push({ name, decoder, hex: hex(bytes), verdict: 'valid', ...(verifyWith ? { verifyWith, signature } : {}), decoded: jsonView(decoded), note });
  };
  const invalid = (name: string, decoder: DecoderName, bytes: Uint8Array, code: string, reason: string, note: string): void => {
    messages.push({ name, decoder, hex: hex(bytes), verdict: 'invalid', reason, code, note });
  };

  // --- challenge-request ------------------------------------------------------------------
  const cr = { type: 'challenge-request', version: 1, dev } as const;
  const crBytes = encodeChallengeRequest(cr);
  valid('challenge-request/valid', 'decodeChallengeRequest', crBytes, cr, 'the smallest message');
  valid('up/challenge-request', 'decodeUpMessage', crBytes, { type: 'challenge-request', message: cr }, 'dispatch of an unsigned up message');
  const crMap = (extra: [number | string, CborValue][] = [], version: CborValue = 1, d: CborValue = dev): CborMap =>
    map([[1, 'challenge-request'], [2, version], [3, d], ...extra]);
  invalid('challenge-request/version-2', 'decodeChallengeRequest', encodeCbor(crMap([[17, 'future']], 2)), 'GH_MSG_UNSUPPORTED_VERSION', 'unsupported-version', 'version is checked before unknown keys');
  invalid('challenge-request/unknown-key', 'decodeChallengeRequest', encodeCbor(crMap([[17, 'x']])), 'GH_MSG_UNKNOWN_FIELD', 'malformed', 'unknown keys are refused in v1');
  invalid('challenge-request/bad-dev-chars', 'decodeChallengeRequest', encodeCbor(crMap([], 1, 'sensor/1')), 'GH_MSG_BAD_ID', 'malformed', "'/' is not an id character");
  invalid('challenge-request/dev-65-chars', 'decodeChallengeRequest', encodeCbor(crMap([], 1, 'd'.repeat(65))), 'GH_MSG_BAD_ID', 'malformed', 'ids are 1–64 characters');
  invalid('challenge-request/empty-dev', 'decodeChallengeRequest', encodeCbor(crMap([], 1, '')), 'GH_MSG_BAD_ID', 'malformed', 'ids are 1–64 characters');
  invalid('challenge-request/dev-as-bytes', 'decodeChallengeRequest', encodeCbor(crMap([], 1, utf8(dev))), 'GH_MSG_FIELD_TYPE', 'malformed', 'dev is a tstr');
  invalid('challenge-request/wrong-type', 'decodeChallengeRequest', encodeCbor(map([[1, 'challenge'], [2, 1], [3, dev]])), 'GH_MSG_WRONG_TYPE', 'malformed', 'type says challenge');
  invalid('challenge-request/unknown-type', 'decodeChallengeRequest', encodeCbor(map([[1, 'ping'], [2, 1], [3, dev]])), 'GH_MSG_UNKNOWN_TYPE', 'malformed', 'no such message type');
  invalid('challenge-request/not-a-map', 'decodeChallengeRequest', encodeCbor(['challenge-request', 1, dev]), 'GH_MSG_NOT_MAP', 'malformed', 'payloads are maps');
  const crHex = hex(crBytes);
  // a3 | 01 71 "challenge-request" | 02 01 | 03 6b "sensor-0001"
  const crType = `01${hex(encodeCbor('challenge-request'))}`;
  const crDev = `03${hex(encodeCbor(dev))}`;
  invalid('challenge-request/indefinite-map', 'decodeChallengeRequest', Buffer.from(`bf${crHex.slice(2)}ff`, 'hex'), 'GH_CBOR_INDEFINITE', 'malformed', 'indefinite lengths are refused');
  invalid('challenge-request/trailing-byte', 'decodeChallengeRequest', Buffer.from(`${crHex}00`, 'hex'), 'GH_CBOR_TRAILING_BYTES', 'malformed', 'one item, nothing after it');
  invalid('challenge-request/duplicate-key', 'decodeChallengeRequest', Buffer.from(`a4${crHex.slice(2)}036178`, 'hex'), 'GH_CBOR_DUPLICATE_KEY', 'malformed', 'key 3 twice');
  invalid('challenge-request/unsorted-keys', 'decodeChallengeRequest', Buffer.from(`a3${'0201'}${crType}${crDev}`, 'hex'), 'GH_CBOR_UNSORTED_KEYS', 'malformed', 'key 2 before key 1');
  invalid('challenge-request/non-shortest-version', 'decodeChallengeRequest', Buffer.from(`a3${crType}021801${crDev}`, 'hex'), 'GH_CBOR_NON_SHORTEST', 'malformed', 'version 1 written as 0x18 0x01');
  invalid('challenge-request/float-version', 'decodeChallengeRequest', Buffer.from(`a3${crType}02f93c00${crDev}`, 'hex'), 'GH_CBOR_FLOAT', 'malformed', 'version 1.0 as a half float');
  invalid('challenge-request/tagged', 'decodeChallengeRequest', Buffer.from(`d2${crHex}`, 'hex'), 'GH_CBOR_TAG', 'malformed', 'tag 18 only wraps a COSE_Sign1');
  invalid('challenge-request/bad-utf8', 'decodeChallengeRequest', encodeCbor(crMap([], 1, 'x')).map((b, i, a) => (i === a.length - 1 ? 0xff : b)), 'GH_CBOR_UTF8', 'malformed', 'dev is not UTF-8');
  const big = encodeCbor(crMap([[17, new Uint8Array(1100)]]));
  invalid('challenge-request/too-large', 'decodeChallengeRequest', big, 'GH_MSG_TOO_LARGE', 'malformed', 'over 1024 bytes');

  // --- challenge --------------------------------------------------------------------------
  const ch = { type: 'challenge', version: 1, dev, gn, gw } as const;
  valid('challenge/valid', 'decodeChallenge', encodeChallenge(ch), ch, 'unsigned, from the gateway');
  valid('down/challenge', 'decodeDownMessage', encodeChallenge(ch), { type: 'challenge', message: ch }, 'dispatch of an unsigned down message');
  invalid('challenge/gn-15-bytes', 'decodeChallenge', encodeCbor(map([[1, 'challenge'], [2, 1], [3, dev], [5, gn.subarray(1)], [6, gw]])), 'GH_MSG_FIELD_LENGTH', 'malformed', 'gn is 16 bytes');
  invalid('challenge/missing-gw', 'decodeChallenge', encodeCbor(map([[1, 'challenge'], [2, 1], [3, dev], [5, gn]])), 'GH_MSG_MISSING_FIELD', 'malformed', 'gw is required');

  // --- hello ------------------------------------------------------------------------------
  const hello = { type: 'hello', version: 1, dev, pn, gn } as const;
  const helloBytes = await signHello(hello, device);
  valid('hello/valid', 'parseHello', helloBytes, hello, 'COSE_Sign1[sk_P, kid=dev]', 'device', 'valid');
  valid('up/hello', 'decodeUpMessage', helloBytes, { type: 'hello', payload: hello }, 'dispatch of a signed up message', 'device', 'valid');
  const untagged = encodeCbor((decodeCbor(helloBytes) as CborTag).value);
  valid('hello/untagged', 'parseHello', untagged, hello, 'untagged COSE_Sign1 is accepted on decode', 'device', 'valid');
  valid('hello/wrong-key', 'parseHello', await signHello(hello, attacker), hello, 'well-formed, but signed by another key with kid=dev', 'device', 'invalid');
  const sig = (decodeCbor(helloBytes) as CborTag).value as CborValue[];
  const s = (sig[3] as Uint8Array).slice();
  let sNum = 0n;
  for (let i = 63; i >= 32; i--) sNum = (sNum << 8n) | BigInt(s[i] as number);
  sNum += (1n << 252n) + 27742317777372353535851937790883648493n;
  for (let i = 32; i < 64; i++) {
    s[i] = Number(sNum & 0xffn);
    sNum >>= 8n;
  }
  valid('hello/non-canonical-s', 'parseHello', encodeCbor(new CborTag(18, [sig[0] as Uint8Array, new Map(), sig[2] as Uint8Array, s])), hello, 'S + L: same curve equation, refused as malleable (RFC 8032 §5.1.7)', 'device', 'invalid');
  const forgedSig = Uint8Array.from({ length: 64 }, (_, i) => (i === 0 ? 1 : 0));
  valid('hello/small-order-key-forgery', 'parseHello', encodeCbor(new CborTag(18, [sig[0] as Uint8Array, new Map(), sig[2] as Uint8Array, forgedSig])), hello, 'R = identity, S = 0 under the identity key: must NOT verify (small-order key refused)', 'smallOrder', 'invalid');
  const helloPayload = (edit: (m: CborMap) => void): Uint8Array => withPayloadEdit(helloBytes, edit);
  invalid('hello/pn-17-bytes', 'parseHello', await signSign1(helloPayload((m) => m.set(4, new Uint8Array(17))), device), 'GH_MSG_FIELD_LENGTH', 'malformed', 'pn is 16 bytes');
  invalid('hello/missing-gn', 'parseHello', await signSign1(helloPayload((m) => m.delete(5)), device), 'GH_MSG_MISSING_FIELD', 'malformed', 'gn is required');
  invalid('hello/version-2', 'parseHello', await signSign1(helloPayload((m) => m.set(2, 2)), device), 'GH_MSG_UNSUPPORTED_VERSION', 'unsupported-version', 'version 2 hello');
  invalid('hello/kid-not-dev', 'parseHello', await signSign1(payloadOf(helloBytes), Ed25519Signer.fromSeed(fill(32, 0xde), 'sensor-0002')), 'GH_MSG_KID_MISMATCH', 'malformed', 'kid must equal dev');
  const hp = payloadOf(helloBytes);
  invalid('hello/kid-unprotected', 'parseHello', await rawSign1(device, hp, map([[1, -8]]), map([[4, kidBytes(device)]])), 'GH_COSE_HEADER', 'malformed', 'protocol-v1: unprotected header is empty');
  invalid('hello/extra-protected-header', 'parseHello', await rawSign1(device, hp, map([[1, -8], [3, 0], [4, kidBytes(device)]])), 'GH_COSE_HEADER', 'malformed', 'protected header is exactly {1, 4}');
  invalid('hello/crit', 'parseHello', await rawSign1(device, hp, map([[1, -8], [2, [99]], [4, kidBytes(device)]])), 'GH_COSE_CRIT', 'malformed', 'no critical headers in protocol-v1');
  invalid('hello/no-alg', 'parseHello', await rawSign1(device, hp, map([[4, kidBytes(device)]])), 'GH_COSE_MISSING_ALG', 'malformed', 'alg only from the protected header');
  invalid('hello/alg-es384', 'parseHello', await rawSign1(device, hp, map([[1, -35], [4, kidBytes(device)]])), 'GH_COSE_UNSUPPORTED_ALG', 'malformed', 'only EdDSA and ES256 exist here');
  invalid('hello/alg-es256', 'parseHello', await rawSign1(device, hp, map([[1, -7], [4, kidBytes(device)]])), 'GH_MSG_WRONG_ALG', 'malformed', 'peripherals sign with EdDSA');
  invalid('hello/kid-text', 'parseHello', await rawSign1(device, hp, map([[1, -8], [4, dev]])), 'GH_COSE_BAD_KID', 'malformed', 'kid is a bstr');
  invalid('hello/tag-998', 'parseHello', Buffer.from(`d903e6${hex(untagged)}`, 'hex'), 'GH_CBOR_TAG', 'malformed', 'only tag 18');
  invalid('hello/short-signature', 'parseHello', encodeCbor(new CborTag(18, [sig[0] as Uint8Array, new Map(), sig[2] as Uint8Array, (sig[3] as Uint8Array).subarray(0, 63)])), 'GH_COSE_SIGNATURE_LENGTH', 'malformed', 'signatures are 64 bytes');
  invalid('hello/three-items', 'parseHello', encodeCbor(new CborTag(18, [sig[0] as Uint8Array, new Map(), sig[2] as Uint8Array])), 'GH_COSE_STRUCTURE', 'malformed', 'COSE_Sign1 has 4 items');
  invalid('up/unsigned-hello', 'decodeUpMessage', hp, 'GH_MSG_NOT_SIGNED', 'malformed', 'a hello must be signed');
  invalid('up/array-bomb', 'decodeUpMessage', Buffer.from('9affffffff', 'hex'), 'GH_CBOR_LENGTH', 'malformed', 'declared 2^32-1 items: refused before allocating');
  invalid('any/array-bomb', 'parseHello', Buffer.from('9affffffff', 'hex'), 'GH_CBOR_LENGTH', 'malformed', 'declared 2^32-1 items: refused before allocating');
  invalid('any/deep-nesting', 'parseHello', Buffer.from(`${'81'.repeat(100)}00`, 'hex'), 'GH_CBOR_TOO_DEEP', 'malformed', 'nesting limit 8');
  invalid('any/empty', 'decodeUpMessage', new Uint8Array(0), 'GH_CBOR_TRUNCATED', 'malformed', 'nothing');

  // --- gateway credential, welcome ------------------------------------------------------
  const cred: GatewayCredential = { type: 'gw-cred', version: 1, gw, spk: session.publicKeyRaw, tpk, iat, exp };
  const credBytes = await signGatewayCredential(cred, backend);
  valid('gw-cred/valid', 'parseGatewayCredential', credBytes, cred, 'COSE_Sign1[sk_S, kid=kid_S]', 'backend', 'valid');
  const credPayload = (edit: (m: CborMap) => void): Uint8Array => withPayloadEdit(credBytes, edit);
  invalid('gw-cred/exp-before-iat', 'parseGatewayCredential', await signSign1(credPayload((m) => m.set(12, iat)), backend), 'GH_MSG_BAD_VALIDITY', 'malformed', 'exp must be after iat');
  invalid('gw-cred/small-order-spk', 'parseGatewayCredential', await signSign1(credPayload((m) => m.set(9, fill(32, 0).map((_, i) => (i === 0 ? 1 : 0)))), backend), 'GH_MSG_BAD_KEY', 'malformed', 'identity point as session key');
  invalid('gw-cred/tpk-short', 'parseGatewayCredential', await signSign1(credPayload((m) => m.set(10, tpk.subarray(1))), backend), 'GH_MSG_FIELD_LENGTH', 'malformed', 'tpk is a SHA-256');
  invalid('gw-cred/negative-iat', 'parseGatewayCredential', await signSign1(credPayload((m) => m.set(11, -1)), backend), 'GH_MSG_FIELD_TYPE', 'malformed', 'iat is a uint');

  const welcome = { type: 'welcome', version: 1, dev, gw, hh: helloHash(helloBytes), cred: credBytes } as const;
  const welcomeBytes = await signWelcome(welcome, session);
  valid('welcome/valid', 'parseWelcome', welcomeBytes, welcome, 'COSE_Sign1[session key, kid=gw]', 'session', 'valid');
  valid('down/welcome', 'decodeDownMessage', welcomeBytes, { type: 'welcome', payload: welcome }, 'dispatch of a signed down message', 'session', 'valid');
  const welcomePayload = (edit: (m: CborMap) => void): Uint8Array => withPayloadEdit(welcomeBytes, edit);
  invalid('welcome/hh-31-bytes', 'parseWelcome', await signSign1(welcomePayload((m) => m.set(7, welcome.hh.subarray(1))), session), 'GH_MSG_FIELD_LENGTH', 'malformed', 'hh is a SHA-256');
  invalid('welcome/kid-not-gw', 'parseWelcome', await signSign1(payloadOf(welcomeBytes), Ed25519Signer.fromSeed(fill(32, 0x5e), 'gw-other')), 'GH_MSG_KID_MISMATCH', 'malformed', 'kid must equal gw');
  invalid('welcome/empty-cred', 'parseWelcome', await signSign1(welcomePayload((m) => m.set(8, new Uint8Array(0))), session), 'GH_MSG_FIELD_TYPE', 'malformed', 'cred is the credential bytes');
  invalid('up/welcome', 'decodeUpMessage', welcomeBytes, 'GH_MSG_WRONG_TYPE', 'malformed', 'peripherals do not send welcomes');
  invalid('down/hello', 'decodeDownMessage', helloBytes, 'GH_MSG_WRONG_TYPE', 'malformed', 'gateways do not send hellos');

  // --- reject ---------------------------------------------------------------------------
  const reject = { type: 'reject', version: 1, dev, hh: helloHash(helloBytes), reason: 'unknown-device', retry: 300 } as const;
  const rejectBytes = await signReject(reject, session);
  valid('reject/signed', 'parseReject', rejectBytes, { message: reject }, 'signed with the session key', 'session', 'valid');
  valid('down/reject-signed', 'decodeDownMessage', rejectBytes, { type: 'reject', message: reject }, 'dispatch', 'session', 'valid');
  const unsignedReject = { type: 'reject', version: 1, dev, reason: 'backend-unavailable', retry: 30 } as const;
  valid('reject/unsigned', 'parseReject', encodeUnsignedReject(unsignedReject), { message: unsignedReject }, 'only before the gateway has a session key');
  valid('down/reject-unsigned', 'decodeDownMessage', encodeUnsignedReject(unsignedReject), { type: 'reject', message: unsignedReject }, 'dispatch');
  const minimalReject = { type: 'reject', version: 1, dev, reason: 'malformed' } as const;
  valid('reject/minimal', 'parseReject', encodeUnsignedReject(minimalReject), { message: minimalReject }, 'hh and retry are optional');
  invalid('reject/unknown-reason', 'parseReject', encodeCbor(map([[1, 'reject'], [2, 1], [3, dev], [13, 'go-away']])), 'GH_MSG_BAD_REASON', 'malformed', 'reason codes are a closed set');
  invalid('reject/negative-retry', 'parseReject', encodeCbor(map([[1, 'reject'], [2, 1], [3, dev], [13, 'busy'], [16, -5]])), 'GH_MSG_FIELD_TYPE', 'malformed', 'retry is a uint');
  invalid('reject/missing-reason', 'parseReject', encodeCbor(map([[1, 'reject'], [2, 1], [3, dev]])), 'GH_MSG_MISSING_FIELD', 'malformed', 'reason is required');

  // --- lease ----------------------------------------------------------------------------
  const lease: Lease = { type: 'lease', version: 1, dev, gw, dpk: device.publicKeyRaw, policy: { pub: ['devices/{dev}/#'], sub: ['devices/{dev}/cmd/#'] }, iat, exp };
  const leaseBytes = await signLease(lease, backend);
  valid('lease/valid', 'parseLease', leaseBytes, lease, 'COSE_Sign1[sk_S, kid=kid_S]', 'backend', 'valid');
  const leasePayload = (edit: (m: CborMap) => void): Uint8Array => withPayloadEdit(leaseBytes, edit);
  invalid('lease/policy-bad-filter', 'parseLease', await signSign1(leasePayload((m) => m.set(14, map([['pub', ['devices/#/x']], ['sub', []]]))), backend), 'GH_MSG_BAD_POLICY', 'malformed', "'#' only as the last level");
  invalid('lease/policy-missing-sub', 'parseLease', await signSign1(leasePayload((m) => m.set(14, map([['pub', []]]))), backend), 'GH_MSG_BAD_POLICY', 'malformed', 'policy has pub and sub');
  invalid('lease/policy-extra-key', 'parseLease', await signSign1(leasePayload((m) => m.set(14, map([['pub', []], ['qos', []], ['sub', []]]))), backend), 'GH_MSG_BAD_POLICY', 'malformed', 'policy has only pub and sub');
  invalid('lease/dpk-short', 'parseLease', await signSign1(leasePayload((m) => m.set(15, device.publicKeyRaw.subarray(1))), backend), 'GH_MSG_FIELD_LENGTH', 'malformed', 'dpk is 32 bytes');

  // --- peripheral checks on a welcome ---------------------------------------------------
  const welcomeChecks: WelcomeCheckVector[] = [];
  const wc = (name: string, w: Uint8Array, expect: string, note: string, over: Partial<WelcomeCheckVector> = {}): void => {
    welcomeChecks.push({ name, welcome: hex(w), hello: hex(helloBytes), dev, now: iat + 60, backendKey: 'backend', backendKid: 'backend-1', expect, note, ...over });
  };
  wc('ok', welcomeBytes, 'ok', 'all checks pass');
  wc('ok-clockless', welcomeBytes, 'ok', 'no clock: expiry not checked', { now: null });
  wc('expired', welcomeBytes, 'GH_WELCOME_EXPIRED', 'now == cred.exp', { now: exp });
  wc('malformed', helloBytes, 'GH_WELCOME_MALFORMED', 'a hello is not a welcome');
  wc('cred-wrong-backend-key', await signWelcome({ ...welcome, cred: await signGatewayCredential(cred, attackerBackend) }, session), 'GH_WELCOME_CRED_SIGNATURE', 'cred signed by a key that claims kid backend-1');
  wc('cred-unknown-kid', welcomeBytes, 'GH_WELCOME_CRED_UNKNOWN_KID', 'pinned under another kid', { backendKid: 'backend-2' });
  wc('cred-is-a-lease', await signWelcome({ ...welcome, cred: leaseBytes }, session), 'GH_WELCOME_CRED_TYPE', 'backend-signed, but a lease');
  wc('cred-not-cose', await signWelcome({ ...welcome, cred: new Uint8Array([0xa0]) }, session), 'GH_WELCOME_CRED_MALFORMED', 'cred is an empty map');
  wc('gw-mismatch', await signWelcome({ ...welcome, cred: await signGatewayCredential({ ...cred, gw: 'gw-lab-2' }, backend) }, session), 'GH_WELCOME_GW_MISMATCH', 'cred issued to another gateway');
  wc('welcome-wrong-key', await signWelcome(welcome, Ed25519Signer.fromSeed(fill(32, 0xac), gw)), 'GH_WELCOME_SIGNATURE', 'welcome not signed by cred.spk');
  wc('dev-mismatch', await signWelcome({ ...welcome, dev: 'sensor-0002' }, session), 'GH_WELCOME_DEV_MISMATCH', 'welcome for another device');
  wc('hello-hash', await signWelcome({ ...welcome, hh: helloHash(await signHello({ ...hello, pn: counting(16, 0x41) }, device)) }, session), 'GH_WELCOME_HELLO_HASH', 'welcome answers another hello');

  return {
    description:
      'protocol-v1 test vectors: every message type, valid and invalid, from fixed Ed25519 seeds. Bytes are lowercase hex. ' +
      'A "valid" vector must decode with the named decoder (and, with verifyWith, its signature must verify or not as stated under that key); ' +
      'an "invalid" vector must be refused with the stated reason (and, for Gatehouse, error code). welcomeChecks are protocol-v1 "Peripheral checks on a welcome".',
    generator: 'test/vectors/generate.ts (npm run vectors)',
    keys,
    messages,
    welcomeChecks,
  };
}

/** The file's exact text. */
export async function renderVectors(): Promise<string> {
  return renderJson(await generateVectors());
}

await writeWhenRun(import.meta.url, VECTORS_PATH, renderVectors);
