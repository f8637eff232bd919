/**
 * Generates test/vectors/protocol-v2.json: every protocol-v2 message and frame type from fixed
 * keys (fixed ephemeral X25519 keys included; Ed25519 and AES-CCM are deterministic), the key
 * schedule's intermediates, and valid and invalid cases with the error code our code gives.
 * `npm run vectors` rewrites it; test/vectors/protocol-v2.test.ts checks the committed file is
 * exactly what this produces and that every verdict holds.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CborTag,
  decodeCbor,
  DEFAULT_POLICY,
  Ed25519Signer,
  encodeCbor,
  helloHash,
  signGatewayCredential,
  signHello,
  signLease,
  signSign1,
  type CborMap,
  type CborValue,
} from '../../protocol/index.js';
import {
  deriveSessionKeys,
  directionKeys,
  encodeChallengeRequestV2,
  encodeChallengeV2,
  encodeFramePayload,
  encodeUnsignedRejectV2,
  frameAad,
  frameNonce,
  MAX_SEQ,
  sealFramePlaintext,
  signCommand,
  signGrant,
  signHelloV2,
  signRejectV2,
  signWelcomeV2,
  x25519KeyPairFromPrivate,
  type Command,
  type FrameDirection,
  type FramePayload,
  type Grant,
} from '../../protocol/v2/index.js';
import { counting, fill, hex, keyTable, map, renderJson, utf8, writeWhenRun, type MessageVectorBase } from './kit.js';

export const VECTORS_V2_PATH = join(dirname(fileURLToPath(import.meta.url)), 'protocol-v2.json');

export type DecoderV2Name =
  | 'decodeChallengeRequestV2' | 'decodeChallengeV2' | 'parseHelloV2' | 'parseGrant' | 'parseWelcomeV2' | 'parseRejectV2' | 'parseCommand' | 'decodeUpMessageV2' | 'decodeDownMessageV2'
  // v1 decoders, to show a v2 message is refused by them
  | 'decodeChallengeRequest' | 'decodeChallenge' | 'parseHello' | 'parseWelcome' | 'decodeUpMessage' | 'decodeDownMessage';

export type MessageV2Vector = MessageVectorBase<DecoderV2Name>;

export interface FrameV2Vector {
  name: string;
  direction: FrameDirection;
  /** Seqs the receiver has already received (or settled as lost) before this frame. */
  received: number[];
  seq: number | null;
  plaintext: string | null;
  nonce: string | null;
  hex: string;
  /** `frame`: opens to a payload; `denied`: decrypts, plaintext refused; `drop`: dropped. */
  expect: 'frame' | 'denied' | 'drop';
  code?: string;
  note: string;
}

export interface WelcomeCheckV2Vector {
  name: string;
  welcome: string;
  now: number | null;
  allowOffline: boolean | null;
  /** `ok` or the refusal code; `check` is the page's check number for a refusal. */
  expect: string;
  check?: number;
  mode?: 'online' | 'offline';
  lifeSeconds?: number;
  note: string;
}

export interface CommandCheckV2Vector {
  name: string;
  command: string;
  hh: string;
  last: { cid: number; status: 'done' | 'failed' } | null;
  now: number | null;
  expect: { action: 'execute' | 'repeat' | 'refuse'; cid: number; status?: string; code?: string };
  note: string;
}

export interface GatewayHelloV2Vector {
  name: string;
  hello: string;
  issuedGe: string;
  expect: string;
  z?: string;
  note: string;
}

export interface VectorV2File {
  description: string;
  generator: string;
  keys: Record<string, { kid: string; seed: string; publicKey: string }>;
  ephemeral: Record<'ge' | 'pe', { privateKey: string; publicKey: string }>;
  inputs: { dev: string; gw: string; gn: string; pn: string; iat: number; exp: number; helloV2: string; hh: string };
  keySchedule: Record<string, string | Record<string, string>>;
  messages: MessageV2Vector[];
  frames: FrameV2Vector[];
  welcomeChecks: WelcomeCheckV2Vector[];
  commandChecks: CommandCheckV2Vector[];
  gatewayHelloChecks: GatewayHelloV2Vector[];
}


function payloadOf(cose: Uint8Array): CborMap {
  return decodeCbor(((decodeCbor(cose, { maxBytes: 4096 }) as CborTag).value as CborValue[])[2] as Uint8Array, { maxBytes: 4096 }) as CborMap;
}
function edited(cose: Uint8Array, edit: (m: CborMap) => void): Uint8Array {
  const m = payloadOf(cose);
  edit(m);
  return encodeCbor(m);
}
function untag(cose: Uint8Array): Uint8Array {
  return encodeCbor((decodeCbor(cose, { maxBytes: 4096 }) as CborTag).value);
}

