import assert from 'node:assert/strict';
import { CborError, decodeCbor, decodeSign1, decodeUpMessage, ProtocolError } from '../../protocol/index.js';

/** Bytes the process holds outside V8's heap plus heap in use: what a bomb would inflate. */
function footprint(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function refusedCheaply(input: Uint8Array, opts: Parameters<typeof decodeCbor>[1], code: string): void {
  const before = footprint();
  let caught: unknown;
  try {
    decodeCbor(input, opts);
  } catch (e) {
    caught = e;
  }
  const grew = footprint() - before;
  assert.ok(caught instanceof CborError, `expected a CborError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  // A decoder that allocated what the header declares would grow by gigabytes.
  assert.ok(grew < 16 * 1024 * 1024, `memory grew by ${grew} bytes`);
}

describe('protocol: CBOR bombs are refused without large allocations', () => {
  // The 1024-byte message limit stops big inputs first; these also run with the limit lifted
  // to show the decoder itself is bounded.
  const unlimited = { maxBytes: 1 << 30 };

  it('9A FFFFFFFF: an array claiming 2^32-1 items', () => {
    const bomb = Uint8Array.of(0x9a, 0xff, 0xff, 0xff, 0xff);
    refusedCheaply(bomb, {}, 'GH_CBOR_LENGTH');
    refusedCheaply(bomb, unlimited, 'GH_CBOR_LENGTH');
    assert.throws(() => decodeUpMessage(bomb), ProtocolError);
    assert.throws(() => decodeSign1(bomb), ProtocolError);
  });

  it('byte strings, text strings and maps claiming huge lengths', () => {
    refusedCheaply(Uint8Array.of(0x5a, 0xff, 0xff, 0xff, 0xff), unlimited, 'GH_CBOR_LENGTH');
    refusedCheaply(Uint8Array.of(0x7a, 0xff, 0xff, 0xff, 0xff, 0x61), unlimited, 'GH_CBOR_LENGTH');
    refusedCheaply(Uint8Array.of(0xba, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x01), unlimited, 'GH_CBOR_LENGTH');
    refusedCheaply(Uint8Array.of(0x5b, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), unlimited, 'GH_CBOR_LENGTH');
    refusedCheaply(Uint8Array.of(0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), unlimited, 'GH_CBOR_INT_RANGE');
    // Nested arrays each claiming the maximum the remaining input could hold.
    refusedCheaply(Uint8Array.of(0x98, 0xff, 0x98, 0xff, 0x98, 0xff), unlimited, 'GH_CBOR_LENGTH');
  });

  it('200,000 nested 81 (arrays of one)', () => {
    const nested = new Uint8Array(200_001).fill(0x81);
    nested[200_000] = 0x00;
    refusedCheaply(nested, {}, 'GH_CBOR_TOO_LARGE');
    refusedCheaply(nested, unlimited, 'GH_CBOR_TOO_DEEP');
    refusedCheaply(nested, { ...unlimited, maxDepth: 100 }, 'GH_CBOR_TOO_DEEP');
    assert.throws(() => decodeUpMessage(nested), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_MSG_TOO_LARGE');
  });

  it('chained indefinite-length items', () => {
    for (const head of [0x9f, 0xbf, 0x5f, 0x7f]) {
      const chain = new Uint8Array(200_000).fill(head);
      refusedCheaply(chain, unlimited, 'GH_CBOR_INDEFINITE');
      refusedCheaply(chain.subarray(0, 1000), {}, 'GH_CBOR_INDEFINITE');
    }
    // An indefinite item hidden inside definite ones.
    refusedCheaply(Uint8Array.of(0x81, 0x81, 0x9f, 0x9f, 0x9f, 0xff, 0xff, 0xff), {}, 'GH_CBOR_INDEFINITE');
    // Alternating definite and indefinite heads, and a stream of breaks.
    const alternating = new Uint8Array(100_000).map((_, i) => (i % 2 === 0 ? 0x81 : 0x9f));
    refusedCheaply(alternating, unlimited, 'GH_CBOR_INDEFINITE');
    refusedCheaply(new Uint8Array(100_000).fill(0xff), unlimited, 'GH_CBOR_INDEFINITE');
  });

  it('many small items filling the limit still decode within bounds', () => {
    // 1 array head + 1021 one-byte items: legal and bounded, not a bomb.
    const wide = new Uint8Array(1024);
    wide.set([0x99, 0x03, 0xfd]);
    const v = decodeCbor(wide);
    assert.ok(Array.isArray(v) && v.length === 1021);
  });
});
