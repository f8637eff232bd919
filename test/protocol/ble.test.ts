import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  BleFrameError,
  type BleFrameErrorCode,
  chunkPayloadSize,
  encodeChunk,
  frameMessage,
  maxChunkBytes,
  MAX_ATT_MTU,
  MAX_FRAMED_MESSAGE_BYTES,
  MAX_FRAMED_MESSAGE_BYTES_V2,
  MIN_ATT_MTU,
  Reassembler,
} from '../../protocol/ble.js';

function reassemble(chunks: Uint8Array[], mtu?: number): Uint8Array {
  const r = new Reassembler(mtu === undefined ? {} : { mtu });
  let out: Uint8Array | undefined;
  chunks.forEach((c, i) => {
    const m = r.push(c);
    if (i < chunks.length - 1) assert.equal(m, undefined, `message completed early at chunk ${i}`);
    else out = m;
  });
  assert.ok(out, 'no message after the last chunk');
  return out;
}

/** True when `err` is a framing error with the given code. */
function isBleError(err: unknown, code: BleFrameErrorCode): boolean {
  return err instanceof BleFrameError && err.code === code;
}

describe('protocol/ble chunk framing', () => {
  it('follows protocol-v1 to the byte at MTU 23: header then up to MTU-4 = 19 bytes', () => {
    const message = Uint8Array.from({ length: 40 }, (_, i) => i);
    const chunks = frameMessage(message, 23);
    assert.deepEqual(
      chunks.map((c) => [c[0], c.length]),
      [
        [0x00, 20],
        [0x01, 20],
        [0x82, 3],
      ],
    );
    assert.deepEqual(chunks[0]?.subarray(1), message.subarray(0, 19));
    assert.deepEqual(chunks[2]?.subarray(1), message.subarray(38));
    assert.equal(chunkPayloadSize(23), 19);
    assert.equal(maxChunkBytes(23), 20);
  });

  it('round-trips at every ATT MTU from 23 to 517, every chunk within MTU-3', () => {
    const message = randomBytes(MAX_FRAMED_MESSAGE_BYTES);
    for (let mtu = MIN_ATT_MTU; mtu <= MAX_ATT_MTU; mtu++) {
      const chunks = frameMessage(message, mtu);
      for (const c of chunks) assert.ok(c.length <= mtu - 3 && c.length <= 512, `chunk of ${c.length} at MTU ${mtu}`);
      assert.equal(chunks.length, Math.ceil(message.length / chunkPayloadSize(mtu)));
      assert.deepEqual(reassemble(chunks, mtu), new Uint8Array(message));
    }
  });

  it('round-trips short messages, including a single chunk and the empty message', () => {
    for (const len of [0, 1, 18, 19, 20, 38, 300]) {
      const message = randomBytes(len);
      assert.deepEqual(reassemble(frameMessage(message, 23)), new Uint8Array(message));
    }
    assert.deepEqual(frameMessage(new Uint8Array(0), 23), [Uint8Array.of(0x80)]);
  });

  it('wraps the chunk index at 128 and keeps reassembling', () => {
    const message = randomBytes(300);
    const chunks = frameMessage(message, 23, { payloadSize: 1 });
    assert.equal(chunks.length, 300);
    assert.equal(chunks[127]?.[0], 127);
    assert.equal(chunks[128]?.[0], 0);
    assert.equal(chunks[129]?.[0], 1);
    assert.equal(chunks[299]?.[0], 0x80 | (299 % 128));
    assert.deepEqual(reassemble(chunks, 23), new Uint8Array(message));
  });

  it('aborts on a gap in the indices, and stays aborted', () => {
    const chunks = frameMessage(randomBytes(100), 23);
    const r = new Reassembler({ mtu: 23 });
    r.push(chunks[0]!);
    assert.throws(() => r.push(chunks[2]!), (e) => isBleError(e, 'GH_BLE_FRAME_GAP'));
    assert.ok(isBleError(r.aborted, 'GH_BLE_FRAME_GAP'));
    assert.throws(() => r.push(chunks[1]!), (e) => isBleError(e, 'GH_BLE_FRAME_UNEXPECTED'));
    r.reset();
    const results = chunks.map((c) => r.push(c));
    assert.equal(results.at(-1)?.length, 100);
  });

  it('aborts when the first chunk is not index 0, or an index repeats', () => {
    assert.throws(() => new Reassembler().push(encodeChunk(1, true, Uint8Array.of(1))), (e) => isBleError(e, 'GH_BLE_FRAME_GAP'));
    const r = new Reassembler();
    r.push(encodeChunk(0, false, Uint8Array.of(1)));
    assert.throws(() => r.push(encodeChunk(0, true, Uint8Array.of(1))), (e) => isBleError(e, 'GH_BLE_FRAME_GAP'));
  });

  it('aborts a message over 1024 bytes before buffering it', () => {
    const r = new Reassembler({ mtu: 247 });
    const payload = new Uint8Array(chunkPayloadSize(247));
    let index = 0;
    let err: unknown;
    try {
      for (; index < 10; index++) r.push(encodeChunk(index, false, payload));
    } catch (e) {
      err = e;
    }
    assert.ok(isBleError(err, 'GH_BLE_FRAME_OVERSIZE'));
    assert.equal(index, Math.floor(MAX_FRAMED_MESSAGE_BYTES / payload.length));
    assert.equal(r.bufferedBytes, 0);
  });

  it('accepts exactly 1024 bytes and refuses to frame 1025', () => {
    assert.equal(reassemble(frameMessage(new Uint8Array(1024), 23)).length, 1024);
    assert.throws(() => frameMessage(new Uint8Array(1025), 23), (e) => isBleError(e, 'GH_BLE_FRAME_OVERSIZE'));
  });

  it('aborts a chunk longer than MTU-3 and an empty chunk', () => {
    assert.throws(() => new Reassembler({ mtu: 23 }).push(new Uint8Array(21)), (e) => isBleError(e, 'GH_BLE_FRAME_INVALID'));
    assert.throws(() => new Reassembler().push(new Uint8Array(0)), (e) => isBleError(e, 'GH_BLE_FRAME_INVALID'));
  });

  it('bounds the number of empty chunks in one message', () => {
    const r = new Reassembler({ maxMessageBytes: 4 });
    for (let i = 0; i < 5; i++) r.push(encodeChunk(i, false, new Uint8Array(0)));
    assert.throws(() => r.push(encodeChunk(5, false, new Uint8Array(0))), (e) => isBleError(e, 'GH_BLE_FRAME_INVALID'));
  });

  it('is reusable message after message, and copies the chunk bytes', () => {
    const r = new Reassembler();
    const chunk = encodeChunk(0, true, Uint8Array.of(7, 8));
    const first = r.push(chunk);
    chunk.fill(0);
    assert.deepEqual(first, Uint8Array.of(7, 8));
    assert.deepEqual(r.push(encodeChunk(0, true, Uint8Array.of(9))), Uint8Array.of(9));
  });

  it('rejects MTUs and payload sizes out of range', () => {
    assert.throws(() => frameMessage(new Uint8Array(1), 22), RangeError);
    assert.throws(() => frameMessage(new Uint8Array(1), 518), RangeError);
    assert.throws(() => frameMessage(new Uint8Array(1), 23, { payloadSize: 20 }), RangeError);
    // protocol-v2's bound (1,280) is the largest a reassembler may be given.
    assert.throws(() => new Reassembler({ maxMessageBytes: MAX_FRAMED_MESSAGE_BYTES_V2 + 1 }), RangeError);
  });
});
