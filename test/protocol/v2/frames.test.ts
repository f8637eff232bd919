import assert from 'node:assert/strict';
import { CborTag, decodeCbor, encodeCbor, ProtocolError, type CborValue } from '../../../protocol/index.js';
import {
  deriveSessionKeys,
  directionKeys,
  encodeFramePayload,
  FrameReceiver,
  FrameSender,
  generateX25519KeyPair,
  MAX_DROPS,
  MAX_SEQ,
  sealFrame,
  sealFramePlaintext,
  x25519SharedSecret,
  type DirectionKeys,
  type FrameResult,
} from '../../../protocol/v2/index.js';

const dev = 'sensor-0001';
const gw = 'gw-lab-1';
const hh = new Uint8Array(32).fill(7);

function sessionKeys(): { up: DirectionKeys; dn: DirectionKeys } {
  const a = generateX25519KeyPair();
  const b = generateX25519KeyPair();
  const k = deriveSessionKeys({ privateKey: a.privateKey, peerPublic: b.publicKey, hh, dev, gw });
  return { up: directionKeys(k, 'p2g'), dn: directionKeys(k, 'g2p') };
}

function dropCode(r: FrameResult): string {
  assert.equal(r.kind, 'drop', JSON.stringify(r));
  return r.kind === 'drop' ? r.code : '';
}

/** The frame's three items, to rebuild it with one part changed. */
function parts(frame: Uint8Array): CborValue[] {
  return (decodeCbor(frame, { maxBytes: 2048, topLevelTag: 16 }) as CborTag).value as CborValue[];
}
const rebuild = (p: CborValue[], tag = 16): Uint8Array => encodeCbor(new CborTag(tag, p));

