import assert from 'node:assert/strict';
import { CborError, CborTag, decodeCbor, encodeCbor, type CborValue } from '../../protocol/index.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function refuses(input: string | Uint8Array, code: string, opts?: Parameters<typeof decodeCbor>[1]): void {
  const bytes = typeof input === 'string' ? hex(input) : input;
  assert.throws(
    () => decodeCbor(bytes, opts),
    (e: unknown) => e instanceof CborError && e.code === code && e.reason === 'malformed',
    `expected ${code} for ${typeof input === 'string' ? input : '<bytes>'}`,
  );
}

describe('protocol/cbor', () => {
  describe('encodeCbor (RFC 8949 §4.2.1 deterministic)', () => {
    // RFC 8949 Appendix A examples within our data model.
    const cases: [CborValue, string][] = [
      [0, '00'],
      [23, '17'],
      [24, '1818'],
      [255, '18ff'],
      [256, '190100'],
      [65535, '19ffff'],
      [65536, '1a00010000'],
      [4294967295, '1affffffff'],
      [4294967296, '1b0000000100000000'],
      [Number.MAX_SAFE_INTEGER, '1b001fffffffffffff'],
      [-1, '20'],
      [-24, '37'],
      [-25, '3818'],
      [-1000, '3903e7'],
      ['', '60'],
      ['IETF', '6449455446'],
      ['\u00fc', '62c3bc'],
      [new Uint8Array(0), '40'],
      [hex('01020304'), '4401020304'],
      [[], '80'],
      [[1, [2, 3], [4, 5]], '8301820203820405'],
      [new CborTag(18, [1]), 'd28101'],
    ];
    for (const [value, expected] of cases) {
      it(`encodes ${expected}`, () => {
        assert.equal(toHex(encodeCbor(value)), expected);
        assert.deepEqual(decodeCbor(hex(expected)), value);
      });
    }

    it('sorts map keys bytewise by their encodings', () => {
      const m = new Map<number | string, CborValue>([
        ['sub', 1],
        [16, 2],
        [-1, 3],
        ['pub', 4],
        [1, 5],
      ]);
      // 01 < 10 < 20 < 63707562 < 63737562
      assert.equal(toHex(encodeCbor(m)), 'a5' + '0105' + '1002' + '2003' + '63707562' + '04' + '63737562' + '01');
    });

    it('gives each encoding its own bytes: a later one (large, small, failed) leaves earlier results alone', () => {
      const small = encodeCbor(new Map<number | string, CborValue>([[1, 'hello'], [-24, 'é'], [24, 'x']]));
      // keys in bytewise order of their encodings: 01 < 1818 < 37
      assert.equal(toHex(small), 'a3' + '01' + '6568656c6c6f' + '1818' + '6178' + '37' + '62c3a9');
      const big = encodeCbor(new Uint8Array(40_000).fill(7));
      assert.throws(() => encodeCbor([1, 'a\ud800']), CborError);
      const again = encodeCbor(new Map<number | string, CborValue>([[1, 'hello'], [-24, 'é'], [24, 'x']]));
      assert.deepEqual(again, small);
      assert.notEqual(again.buffer, small.buffer);
      assert.equal(big.length, 3 + 40_000);
      assert.ok(big.subarray(3).every((b) => b === 7));
      assert.equal(toHex(encodeCbor(-0)), '00');
    });

    it('refuses values outside the data model', () => {
      for (const v of [1.5, NaN, 2 ** 60, true, null, undefined, { a: 1 }, 'a\ud800', '\udc00b']) {
        assert.throws(() => encodeCbor(v as unknown as CborValue), CborError);
      }
    });
  });

  it('decodes byte strings as copies, also from a Buffer', () => {
    const input = Buffer.from('824201024103', 'hex');
    const v = decodeCbor(input) as Uint8Array[];
    input.fill(0);
    assert.deepEqual(v, [hex('0102'), hex('03')]);
    assert.equal(Object.getPrototypeOf(v[0]), Uint8Array.prototype);
  });

  describe('decodeCbor strictness', () => {
    it('refuses non-shortest arguments', () => {
      refuses('1817', 'GH_CBOR_NON_SHORTEST');
      refuses('190017', 'GH_CBOR_NON_SHORTEST');
      refuses('1a0000ffff', 'GH_CBOR_NON_SHORTEST');
      refuses('1b00000000ffffffff', 'GH_CBOR_NON_SHORTEST');
      refuses('5801ff', 'GH_CBOR_NON_SHORTEST');
      refuses('980100', 'GH_CBOR_NON_SHORTEST');
      refuses('d81281', 'GH_CBOR_NON_SHORTEST');
    });
    it('refuses indefinite lengths and stray breaks', () => {
      refuses('5f41004100ff', 'GH_CBOR_INDEFINITE');
      refuses('7f6161ff', 'GH_CBOR_INDEFINITE');
      refuses('9f01ff', 'GH_CBOR_INDEFINITE');
      refuses('bf0101ff', 'GH_CBOR_INDEFINITE');
      refuses('ff', 'GH_CBOR_INDEFINITE');
    });
    it('refuses reserved additional information', () => {
      refuses('1c', 'GH_CBOR_RESERVED');
      refuses('5d', 'GH_CBOR_RESERVED');
    });
    it('refuses duplicate and unsorted map keys', () => {
      refuses('a201010101', 'GH_CBOR_DUPLICATE_KEY');
      refuses('a202010101', 'GH_CBOR_UNSORTED_KEYS');
      // Length-first (RFC 7049 canonical) order would put -1 (20) before 24 (1818); bytewise does not.
      refuses('a2' + '2001' + '181801', 'GH_CBOR_UNSORTED_KEYS');
      assert.doesNotThrow(() => decodeCbor(hex('a2' + '181801' + '2001')));
    });
    it('refuses map keys that are not integers or text', () => {
      refuses('a1410001', 'GH_CBOR_MAP_KEY_TYPE');
      refuses('a18001', 'GH_CBOR_MAP_KEY_TYPE');
    });
    it('refuses trailing bytes and truncation', () => {
      refuses('0000', 'GH_CBOR_TRAILING_BYTES');
      refuses('', 'GH_CBOR_TRUNCATED');
      refuses('19ff', 'GH_CBOR_TRUNCATED');
      refuses('8218ff', 'GH_CBOR_TRUNCATED');
      refuses('8201', 'GH_CBOR_LENGTH');
    });
    it('refuses declared lengths beyond the input before allocating', () => {
      refuses('5a ffffffff', 'GH_CBOR_LENGTH');
      refuses('9a ffffffff', 'GH_CBOR_LENGTH');
      refuses('ba 7fffffff', 'GH_CBOR_LENGTH');
      refuses('5b 001fffffffffffff', 'GH_CBOR_LENGTH');
      refuses('5b ffffffffffffffff', 'GH_CBOR_INT_RANGE');
    });
    it('refuses tags other than a top-level 18', () => {
      refuses('c11a514b67b0', 'GH_CBOR_TAG');
      refuses('d903e68100', 'GH_CBOR_TAG');
      refuses('81d28100', 'GH_CBOR_TAG');
      refuses('d2d28100', 'GH_CBOR_TAG');
      refuses('d28100', 'GH_CBOR_TAG', { allowTopLevelTag: false });
    });
    it('refuses floats and simple values', () => {
      refuses('f4', 'GH_CBOR_SIMPLE');
      refuses('f5', 'GH_CBOR_SIMPLE');
      refuses('f6', 'GH_CBOR_SIMPLE');
      refuses('f7', 'GH_CBOR_SIMPLE');
      refuses('f820', 'GH_CBOR_SIMPLE');
      refuses('f93c00', 'GH_CBOR_FLOAT');
      refuses('fa47c35000', 'GH_CBOR_FLOAT');
      refuses('fb3ff199999999999a', 'GH_CBOR_FLOAT');
    });
    it('refuses invalid UTF-8, but keeps a BOM', () => {
      refuses('62c328', 'GH_CBOR_UTF8');
      refuses('63eda080', 'GH_CBOR_UTF8'); // UTF-16 surrogate
      refuses('62c0af', 'GH_CBOR_UTF8'); // overlong
      assert.equal(decodeCbor(hex('63efbbbf')), '\ufeff');
    });
    it('refuses integers beyond the safe range', () => {
      refuses('1b0020000000000000', 'GH_CBOR_INT_RANGE');
      refuses('3b001fffffffffffff', 'GH_CBOR_INT_RANGE');
      assert.equal(decodeCbor(hex('3b001ffffffffffffe')), -Number.MAX_SAFE_INTEGER);
    });
    it('refuses input over 1024 bytes and nesting over the depth limit', () => {
      const big = new Uint8Array(1025);
      big.set(hex('5a000003fc'));
      refuses(big, 'GH_CBOR_TOO_LARGE');
      refuses('81'.repeat(9) + '00', 'GH_CBOR_TOO_DEEP');
      assert.doesNotThrow(() => decodeCbor(hex('81'.repeat(8) + '00')));
    });
  });
});
