/** The strict, bounded deterministic CBOR decoder. */
import { MAX_MESSAGE_BYTES, DEFAULT_MAX_DEPTH, COSE_SIGN1_TAG, CborTag, CborError, MT_UINT, MT_NINT, MT_BSTR, MT_TSTR, MT_ARRAY, MT_MAP, MT_TAG, MT_SIMPLE, utf8Decoder, compareBytes, type CborValue, type CborMap, type DecodeOptions, type CborErrorCode } from './cbor-core.js';

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly maxDepth: number,
    readonly allowTopLevelTag: boolean,
    readonly topLevelTag: number = COSE_SIGN1_TAG,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  fail(code: CborErrorCode, what: string): never {
    throw new CborError(code, `${what} (at byte ${this.pos})`);
  }

  u8(): number {
    const b = this.buf[this.pos];
    if (b === undefined) this.fail('GH_CBOR_TRUNCATED', 'input ends in the middle of an item');
    this.pos++;
    return b;
  }

  /** Reads the argument of a head, refusing indefinite lengths and non-shortest forms. */
  argument(info: number, major: number): number {
    if (info < 24) return info;
    let value: number;
    let min: number;
    switch (info) {
      case 24:
        value = this.u8();
        min = 24;
        break;
      case 25:
        value = this.u8() * 0x100 + this.u8();
        min = 0x100;
        break;
      case 26:
        value = this.u8() * 0x1000000 + this.u8() * 0x10000 + this.u8() * 0x100 + this.u8();
        min = 0x10000;
        break;
      case 27: {
        const hi = this.u8() * 0x1000000 + this.u8() * 0x10000 + this.u8() * 0x100 + this.u8();
        const lo = this.u8() * 0x1000000 + this.u8() * 0x10000 + this.u8() * 0x100 + this.u8();
        // Anything above 2^53 - 1 is beyond what this profile needs (and what a JS number holds).
        if (hi > 0x1fffff) this.fail('GH_CBOR_INT_RANGE', 'integer or length exceeds 2^53 - 1');
        value = hi * 0x100000000 + lo;
        min = 0x100000000;
        break;
      }
      case 31:
        // RFC 8949 §4.2.1: deterministic encoding uses definite lengths only.
        this.pos--;
        if (major === MT_SIMPLE) this.fail('GH_CBOR_INDEFINITE', 'unexpected "break" byte (indefinite-length item)');
        this.fail('GH_CBOR_INDEFINITE', 'indefinite-length items are not accepted');
        break;
      default:
        this.pos--;
        this.fail('GH_CBOR_RESERVED', `reserved additional information value ${info}`);
    }
    if (value < min) this.fail('GH_CBOR_NON_SHORTEST', 'argument not in its shortest form (RFC 8949 §4.2.1)');
    return value;
  }

  item(depth: number): CborValue {
    if (depth > this.maxDepth) this.fail('GH_CBOR_TOO_DEEP', `nesting deeper than ${this.maxDepth}`);
    const start = this.pos;
    const initial = this.u8();
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (major === MT_SIMPLE) {
      this.pos = start;
      if (info === 31) this.fail('GH_CBOR_INDEFINITE', 'unexpected "break" byte (indefinite-length item)');
      if (info >= 25 && info <= 27) this.fail('GH_CBOR_FLOAT', 'floating-point values are not accepted');
      this.fail('GH_CBOR_SIMPLE', 'simple values (false, true, null, undefined, …) are not accepted');
    }
    const arg = this.argument(info, major);
    switch (major) {
      case MT_UINT:
        return arg;
      case MT_NINT:
        if (arg > Number.MAX_SAFE_INTEGER - 1) this.fail('GH_CBOR_INT_RANGE', 'negative integer below -(2^53 - 1)');
        return -1 - arg;
      case MT_BSTR:
      case MT_TSTR: {
        // Check the declared length against what is left before touching memory.
        if (arg > this.remaining) this.fail('GH_CBOR_LENGTH', `declared length ${arg} exceeds the ${this.remaining} bytes left`);
        const bytes = this.buf.subarray(this.pos, this.pos + arg);
        this.pos += arg;
        if (major === MT_BSTR) return bytes.slice();
        try {
          return utf8Decoder.decode(bytes);
        } catch (cause) {
          this.pos = start;
          throw new CborError('GH_CBOR_UTF8', `text string is not valid UTF-8 (at byte ${start})`, { cause });
        }
      }
      case MT_ARRAY: {
        // Every item takes at least one byte: a larger count cannot be honest.
        if (arg > this.remaining) this.fail('GH_CBOR_LENGTH', `declared array length ${arg} exceeds the ${this.remaining} bytes left`);
        const out: CborValue[] = [];
        for (let i = 0; i < arg; i++) out.push(this.item(depth + 1));
        return out;
      }
      case MT_MAP: {
        if (arg * 2 > this.remaining) this.fail('GH_CBOR_LENGTH', `declared map size ${arg} exceeds the ${this.remaining} bytes left`);
        const out: CborMap = new Map();
        let prevKey: Uint8Array | undefined;
        for (let i = 0; i < arg; i++) {
          const keyStart = this.pos;
          const key = this.item(depth + 1);
          if (typeof key !== 'number' && typeof key !== 'string') {
            this.pos = keyStart;
            this.fail('GH_CBOR_MAP_KEY_TYPE', 'map keys must be integers or text strings');
          }
          const keyBytes = this.buf.subarray(keyStart, this.pos);
          if (prevKey !== undefined) {
            const order = compareBytes(prevKey, keyBytes);
            if (order === 0) {
              this.pos = keyStart;
              this.fail('GH_CBOR_DUPLICATE_KEY', `duplicate map key ${JSON.stringify(key)}`);
            }
            if (order > 0) {
              this.pos = keyStart;
              this.fail('GH_CBOR_UNSORTED_KEYS', 'map keys not in deterministic order (RFC 8949 §4.2.1)');
            }
          }
          prevKey = keyBytes;
          out.set(key, this.item(depth + 1));
        }
        return out;
      }
      case MT_TAG:
        // protocol-v1 "Encoding": the only tag is 18, and only around the whole message.
        if (arg !== this.topLevelTag) {
          this.pos = start;
          this.fail('GH_CBOR_TAG', this.topLevelTag === COSE_SIGN1_TAG ? `tag ${arg} is not accepted (only tag 18, COSE_Sign1)` : `tag ${arg} is not accepted (only tag ${this.topLevelTag})`);
        }
        if (depth !== 0 || !this.allowTopLevelTag) {
          this.pos = start;
          this.fail('GH_CBOR_TAG', `tag ${arg} is only accepted around the top-level item`);
        }
        return new CborTag(arg, this.item(depth + 1));
      default:
        return this.fail('GH_CBOR_RESERVED', 'unknown major type');
    }
  }
}