describe('protocol v2: frame receiving drop rules', () => {
  const { up, dn } = sessionKeys();
  const ping = { type: 'ping' } as const;
  const frame0 = sealFrame(up, 0, ping);
  const fresh = (): FrameReceiver => new FrameReceiver(up, 'p2g');

  it('accepts a well-formed frame', () => {
    const r = fresh().open(frame0);
    assert.ok(r.kind === 'frame' && r.seq === 0 && r.payload.type === 'ping');
  });
  it('drops anything that is not tag 16 (tag 18, untagged, a bare map)', () => {
    assert.equal(dropCode(fresh().open(rebuild(parts(frame0), 18))), 'GH_FRAME_NOT_TAG16');
    assert.equal(dropCode(fresh().open(encodeCbor(parts(frame0)))), 'GH_FRAME_NOT_TAG16');
    assert.equal(dropCode(fresh().open(encodeFramePayload(ping))), 'GH_FRAME_NOT_TAG16');
  });
  it("drops a protected header other than exactly h'a1010a'", () => {
    const p = parts(frame0);
    for (const prot of [Uint8Array.of(0xa0), new Uint8Array(0), Uint8Array.of(0xa1, 0x01, 0x01), Uint8Array.of(0xa2, 0x01, 0x0a, 0x04, 0x40)]) {
      assert.equal(dropCode(fresh().open(rebuild([prot, p[1] as CborValue, p[2] as CborValue]))), 'GH_FRAME_PROTECTED');
    }
  });
  it('drops an unprotected map with an extra key', () => {
    const p = parts(frame0);
    const unprot = new Map<number, CborValue>([[4, Uint8Array.of(1)], [6, Uint8Array.of(0)]]);
    assert.equal(dropCode(fresh().open(rebuild([p[0] as CborValue, unprot, p[2] as CborValue]))), 'GH_FRAME_UNPROTECTED');
  });
  it('drops an empty piv, a 6-byte piv and a piv with a leading zero', () => {
    const p = parts(frame0);
    for (const piv of [new Uint8Array(0), Uint8Array.of(1, 0, 0, 0, 0, 0), Uint8Array.of(0, 0), Uint8Array.of(0, 1)]) {
      assert.equal(dropCode(fresh().open(rebuild([p[0] as CborValue, new Map([[6, piv]]), p[2] as CborValue]))), 'GH_FRAME_PIV');
    }
  });
  it('drops a frame with one bit flipped anywhere in its ciphertext or tag', () => {
    const ct = parts(frame0)[2] as Uint8Array;
    for (let i = 0; i < ct.length; i++) {
      const bad = Uint8Array.from(ct, (b, j) => (j === i ? b ^ 0x10 : b));
      assert.equal(dropCode(fresh().open(rebuild([Uint8Array.of(0xa1, 1, 10), new Map([[6, Uint8Array.of(0)]]), bad]))), 'GH_FRAME_DECRYPT');
    }
  });
  it('drops a frame whose piv was changed (the nonce no longer matches)', () => {
    const p = parts(frame0);
    assert.equal(dropCode(fresh().open(rebuild([p[0] as CborValue, new Map([[6, Uint8Array.of(1)]]), p[2] as CborValue]))), 'GH_FRAME_DECRYPT');
  });
  it('drops a truncated frame (wire bytes and ciphertext)', () => {
    assert.equal(dropCode(fresh().open(frame0.subarray(0, frame0.length - 1))), 'GH_FRAME_NOT_CBOR');
    const p = parts(frame0);
    assert.equal(dropCode(fresh().open(rebuild([p[0] as CborValue, p[1] as CborValue, (p[2] as Uint8Array).subarray(0, 7)]))), 'GH_FRAME_DECRYPT');
  });
  it('drops a frame sealed under another key (the other direction, another session)', () => {
    assert.equal(dropCode(new FrameReceiver(dn, 'g2p').open(frame0)), 'GH_FRAME_DECRYPT');
    assert.equal(dropCode(new FrameReceiver(sessionKeys().up, 'p2g').open(frame0)), 'GH_FRAME_DECRYPT');
  });
  it('drops a replay', () => {
    const rx = fresh();
    assert.equal(rx.open(frame0).kind, 'frame');
    assert.equal(dropCode(rx.open(frame0)), 'GH_FRAME_REPLAY');
  });
  it('accepts a reordered frame inside the window once, then drops its copy', () => {
    const rx = fresh();
    const f = [0, 1, 2, 3].map((s) => sealFrame(up, s, ping));
    for (const i of [0, 3, 1]) assert.equal(rx.open(f[i] as Uint8Array).kind, 'frame');
    assert.equal(rx.open(f[2] as Uint8Array).kind, 'frame');
    assert.equal(dropCode(rx.open(f[2] as Uint8Array)), 'GH_FRAME_REPLAY');
    assert.equal(dropCode(rx.open(f[1] as Uint8Array)), 'GH_FRAME_REPLAY');
  });
  it('drops a seq 64 or more below the highest received; 63 below is still inside the window', () => {
    const rx = fresh();
    assert.equal(rx.open(sealFrame(up, 100, ping)).kind, 'frame');
    assert.equal(dropCode(rx.open(sealFrame(up, 36, ping))), 'GH_FRAME_TOO_OLD');
    assert.equal(rx.open(sealFrame(up, 37, ping)).kind, 'frame');
  });
  it('a seq settled as lost counts as received: its late copy is dropped', () => {
    const rx = fresh();
    assert.equal(rx.open(sealFrame(up, 1, ping)).kind, 'frame');
    rx.settleLost(0);
    assert.equal(dropCode(rx.open(frame0)), 'GH_FRAME_REPLAY');
  });
  it('seq near 2^40: 2^40 − 1 is sealed with a 5-byte piv and opens; the sender refuses to go past it', () => {
    const tx = FrameSender.startingAt(up, MAX_SEQ - 1);
    const a = tx.seal(ping);
    const b = tx.seal(ping);
    assert.equal(b.seq, MAX_SEQ);
    assert.ok(tx.exhausted);
    assert.throws(() => tx.seal(ping), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_FRAME_SEQ_EXHAUSTED');
    const rx = fresh();
    assert.equal(rx.open(a.bytes).kind, 'frame');
    const r = rx.open(b.bytes);
    assert.ok(r.kind === 'frame' && r.seq === MAX_SEQ);
    assert.deepEqual(parts(b.bytes)[1], new Map([[6, Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff)]]));
  });
  it('drops a frame over 1,280 bytes; refuses to seal a plaintext over 1,264', () => {
    const p = parts(frame0);
    assert.equal(dropCode(fresh().open(rebuild([p[0] as CborValue, p[1] as CborValue, new Uint8Array(1270)]))), 'GH_FRAME_TOO_LARGE');
    assert.throws(() => sealFramePlaintext(up, 0, new Uint8Array(1265)), (e: unknown) => e instanceof ProtocolError);
    const big = { type: 'pub', topic: 't', body: new Uint8Array(1024) } as const;
    assert.ok(sealFrame(up, 0, big).length <= 1280);
  });
  it('a plaintext that is not a valid frame payload is denied, not dropped, and consumes its seq', () => {
    const rx = fresh();
    const f = sealFramePlaintext(up, 0, Uint8Array.of(0xa1, 0x01, 0x64, 0x66, 0x72, 0x6f, 0x62));
    const r = rx.open(f);
    assert.ok(r.kind === 'denied' && r.error.code === 'GH_MSG_UNKNOWN_TYPE');
    assert.equal(rx.drops, 0);
    assert.equal(dropCode(rx.open(f)), 'GH_FRAME_REPLAY');
  });
  it(`reports the drop limit at the ${MAX_DROPS}th drop`, () => {
    const rx = fresh();
    let last: FrameResult | undefined;
    for (let i = 0; i < MAX_DROPS; i++) {
      last = rx.open(Uint8Array.of(0xa0));
      assert.ok(last.kind === 'drop' && last.limitReached === (i === MAX_DROPS - 1));
    }
    assert.equal(rx.drops, MAX_DROPS);
  });
  it('an all-zero X25519 point is refused (RFC 7748 §6.1)', () => {
    const a = generateX25519KeyPair();
    assert.throws(() => x25519SharedSecret(a.privateKey, new Uint8Array(32)), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_X25519_ALL_ZERO' && e.reason === 'malformed');
    assert.throws(() => x25519SharedSecret(a.privateKey, new Uint8Array(31)), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_X25519_BAD_KEY');
  });
});
