import assert from 'node:assert/strict';
import { decodeDownMessage, decodeUpMessage, Ed25519Signer, encodeCbor, ProtocolError, type CborMap } from '../../../protocol/index.js';
import {
  decodeDownMessageV2,
  decodeFramePayload,
  decodeUpMessageV2,
  encodeFramePayload,
  generateX25519KeyPair,
  parseCommand,
  sealFrame,
  signCommand,
  signHelloV2,
  type FramePayload,
} from '../../../protocol/v2/index.js';

const refused = (code: string) => (e: unknown) => e instanceof ProtocolError && e.code === code;
const dev = 'sensor-0001';

describe('protocol v2: messages and frame payloads', () => {
  const device = Ed25519Signer.fromSeed(new Uint8Array(32).fill(0xde), dev);
  const keys = { key: new Uint8Array(16).fill(1), iv: new Uint8Array(13).fill(2), sid: new Uint8Array(8).fill(3) };

  it('a v2 hello and a frame are refused by the v1 dispatchers; a v1 message by the v2 ones', async () => {
    const hello = await signHelloV2({ type: 'hello', version: 2, dev, pn: new Uint8Array(16), gn: new Uint8Array(16), gw: 'gw-1', ge: generateX25519KeyPair().publicKey, pe: generateX25519KeyPair().publicKey }, device);
    assert.throws(() => decodeUpMessage(hello), refused('GH_MSG_UNSUPPORTED_VERSION'));
    const frame = sealFrame(keys, 0, { type: 'ping' });
    assert.throws(() => decodeUpMessage(frame), refused('GH_CBOR_TAG'));
    assert.throws(() => decodeDownMessage(frame), refused('GH_CBOR_TAG'));
    assert.equal(decodeUpMessageV2(frame).type, 'frame');
    assert.equal(decodeDownMessageV2(frame).type, 'frame');
    const v1cr = encodeCbor(new Map<number, string | number>([[1, 'challenge-request'], [2, 1], [3, dev]]));
    assert.throws(() => decodeUpMessageV2(v1cr), refused('GH_MSG_UNSUPPORTED_VERSION'));
  });

  it('round-trips every frame payload type', () => {
    const all: FramePayload[] = [
      { type: 'pub', topic: 'devices/x/t', body: Uint8Array.of(1), mid: 3 },
      { type: 'ack', cid: 9, status: 'refused' },
      { type: 'ping' },
      { type: 'receipt', upto: 10, denied: [2], busy: [4, 5], retry: 1, lost: [9] },
      { type: 'msg', topic: 'a/b', body: new Uint8Array(0) },
      { type: 'cmd', cmd: Uint8Array.of(0xd2) },
      { type: 'bye', reason: 'idle' },
    ];
    for (const p of all) assert.deepEqual(decodeFramePayload(encodeFramePayload(p)), p);
  });

  it('refuses topics with wildcards, NUL, 0 or 129 bytes, and a 1,025-byte body, both ways', () => {
    for (const topic of ['a/+', 'a/#', 'a\u0000b', '', 'é'.repeat(65)]) {
      assert.throws(() => encodeFramePayload({ type: 'pub', topic, body: Uint8Array.of(1) }), refused('GH_MSG_BAD_TOPIC'), topic);
    }
    assert.ok(encodeFramePayload({ type: 'pub', topic: 'é'.repeat(64), body: new Uint8Array(1024) }).length > 1024);
    assert.throws(() => encodeFramePayload({ type: 'pub', topic: 't', body: new Uint8Array(1025) }), refused('GH_MSG_BODY_TOO_LARGE'));
    const m: CborMap = new Map<number, string | Uint8Array>([[1, 'msg'], [21, 't'], [22, new Uint8Array(1025)]]);
    assert.throws(() => decodeFramePayload(encodeCbor(m)), refused('GH_MSG_BODY_TOO_LARGE'));
  });

  it('a receipt: retry exactly with busy, lists sorted, disjoint, not above upto, not empty', () => {
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 5, busy: [1] }), refused('GH_MSG_BAD_RECEIPT'));
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 5, retry: 3 }), refused('GH_MSG_BAD_RECEIPT'));
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 5, lost: [3, 2] }), refused('GH_MSG_BAD_SEQ_LIST'));
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 5, lost: [] }), refused('GH_MSG_BAD_SEQ_LIST'));
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 5, lost: [2], denied: [2] }), refused('GH_MSG_BAD_RECEIPT'));
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 5, lost: [6] }), refused('GH_MSG_BAD_RECEIPT'));
    assert.throws(() => encodeFramePayload({ type: 'receipt', upto: 2 ** 40 }), refused('GH_MSG_FIELD_TYPE'));
  });

  it('a frame type travelling the wrong way is refused (denied)', () => {
    assert.throws(() => decodeFramePayload(encodeFramePayload({ type: 'receipt', upto: 1 }), 'p2g'), refused('GH_FRAME_WRONG_DIRECTION'));
    assert.throws(() => decodeFramePayload(encodeFramePayload({ type: 'pub', topic: 't', body: Uint8Array.of(1) }), 'g2p'), refused('GH_FRAME_WRONG_DIRECTION'));
    assert.throws(() => decodeFramePayload(encodeFramePayload({ type: 'ack', cid: 1, status: 'done' }), 'g2p'), refused('GH_FRAME_WRONG_DIRECTION'));
  });

  it('a command over 1,200 bytes is refused, and so is a body over 800', async () => {
    const backend = Ed25519Signer.fromSeed(new Uint8Array(32).fill(0xb0), 'b'.repeat(64));
    const base = { type: 'command', version: 2, dev: 'd'.repeat(64), hh: new Uint8Array(32), cid: 2 ** 40, topic: 't'.repeat(100), iat: 2 ** 40, exp: 2 ** 41 } as const;
    const ok = await signCommand({ ...base, body: new Uint8Array(800) }, backend);
    assert.equal(ok.length, 1195);
    assert.equal(parseCommand(ok).payload.body.length, 800);
    await assert.rejects(signCommand({ ...base, body: new Uint8Array(801) }, backend), refused('GH_MSG_BODY_TOO_LARGE'));
    // Every field at its own maximum does not fit: the backend must keep the whole under 1,200.
    await assert.rejects(signCommand({ ...base, topic: 't'.repeat(128), body: new Uint8Array(800) }, backend), refused('GH_MSG_TOO_LARGE'));
    const over = Uint8Array.from([...ok.subarray(0, ok.length), 0]);
    assert.throws(() => parseCommand(over), refused('GH_CBOR_TRAILING_BYTES'));
  });
});
