import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { MqttFrameGuard, type FrameViolation } from '../../../../daemon/transports/mqtt/frame-guard.js';

/** Feeds `bytes` to a guard over a stand-in socket, `chunk` bytes at a time. */
async function run(bytes: number[], chunk: number, maxPacketBytes = 300): Promise<{ passed: number[]; violations: FrameViolation[]; socketDestroyed: boolean }> {
  const socket = new PassThrough();
  const violations: FrameViolation[] = [];
  const guard = new MqttFrameGuard(socket, { maxPacketBytes, onViolation: (v) => violations.push(v) });
  const passed: number[] = [];
  guard.on('data', (d: Buffer) => passed.push(...d));
  guard.on('error', () => undefined);
  for (let i = 0; i < bytes.length && !socket.destroyed; i += chunk) {
    socket.emit('data', Buffer.from(bytes.slice(i, i + chunk)));
    // Let what was pushed reach the 'data' listener before the next chunk.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { passed, violations, socketDestroyed: socket.destroyed };
}

const connect = [0x10, 0x03, 1, 2, 3];
// PUBLISH with a two-byte remaining length of 200 (0xc8 0x01).
const publish200 = [0x32, 0xc8, 0x01, ...new Array<number>(200).fill(7)];
const pingreq = [0xc0, 0x00];

describe('daemon/transports/mqtt MqttFrameGuard (no TCP)', () => {
  it('passes valid packets through unchanged however the bytes are split', async () => {
    const stream = [...connect, ...publish200, ...pingreq, ...publish200];
    for (const chunk of [1, 2, 3, 7, 64, stream.length]) {
      const r = await run(stream, chunk);
      assert.deepEqual(r.violations, [], `chunk ${chunk}`);
      assert.equal(r.passed.length, stream.length, `chunk ${chunk}`);
    }
  });

  it('refuses a first packet that is not CONNECT', async () => {
    const r = await run([...pingreq, ...connect], 1);
    assert.deepEqual(r.violations, ['first-packet-not-connect']);
    assert.equal(r.passed.length, 0);
    assert.ok(r.socketDestroyed);
  });

  it('refuses a packet whose header announces more than the maximum, as soon as the length says so', async () => {
    const r = await run([...connect, 0x30, 0xff, 0xff, 0xff, 0x7f, ...new Array<number>(50).fill(0)], 1);
    assert.deepEqual(r.violations, ['packet-too-large']);
    // The CONNECT, the type byte and the first length byte (127 so far, within the limit) went
    // through; the second length byte gives it away: not one byte of the body passed.
    assert.equal(r.passed.length, connect.length + 2);
  });

  it('refuses fixed headers a client may not send: reserved flags, server packets, bodies on PINGREQ/DISCONNECT, PUBLISH QoS 3', async () => {
    for (const bad of [[0xc0, 0x01, 0x00], [0xe0, 0x02, 0, 0], [0x80, 0x02, 0, 1], [0x20, 0x02, 0, 0], [0x00, 0x00], [0xf0, 0x00], [0x36, 0x02, 0, 0], [0x40, 0x03, 0, 1, 2]]) {
      const r = await run([...connect, ...bad], 1);
      assert.deepEqual(r.violations, ['bad-fixed-header'], JSON.stringify(bad));
      // The type byte went through; the length byte that gives it away did not, nor any body.
      assert.equal(r.passed.length, connect.length + 1, JSON.stringify(bad));
      assert.ok(r.socketDestroyed);
    }
    // The legitimate ones pass.
    const ok = [...connect, 0x82, 0x04, 0, 1, 0, 0, 0x40, 0x02, 0, 1, 0x62, 0x02, 0, 1, 0xa2, 0x03, 0, 1, 0, 0xc0, 0x00, 0xe0, 0x00];
    assert.deepEqual((await run(ok, 3)).violations, []);
  });

  it('refuses a remaining length of more than four bytes', async () => {
    const r = await run([...connect, 0x30, 0x80, 0x80, 0x80, 0x80, 0x01], 1, 1 << 30);
    assert.deepEqual(r.violations, ['bad-remaining-length']);
  });

  it('accepts a packet of exactly the maximum size and refuses one byte more', async () => {
    const body = (n: number): number[] => [0x30, n & 0x7f | 0x80, n >> 7, ...new Array<number>(n).fill(1)];
    // 3 header bytes + 297 = 300.
    assert.deepEqual((await run([...connect, ...body(297)], 16)).violations, []);
    assert.deepEqual((await run([...connect, ...body(298)], 16)).violations, ['packet-too-large']);
  });
});