/**
 * Decode exactly one deterministically encoded CBOR item. Refuses (with a {@link CborError}
 * whose `code` says why) anything larger than `maxBytes`, indefinite lengths, non-shortest
 * arguments, unsorted or duplicate map keys, non-integer/non-text map keys, tags other than a
 * top-level 18, floats and simple values, invalid UTF-8, nesting beyond `maxDepth`, declared
 * lengths beyond the input, and trailing bytes.
 */
export function decodeCbor(bytes: Uint8Array, opts: DecodeOptions = {}): CborValue {
  const maxBytes = opts.maxBytes ?? MAX_MESSAGE_BYTES;
  if (!(bytes instanceof Uint8Array)) throw new CborError('GH_CBOR_INPUT', 'input must be a Uint8Array');
  if (bytes.length > maxBytes) {
    throw new CborError('GH_CBOR_TOO_LARGE', `input of ${bytes.length} bytes exceeds the ${maxBytes}-byte limit`);
  }
  if (bytes.length === 0) throw new CborError('GH_CBOR_TRUNCATED', 'input is empty');
  // A plain Uint8Array view: on a Buffer, slice() would return a view into the caller's
  // (possibly reused) memory instead of a copy.
  const view = Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(view, opts.maxDepth ?? DEFAULT_MAX_DEPTH, opts.allowTopLevelTag ?? true, opts.topLevelTag ?? COSE_SIGN1_TAG);
  const value = r.item(0);
  if (r.remaining !== 0) r.fail('GH_CBOR_TRAILING_BYTES', `${r.remaining} trailing bytes after the item`);
  return value;
}