/** Build every vector. Pure and deterministic. */
export async function generateVectorsV2(): Promise<VectorV2File> {
  const dev = 'sensor-0001';
  const gw = 'gw-lab-1';
  const backend = Ed25519Signer.fromSeed(fill(32, 0xb0), 'backend-1');
  const session = Ed25519Signer.fromSeed(fill(32, 0x5e), gw);
  const device = Ed25519Signer.fromSeed(fill(32, 0xde), dev);
  const attackerBackend = Ed25519Signer.fromSeed(fill(32, 0xab), 'backend-1');
  const gePriv = fill(32, 0x6e);
  const pePriv = fill(32, 0x7e);
  const ge = x25519KeyPairFromPrivate(gePriv);
  const pe = x25519KeyPairFromPrivate(pePriv);
  const gn = counting(16, 0x10);
  const pn = counting(16, 0x40);
  const tpk = counting(32, 0x70);
  const iat = 1_800_000_000;
  const exp = iat + 86_400;

  const keys: VectorV2File['keys'] = keyTable([
    ['backend', backend, 0xb0],
    ['session', session, 0x5e],
    ['device', device, 0xde],
    ['attackerBackend', attackerBackend, 0xab],
  ]);

  // --- the exchange --------------------------------------------------------------------------
  const cr = { type: 'challenge-request', version: 2, dev } as const;
  const ch = { type: 'challenge', version: 2, dev, gn, gw, ge: ge.publicKey } as const;
  const hello = { type: 'hello', version: 2, dev, pn, gn, gw, ge: ge.publicKey, pe: pe.publicKey } as const;
  const helloBytes = await signHelloV2(hello, device);
  const hh = helloHash(helloBytes);
  const grant: Grant = { type: 'grant', version: 2, dev, gw, hh, spk: session.publicKeyRaw, iat, life: 43_200 };
  const grantBytes = await signGrant(grant, backend);
  const welcome = { type: 'welcome', version: 2, dev, gw, hh, grant: grantBytes, life: 43_200 } as const;
  const welcomeBytes = await signWelcomeV2(welcome, session);
  const credBytes = await signGatewayCredential({ type: 'gw-cred', version: 1, gw, spk: session.publicKeyRaw, tpk, iat, exp }, backend);
  const leaseExp = iat + 3600;
  const leaseBytes = await signLease({ type: 'lease', version: 1, dev, gw, dpk: device.publicKeyRaw, policy: { ...DEFAULT_POLICY }, iat, exp: leaseExp }, backend);
  const offline = { type: 'welcome', version: 2, dev, gw, hh, cred: credBytes, lease: leaseBytes, life: 3600 } as const;
  const offlineBytes = await signWelcomeV2(offline, session);
  const command: Command = { type: 'command', version: 2, dev, hh, cid: 7, topic: `devices/${dev}/cmd/led`, body: utf8('on'), iat, exp: iat + 600 };
  const commandBytes = await signCommand(command, backend);

  const messages: MessageV2Vector[] = [];
  const valid = (name: string, decoder: DecoderV2Name, b: Uint8Array, note: string): void => {
    messages.push({ name, decoder, hex: hex(b), verdict: 'valid', note });
  };
  const invalid = (name: string, decoder: DecoderV2Name, b: Uint8Array, code: string, note: string, reason = 'malformed'): void => {
    messages.push({ name, decoder, hex: hex(b), verdict: 'invalid', reason, code, note });
  };
  const crBytes = encodeChallengeRequestV2(cr);
  valid('challenge-request/valid', 'decodeChallengeRequestV2', crBytes, '{1:"challenge-request", 2:2, 3:dev}');
  valid('up/challenge-request', 'decodeUpMessageV2', crBytes, 'dispatch: a map');
  invalid('challenge-request/v1-on-v2', 'decodeChallengeRequestV2', encodeCbor(map([[1, 'challenge-request'], [2, 1], [3, dev]])), 'GH_MSG_UNSUPPORTED_VERSION', 'a v1 message on a v2 decoder', 'unsupported-version');
  invalid('challenge-request/v2-on-v1', 'decodeChallengeRequest', crBytes, 'GH_MSG_UNSUPPORTED_VERSION', 'a v2 message on a v1 decoder', 'unsupported-version');
  const chBytes = encodeChallengeV2(ch);
  valid('challenge/valid', 'decodeChallengeV2', chBytes, 'with ge (17)');
  valid('down/challenge', 'decodeDownMessageV2', chBytes, 'dispatch: a map');
  invalid('challenge/v2-on-v1', 'decodeChallenge', chBytes, 'GH_MSG_UNSUPPORTED_VERSION', 'a v2 challenge on a v1 decoder', 'unsupported-version');
  invalid('challenge/ge-31-bytes', 'decodeChallengeV2', encodeCbor(map([[1, 'challenge'], [2, 2], [3, dev], [5, gn], [6, gw], [17, ge.publicKey.subarray(1)]])), 'GH_MSG_FIELD_LENGTH', 'ge is 32 bytes');
  invalid('challenge/missing-ge', 'decodeChallengeV2', encodeCbor(map([[1, 'challenge'], [2, 2], [3, dev], [5, gn], [6, gw]])), 'GH_MSG_MISSING_FIELD', 'ge is required in v2');
  invalid('challenge/unknown-key', 'decodeChallengeV2', encodeCbor(map([[1, 'challenge'], [2, 2], [3, dev], [5, gn], [6, gw], [17, ge.publicKey], [32, 0]])), 'GH_MSG_UNKNOWN_FIELD', 'unknown keys are refused');

  valid('hello/valid', 'parseHelloV2', helloBytes, 'tagged COSE_Sign1[sk_P, kid=dev]');
  valid('up/hello', 'decodeUpMessageV2', helloBytes, 'dispatch: tag 18');
  invalid('hello/untagged', 'parseHelloV2', untag(helloBytes), 'GH_MSG_NOT_TAGGED', 'a v2 hello is always tagged');
  invalid('hello/v2-on-v1', 'parseHello', helloBytes, 'GH_MSG_UNSUPPORTED_VERSION', 'a v2 hello on a v1 decoder', 'unsupported-version');
  invalid('hello/v1-on-v2', 'parseHelloV2', await signHello({ type: 'hello', version: 1, dev, pn, gn }, device), 'GH_MSG_UNSUPPORTED_VERSION', 'a v1 hello on a v2 decoder', 'unsupported-version');
  invalid('hello/missing-pe', 'parseHelloV2', await signSign1(edited(helloBytes, (m) => m.delete(18)), device), 'GH_MSG_MISSING_FIELD', 'pe is required');
  invalid('hello/pe-33-bytes', 'parseHelloV2', await signSign1(edited(helloBytes, (m) => m.set(18, fill(33, 9))), device), 'GH_MSG_FIELD_LENGTH', 'pe is 32 bytes');
  invalid('hello/missing-gw', 'parseHelloV2', await signSign1(edited(helloBytes, (m) => m.delete(6)), device), 'GH_MSG_MISSING_FIELD', 'gw is required in a v2 hello');

  valid('grant/valid', 'parseGrant', grantBytes, 'COSE_Sign1[sk_S, kid=kid_S]');
  invalid('grant/untagged', 'parseGrant', untag(grantBytes), 'GH_MSG_NOT_TAGGED', 'v2 COSE objects are always tagged');
  invalid('grant/with-exp', 'parseGrant', await signSign1(edited(grantBytes, (m) => m.set(12, exp)), backend), 'GH_MSG_UNKNOWN_FIELD', 'a grant has life, not exp');
  invalid('grant/negative-life', 'parseGrant', await signSign1(edited(grantBytes, (m) => m.set(25, -1)), backend), 'GH_MSG_FIELD_TYPE', 'life is a uint');

  valid('welcome/online', 'parseWelcomeV2', welcomeBytes, 'online: 19 grant, 25 life');
  valid('welcome/offline', 'parseWelcomeV2', offlineBytes, 'offline: 8 cred, 27 lease, 25 life');
  valid('down/welcome', 'decodeDownMessageV2', welcomeBytes, 'dispatch: tag 18');
  invalid('welcome/v2-on-v1', 'parseWelcome', welcomeBytes, 'GH_MSG_UNSUPPORTED_VERSION', 'a v2 welcome on a v1 decoder', 'unsupported-version');
  invalid('welcome/both', 'parseWelcomeV2', await signSign1(edited(welcomeBytes, (m) => m.set(8, credBytes).set(27, leaseBytes)), session), 'GH_MSG_WELCOME_SHAPE', 'exactly one of {19} or {8, 27}');
  invalid('welcome/neither', 'parseWelcomeV2', await signSign1(edited(welcomeBytes, (m) => m.delete(19)), session), 'GH_MSG_WELCOME_SHAPE', 'exactly one of {19} or {8, 27}');
  invalid('welcome/cred-without-lease', 'parseWelcomeV2', await signSign1(edited(offlineBytes, (m) => m.delete(27)), session), 'GH_MSG_WELCOME_SHAPE', 'offline needs both 8 and 27');
  invalid('welcome/missing-life', 'parseWelcomeV2', await signSign1(edited(welcomeBytes, (m) => m.delete(25)), session), 'GH_MSG_MISSING_FIELD', 'life is required');
  invalid('welcome/over-1280', 'parseWelcomeV2', await signSign1(edited(welcomeBytes, (m) => m.set(19, fill(1200, 1))), session), 'GH_MSG_TOO_LARGE', 'a v2 welcome is at most 1,280 bytes');

  const reject = { type: 'reject', version: 2, dev, hh, reason: 'not-allowed-here', retry: 60 } as const;
  valid('reject/signed', 'parseRejectV2', await signRejectV2(reject, session), 'as v1, with 2:2');
  valid('reject/unsigned', 'parseRejectV2', encodeUnsignedRejectV2({ type: 'reject', version: 2, dev, reason: 'backend-unavailable', retry: 30 }), 'unsigned, as v1');
  valid('down/reject', 'decodeDownMessageV2', await signRejectV2(reject, session), 'dispatch: tag 18, type reject');
  invalid('reject/bye-reason', 'parseRejectV2', encodeCbor(map([[1, 'reject'], [2, 2], [3, dev], [13, 'shutdown']])), 'GH_MSG_BAD_REASON', "the new reason codes are for bye only");

  valid('command/valid', 'parseCommand', commandBytes, 'COSE_Sign1[sk_S, kid=kid_S], body at most 800');
  invalid('command/body-801', 'parseCommand', await signCommand({ ...command, body: fill(801, 0x61) }, backend).catch(async () => signSign1(edited(commandBytes, (m) => m.set(22, fill(801, 0x61))), backend)), 'GH_MSG_BODY_TOO_LARGE', 'body at most 800 bytes');
  invalid('command/topic-wildcard', 'parseCommand', await signSign1(edited(commandBytes, (m) => m.set(21, `devices/${dev}/cmd/+`)), backend), 'GH_MSG_BAD_TOPIC', 'a topic name has no wildcards');
  invalid('command/topic-129-bytes', 'parseCommand', await signSign1(edited(commandBytes, (m) => m.set(21, 't'.repeat(129))), backend), 'GH_MSG_BAD_TOPIC', 'topic 1–128 bytes');
  invalid('command/exp-before-iat', 'parseCommand', await signSign1(edited(commandBytes, (m) => m.set(12, iat)), backend), 'GH_MSG_BAD_VALIDITY', 'exp after iat');
  invalid('command/over-1200', 'parseCommand', await signSign1(edited(commandBytes, (m) => m.set(22, fill(790, 0x61)).set(3, 'd'.repeat(64)).set(21, 't'.repeat(128)).set(7, fill(32, 7)).set(11, 2 ** 40).set(99, fill(160, 1))), backend), 'GH_MSG_TOO_LARGE', 'a command is at most 1,200 bytes');

  // --- key schedule ---------------------------------------------------------------------------
  const ks = deriveSessionKeys({ privateKey: pe.privateKey, peerPublic: ge.publicKey, hh, dev, gw });
  const keySchedule = {
    z: hex(ks.z),
    prk: hex(ks.prk),
    info: Object.fromEntries(Object.entries(ks.info).map(([k, v]) => [k, hex(v)])),
    kUp: hex(ks.kUp),
    ivUp: hex(ks.ivUp),
    kDn: hex(ks.kDn),
    ivDn: hex(ks.ivDn),
    sid: hex(ks.sid),
    aad: hex(frameAad(ks.sid)),
  };

  // --- frames ---------------------------------------------------------------------------------
  const frames: FrameV2Vector[] = [];
  const frame = (name: string, direction: FrameDirection, seq: number, p: FramePayload | Uint8Array, expect: FrameV2Vector['expect'], note: string, extra: Partial<FrameV2Vector> = {}): Uint8Array => {
    const k = directionKeys(ks, direction);
    const pt = p instanceof Uint8Array ? p : encodeFramePayload(p);
    const b = sealFramePlaintext(k, seq, pt);
    frames.push({ name, direction, received: [], seq, plaintext: hex(pt), nonce: hex(frameNonce(k.iv, seq)), hex: hex(b), expect, note, ...extra });
    return b;
  };
  const drop = (name: string, direction: FrameDirection, b: Uint8Array, code: string, note: string, received: number[] = []): void => {
    frames.push({ name, direction, received, seq: null, plaintext: null, nonce: null, hex: hex(b), expect: 'drop', code, note });
  };
  const topic = `devices/${dev}/temp`;
  const pub0 = frame('p2g/pub', 'p2g', 0, { type: 'pub', topic, body: utf8('21.5') }, 'frame', 'seq 0, piv h\'00\'');
  frame('p2g/pub-mid', 'p2g', 1, { type: 'pub', topic, body: utf8('21.6'), mid: 1 }, 'frame', 'with mid (30)');
  frame('p2g/ack', 'p2g', 2, { type: 'ack', cid: 7, status: 'done' }, 'frame', 'the outcome of command 7');
  frame('p2g/ping', 'p2g', 3, { type: 'ping' }, 'frame', 'proves the keys');
  frame('p2g/bye', 'p2g', 4, { type: 'bye' }, 'frame', 'P ends the session');
  frame('g2p/receipt', 'g2p', 0, { type: 'receipt', upto: 0 }, 'frame', 'settles P→G seq 0');
  frame('g2p/receipt-lists', 'g2p', 1, { type: 'receipt', upto: 9, denied: [5], busy: [7, 8], retry: 30, lost: [6] }, 'frame', 'denied, busy with retry, lost');
  frame('g2p/msg', 'g2p', 2, { type: 'msg', topic: `devices/${dev}/cmd/info`, body: utf8('hi') }, 'frame', 'a broker message the lease policy grants');
  frame('g2p/cmd', 'g2p', 3, { type: 'cmd', cmd: commandBytes }, 'frame', 'a command relayed unchanged');
  frame('g2p/ping', 'g2p', 4, { type: 'ping' }, 'frame', 'either way');
  frame('g2p/bye-shutdown', 'g2p', 5, { type: 'bye', reason: 'shutdown' }, 'frame', 'G stops');
  frame('p2g/seq-2^40-1', 'p2g', MAX_SEQ, { type: 'ping' }, 'frame', 'the last seq a sender may use: piv h\'ffffffffff\'');
  frame('p2g/seq-256', 'p2g', 256, { type: 'ping' }, 'frame', 'piv h\'0100\'');
  // Denied: decrypts, consumes its seq, plaintext not a valid frame payload.
  frame('p2g/denied-unknown-key', 'p2g', 5, encodeCbor(map([[1, 'pub'], [21, topic], [22, utf8('x')], [99, 0]])), 'denied', 'unknown key 99', { code: 'GH_MSG_UNKNOWN_FIELD' });
  frame('p2g/denied-unknown-type', 'p2g', 6, encodeCbor(map([[1, 'frob']])), 'denied', 'no such frame type', { code: 'GH_MSG_UNKNOWN_TYPE' });
  frame('p2g/denied-not-cbor', 'p2g', 7, Uint8Array.of(0xff, 0xfe, 0xfd), 'denied', 'not CBOR', { code: 'GH_CBOR_INDEFINITE' });
  frame('p2g/denied-body-1025', 'p2g', 8, encodeCbor(map([[1, 'pub'], [21, topic], [22, fill(1025, 0x78)]])), 'denied', 'pub body at most 1,024', { code: 'GH_MSG_BODY_TOO_LARGE' });
  frame('p2g/denied-topic-wildcard', 'p2g', 9, encodeCbor(map([[1, 'pub'], [21, 'devices/#'], [22, utf8('x')]])), 'denied', 'a topic name has no wildcards', { code: 'GH_MSG_BAD_TOPIC' });
  frame('p2g/denied-receipt-upstream', 'p2g', 10, encodeCbor(map([[1, 'receipt'], [20, 0]])), 'denied', 'receipts travel G→P only', { code: 'GH_FRAME_WRONG_DIRECTION' });
  frame('p2g/denied-version-key', 'p2g', 11, encodeCbor(map([[1, 'ping'], [2, 2]])), 'denied', 'frame plaintexts carry no version', { code: 'GH_MSG_UNKNOWN_FIELD' });
  frame('g2p/denied-retry-without-busy', 'g2p', 6, encodeCbor(map([[1, 'receipt'], [16, 5], [20, 0]])), 'denied', 'retry only with busy', { code: 'GH_MSG_BAD_RECEIPT' });
  frame('g2p/denied-unsorted-lost', 'g2p', 7, encodeCbor(map([[1, 'receipt'], [20, 9], [31, [4, 3]]])), 'denied', 'lists are sorted', { code: 'GH_MSG_BAD_SEQ_LIST' });
  frame('g2p/denied-lists-overlap', 'g2p', 8, encodeCbor(map([[1, 'receipt'], [20, 9], [28, [4]], [31, [4]]])), 'denied', 'lists are disjoint', { code: 'GH_MSG_BAD_RECEIPT' });
  frame('g2p/denied-list-above-upto', 'g2p', 9, encodeCbor(map([[1, 'receipt'], [20, 3], [31, [4]]])), 'denied', 'listed seqs are at most upto', { code: 'GH_MSG_BAD_RECEIPT' });
  // Drops.
  const pubHex = hex(pub0);
  const env = (decodeCbor(pub0, { maxBytes: 2048, topLevelTag: 16 }) as CborTag).value as CborValue[];
  const ct = env[2] as Uint8Array;
  const rebuild = (prot: CborValue, unprot: CborValue, c: CborValue = ct, tag = 16): Uint8Array => encodeCbor(new CborTag(tag, [prot, unprot, c]));
  drop('drop/replay', 'p2g', pub0, 'GH_FRAME_REPLAY', 'seq 0 already received', [0]);
  drop('drop/too-old', 'p2g', pub0, 'GH_FRAME_TOO_OLD', 'seq 0 is 64 below the highest (64)', [64]);
  drop('drop/tag-18', 'p2g', rebuild(env[0] as Uint8Array, env[1] as CborMap, ct, 18), 'GH_FRAME_NOT_TAG16', 'not tag 16');
  drop('drop/untagged', 'p2g', encodeCbor(env), 'GH_FRAME_NOT_TAG16', 'untagged');
  drop('drop/protected-empty-map', 'p2g', rebuild(Uint8Array.of(0xa0), env[1] as CborMap), 'GH_FRAME_PROTECTED', "protected other than h'a1010a'");
  drop('drop/protected-alg-1', 'p2g', rebuild(Uint8Array.of(0xa1, 0x01, 0x01), env[1] as CborMap), 'GH_FRAME_PROTECTED', 'alg 1 (A128GCM)');
  drop('drop/unprotected-extra-key', 'p2g', rebuild(env[0] as Uint8Array, map([[4, utf8('k')], [6, Uint8Array.of(0)]])), 'GH_FRAME_UNPROTECTED', 'unprotected exactly {6: piv}');
  drop('drop/unprotected-iv', 'p2g', rebuild(env[0] as Uint8Array, map([[5, fill(13, 0)]])), 'GH_FRAME_UNPROTECTED', 'a full IV instead of piv');
  drop('drop/piv-empty', 'p2g', rebuild(env[0] as Uint8Array, map([[6, new Uint8Array(0)]])), 'GH_FRAME_PIV', 'empty piv');
  drop('drop/piv-6-bytes', 'p2g', rebuild(env[0] as Uint8Array, map([[6, Uint8Array.of(1, 0, 0, 0, 0, 0)]])), 'GH_FRAME_PIV', 'piv over 5 bytes');
  drop('drop/piv-leading-zero', 'p2g', rebuild(env[0] as Uint8Array, map([[6, Uint8Array.of(0, 0)]])), 'GH_FRAME_PIV', "h'0000' for seq 0");
  drop('drop/piv-uint', 'p2g', rebuild(env[0] as Uint8Array, map([[6, 0]])), 'GH_FRAME_PIV', 'piv is a bstr');
  drop('drop/bit-flip', 'p2g', Buffer.from(pubHex.slice(0, -2) + (parseInt(pubHex.slice(-2), 16) ^ 1).toString(16).padStart(2, '0'), 'hex'), 'GH_FRAME_DECRYPT', 'last tag bit flipped');
  drop('drop/truncated-ciphertext', 'p2g', rebuild(env[0] as Uint8Array, env[1] as CborMap, ct.subarray(0, ct.length - 1)), 'GH_FRAME_DECRYPT', 'one byte short');
  drop('drop/truncated-bytes', 'p2g', pub0.subarray(0, pub0.length - 1), 'GH_FRAME_NOT_CBOR', 'the wire bytes cut short');
  drop('drop/wrong-direction-key', 'g2p', pub0, 'GH_FRAME_DECRYPT', 'a P→G frame sealed under k_up offered as G→P');
  drop('drop/too-large', 'p2g', rebuild(env[0] as Uint8Array, env[1] as CborMap, fill(1270, 0)), 'GH_FRAME_TOO_LARGE', 'over 1,280 bytes');

  // --- welcome checks -------------------------------------------------------------------------
  const welcomeChecks: WelcomeCheckV2Vector[] = [];
  const wc = (name: string, w: Uint8Array, expect: string, note: string, over: Partial<WelcomeCheckV2Vector> = {}): void => {
    welcomeChecks.push({ name, welcome: hex(w), now: null, allowOffline: null, expect, note, ...over });
  };
  wc('online-clockless', welcomeBytes, 'ok', 'no clock needed online', { mode: 'online', lifeSeconds: 43_200 });
  wc('offline-clock', offlineBytes, 'ok', 'allowed with a clock by default', { now: iat + 60, mode: 'offline', lifeSeconds: 3540 });
  wc('offline-clockless-default', offlineBytes, 'GH_WELCOME_OFFLINE_REFUSED', 'refused without a clock unless told', { check: 3 });
  wc('offline-clockless-allowed', offlineBytes, 'ok', 'allowed when told; no expiry checks', { allowOffline: true, mode: 'offline', lifeSeconds: 3600 });
  wc('offline-clock-refused', offlineBytes, 'GH_WELCOME_OFFLINE_REFUSED', 'refused when told so', { now: iat + 60, allowOffline: false, check: 3 });
  wc('offline-lease-expired', offlineBytes, 'GH_WELCOME_LEASE_EXPIRED', 'now == lease.exp', { now: leaseExp, check: 3 });
  wc('untagged', untag(welcomeBytes), 'GH_WELCOME_NOT_TAGGED', 'check 1: tagged', { check: 1 });
  wc('v1-welcome', await signSign1(edited(welcomeBytes, (m) => m.set(2, 1)), session), 'GH_WELCOME_VERSION', 'check 1: 2: 2', { check: 1 });
  wc('both-shapes', await signSign1(edited(welcomeBytes, (m) => m.set(8, credBytes).set(27, leaseBytes)), session), 'GH_WELCOME_SHAPE', 'check 1: exactly one of {19} or {8, 27}', { check: 1 });
  wc('dev-mismatch', await signWelcomeV2({ ...welcome, dev: 'sensor-0002' }, session), 'GH_WELCOME_DEV_MISMATCH', 'check 1: dev', { check: 1 });
  const gw2 = Ed25519Signer.fromSeed(fill(32, 0x5e), 'gw-lab-2');
  wc('gw-not-hello-gw', await signWelcomeV2({ ...welcome, gw: 'gw-lab-2' }, gw2), 'GH_WELCOME_HELLO_GW', 'check 1: gw of the hello', { check: 1 });
  wc('hh-mismatch', await signWelcomeV2({ ...welcome, hh: fill(32, 1) }, session), 'GH_WELCOME_HELLO_HASH', 'check 1: hh', { check: 1 });
  wc('grant-wrong-key', await signWelcomeV2({ ...welcome, grant: await signGrant(grant, attackerBackend) }, session), 'GH_WELCOME_GRANT_SIGNATURE', 'check 2: grant under pinned pk_S', { check: 2 });
  wc('grant-unknown-kid', await signWelcomeV2({ ...welcome, grant: await signGrant(grant, Ed25519Signer.fromSeed(fill(32, 0xb0), 'backend-9')) }, session), 'GH_WELCOME_GRANT_UNKNOWN_KID', 'check 2: kid picks the pinned key', { check: 2 });
  wc('grant-is-a-command', await signWelcomeV2({ ...welcome, grant: commandBytes }, session), 'GH_WELCOME_GRANT_TYPE', 'check 2: is a grant', { check: 2 });
  wc('grant-other-dev', await signWelcomeV2({ ...welcome, grant: await signGrant({ ...grant, dev: 'sensor-0002' }, backend) }, session), 'GH_WELCOME_GRANT_DEV', 'check 2: grant.dev', { check: 2 });
  wc('grant-other-gw', await signWelcomeV2({ ...welcome, grant: await signGrant({ ...grant, gw: 'gw-lab-2' }, backend) }, session), 'GH_WELCOME_GRANT_GW', 'check 2: grant.gw', { check: 2 });
  wc('grant-other-hh', await signWelcomeV2({ ...welcome, grant: await signGrant({ ...grant, hh: fill(32, 2) }, backend) }, session), 'GH_WELCOME_GRANT_HH', 'check 2: grant.hh', { check: 2 });
  wc('welcome-not-by-spk', await signWelcomeV2(welcome, Ed25519Signer.fromSeed(fill(32, 0xac), gw)), 'GH_WELCOME_SIGNATURE', 'check 2: welcome under grant.spk', { check: 2 });
  const otherDevice = Ed25519Signer.fromSeed(fill(32, 0xdf), dev);
  wc('lease-other-dpk', await signWelcomeV2({ ...offline, lease: await signLease({ type: 'lease', version: 1, dev, gw, dpk: otherDevice.publicKeyRaw, policy: { ...DEFAULT_POLICY }, iat, exp: leaseExp }, backend) }, session), 'GH_WELCOME_LEASE_DPK', 'check 3: lease.dpk', { now: iat + 60, check: 3 });
  wc('cred-expired', offlineBytes, 'GH_WELCOME_EXPIRED', 'check 3: now < cred.exp', { now: exp, allowOffline: true, check: 3 });

  // --- command checks -------------------------------------------------------------------------
  const commandChecks: CommandCheckV2Vector[] = [];
  const cc = (name: string, c: Uint8Array, expect: CommandCheckV2Vector['expect'], note: string, over: Partial<CommandCheckV2Vector> = {}): void => {
    commandChecks.push({ name, command: hex(c), hh: hex(hh), last: null, now: null, expect, note, ...over });
  };
  cc('execute', commandBytes, { action: 'execute', cid: 7 }, 'first command, clockless');
  cc('execute-clock', commandBytes, { action: 'execute', cid: 7 }, 'with a clock, before exp', { now: iat + 1, last: { cid: 6, status: 'done' } });
  cc('repeat-done', commandBytes, { action: 'repeat', cid: 7, status: 'done' }, 'same cid: stored status, no action', { last: { cid: 7, status: 'done' } });
  cc('repeat-other-session', commandBytes, { action: 'repeat', cid: 7, status: 'failed' }, 'same cid: hh and exp are not checked', { last: { cid: 7, status: 'failed' }, hh: hex(fill(32, 3)), now: exp });
  cc('refuse-old-cid', commandBytes, { action: 'refuse', cid: 7, code: 'GH_COMMAND_CID_OLD' }, 'cid not above the last', { last: { cid: 8, status: 'done' } });
  cc('refuse-other-hh', commandBytes, { action: 'refuse', cid: 7, code: 'GH_COMMAND_HH' }, "another session's hh", { hh: hex(fill(32, 3)) });
  cc('refuse-expired', commandBytes, { action: 'refuse', cid: 7, code: 'GH_COMMAND_EXPIRED' }, 'now == exp', { now: command.exp });
  cc('refuse-wrong-key', await signCommand(command, attackerBackend), { action: 'refuse', cid: 7, code: 'GH_COMMAND_SIGNATURE' }, 'not signed by the pinned pk_S (the gateway cannot forge one)');
  cc('refuse-gateway-signed', await signCommand(command, Ed25519Signer.fromSeed(fill(32, 0x5e), 'backend-1')), { action: 'refuse', cid: 7, code: 'GH_COMMAND_SIGNATURE' }, 'signed by the session key under kid_S');
  cc('refuse-other-dev', await signCommand({ ...command, dev: 'sensor-0002' }, backend), { action: 'refuse', cid: 7, code: 'GH_COMMAND_DEV' }, 'for another device');
  cc('refuse-not-cose', Uint8Array.of(0xa0), { action: 'refuse', cid: 0, code: 'GH_COMMAND_MALFORMED' }, 'cid does not decode: 0');
  cc('refuse-bad-cid', await signSign1(edited(commandBytes, (m) => m.set(23, 'seven')), backend), { action: 'refuse', cid: 0, code: 'GH_COMMAND_MALFORMED' }, 'cid not a uint: 0');
  cc('refuse-untagged', untag(commandBytes), { action: 'refuse', cid: 7, code: 'GH_COMMAND_MALFORMED' }, 'v2 COSE objects are tagged');

  // --- gateway hello checks -------------------------------------------------------------------
  const gatewayHelloChecks: GatewayHelloV2Vector[] = [];
  const gh = (name: string, h: Uint8Array, expect: string, note: string, issued: Uint8Array = ge.publicKey, z?: string): void => {
    gatewayHelloChecks.push({ name, hello: hex(h), issuedGe: hex(issued), expect, ...(z === undefined ? {} : { z }), note });
  };
  gh('ok', helloBytes, 'ok', 'Z = X25519(ge_priv, pe)', ge.publicKey, hex(ks.z));
  gh('other-gw', await signHelloV2({ ...hello, gw: 'gw-lab-2' }, device), 'GH_HELLO_GW_MISMATCH', 'hello.gw is this gateway');
  gh('other-ge', helloBytes, 'GH_HELLO_GE_MISMATCH', 'hello.ge is the ge issued with gn', fill(32, 9));
  gh('pe-zero', await signHelloV2({ ...hello, pe: new Uint8Array(32) }, device), 'GH_X25519_ALL_ZERO', 'pe = 0: Z all zero (RFC 7748 §6.1)');
  gh('pe-order-8', await signHelloV2({ ...hello, pe: Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex') }, device), 'GH_X25519_ALL_ZERO', 'a point of order 8: Z all zero');

  return {
    description:
      'protocol-v2 test vectors from fixed keys (Ed25519 seeds, fixed X25519 ephemeral private keys before clamping). Bytes are lowercase hex. ' +
      'messages: decode with the named decoder; invalid ones are refused with the reason and code. frames: open with a receiver for `direction` ' +
      'that has already received `received`: `frame` opens, `denied` decrypts but its plaintext is refused (code), `drop` is dropped (code). ' +
      'welcomeChecks, commandChecks, gatewayHelloChecks: the peripheral\'s and gateway\'s v2 checks, pinned key `backend` under kid backend-1.',
    generator: 'test/vectors/generate-v2.ts (npm run vectors)',
    keys,
    ephemeral: { ge: { privateKey: hex(gePriv), publicKey: hex(ge.publicKey) }, pe: { privateKey: hex(pePriv), publicKey: hex(pe.publicKey) } },
    inputs: { dev, gw, gn: hex(gn), pn: hex(pn), iat, exp, helloV2: hex(helloBytes), hh: hex(hh) },
    keySchedule,
    messages,
    frames,
    welcomeChecks,
    commandChecks,
    gatewayHelloChecks,
  };
}

/** The file's exact text. */
export async function renderVectorsV2(): Promise<string> {
  return renderJson(await generateVectorsV2());
}

await writeWhenRun(import.meta.url, VECTORS_V2_PATH, renderVectorsV2);
