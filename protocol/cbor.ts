/**
 * Deterministic CBOR (RFC 8949) for protocol-v1: a small encoder that always produces the
 * §4.2.1 core deterministic encoding, and a strict, bounded decoder that accepts only that
 * encoding. The data model is deliberately narrow: integers (safe range), byte strings, text
 * strings, arrays, maps keyed by integers or text, and tag 18 at the top level (COSE_Sign1).
 * Floats, simple values (false/true/null/undefined), indefinite lengths and other tags are
 * refused, because no protocol-v1 message uses them.
 */
import { ProtocolError, type ProtocolErrorCode } from './errors.js';

/** Maximum size of any protocol-v1 message (protocol-v1 "Encoding"). */
export const MAX_MESSAGE_BYTES = 1024;
/** Default nesting limit: the deepest protocol-v1 structure (tag, array, map, map, array) is 5. */
export const DEFAULT_MAX_DEPTH = 8;
/** The only tag protocol-v1 uses: COSE_Sign1 (RFC 9052 §2). */
export const COSE_SIGN1_TAG = 18;

/** A tagged item. Only tag 18 at the top level survives decoding. */
export class CborTag {
  constructor(
    readonly tag: number,
    readonly value: CborValue,
  ) {}
}

export type CborKey = number | string;
export type CborMap = Map<CborKey, CborValue>;
export type CborValue = number | string | Uint8Array | CborValue[] | CborMap | CborTag;

export type CborErrorCode = Extract<ProtocolErrorCode, `GH_CBOR_${string}`>;

/** A CBOR encoding or decoding failure. Always carries reason `malformed`. */
export class CborError extends ProtocolError {
  declare readonly code: CborErrorCode;

  constructor(code: CborErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, 'malformed', message, options);
  }
}

export interface DecodeOptions {
  /** Refuse inputs larger than this many bytes (default {@link MAX_MESSAGE_BYTES}). */
  maxBytes?: number;
  /** Refuse nesting deeper than this (default {@link DEFAULT_MAX_DEPTH}). */
  maxDepth?: number;
  /** Accept a tag around the top-level item (default true). Tags anywhere else are always refused. */
  allowTopLevelTag?: boolean;
  /**
   * The one tag accepted around the top-level item (default 18, COSE_Sign1). protocol-v2 frames
   * pass 16 (COSE_Encrypt0); any other tag number stays refused.
   */
  topLevelTag?: number;
}

const MT_UINT = 0;
const MT_NINT = 1;
const MT_BSTR = 2;
const MT_TSTR = 3;
const MT_ARRAY = 4;
const MT_MAP = 5;
const MT_TAG = 6;
const MT_SIMPLE = 7;

const utf8Encoder = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// fatal: refuse invalid UTF-8; ignoreBOM: keep a leading U+FEFF instead of silently dropping it.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/** Scratch buffers above this size are not kept for the next encoding. */
const SINK_KEEP_BYTES = 16 * 1024;

class ByteSink {
  #buf = new Uint8Array(256);
  #len = 0;

  /** Empty again, for the next encoding (a grown buffer is dropped, not kept). */
  reset(): void {
    this.#len = 0;
    if (this.#buf.length > SINK_KEEP_BYTES) this.#buf = new Uint8Array(256);
  }

  /** Text as UTF-8; ASCII (ids, message types) is copied without TextEncoder's allocation. */
  utf8(text: string): void {
    const n = text.length;
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (text.charCodeAt(i) > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (!ascii) {
      const b = utf8Encoder.encode(text);
      writeHead(this, MT_TSTR, b.length);
      this.bytes(b);
      return;
    }
    writeHead(this, MT_TSTR, n);
    this.#reserve(n);
    for (let i = 0; i < n; i++) this.#buf[this.#len + i] = text.charCodeAt(i);
    this.#len += n;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  byte(b: number): void {
    this.#reserve(1);
    this.#buf[this.#len++] = b;
  }

  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  result(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

// RFC 8949 §4.2.1: arguments in their shortest form.
function writeHead(out: ByteSink, major: number, arg: number): void {
  const mt = major << 5;
  if (arg < 24) {
    out.byte(mt | arg);
  } else if (arg <= 0xff) {
    out.byte(mt | 24);
    out.byte(arg);
  } else if (arg <= 0xffff) {
    out.byte(mt | 25);
    out.byte(arg >>> 8);
    out.byte(arg & 0xff);
  } else if (arg <= 0xffffffff) {
    out.byte(mt | 26);
    out.byte((arg >>> 24) & 0xff);
    out.byte((arg >>> 16) & 0xff);
    out.byte((arg >>> 8) & 0xff);
    out.byte(arg & 0xff);
  } else {
    out.byte(mt | 27);
    const hi = Math.floor(arg / 0x100000000);
    const lo = arg >>> 0;
    for (const word of [hi, lo]) {
      out.byte((word >>> 24) & 0xff);
      out.byte((word >>> 16) & 0xff);
      out.byte((word >>> 8) & 0xff);
      out.byte(word & 0xff);
    }
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function encodeInto(out: ByteSink, v: CborValue, depth: number): void {
  if (depth > 64) throw new CborError('GH_CBOR_TOO_DEEP', 'value nests too deeply to encode');
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) {
      throw new CborError('GH_CBOR_UNSUPPORTED_TYPE', `cannot encode ${v}: only safe integers are supported`);
    }
    if (v >= 0) writeHead(out, MT_UINT, v);
    else writeHead(out, MT_NINT, -1 - v);
  } else if (typeof v === 'string') {
    // TextEncoder would silently turn a lone surrogate into U+FFFD: refuse instead.
    if (LONE_SURROGATE.test(v)) throw new CborError('GH_CBOR_UTF8', 'text contains a lone UTF-16 surrogate');
    out.utf8(v);
  } else if (v instanceof Uint8Array) {
    writeHead(out, MT_BSTR, v.length);
    out.bytes(v);
  } else if (Array.isArray(v)) {
    writeHead(out, MT_ARRAY, v.length);
    for (const item of v) encodeInto(out, item, depth + 1);
  } else if (v instanceof Map) {
    // RFC 8949 §4.2.1: keys sorted by the bytewise lexicographic order of their encodings.
    const entries = [...v.entries()].map(([k, val]) => {
      if (typeof k !== 'number' && typeof k !== 'string') {
        throw new CborError('GH_CBOR_UNSUPPORTED_TYPE', 'map keys must be integers or text');
      }
      return { key: encodeKey(k), val };
    });
    entries.sort((a, b) => compareBytes(a.key, b.key));
    for (let i = 1; i < entries.length; i++) {
      if (compareBytes((entries[i - 1] as { key: Uint8Array }).key, (entries[i] as { key: Uint8Array }).key) === 0) {
        throw new CborError('GH_CBOR_DUPLICATE_KEY', 'map has duplicate keys');
      }
    }
    writeHead(out, MT_MAP, entries.length);
    for (const e of entries) {
      out.bytes(e.key);
      encodeInto(out, e.val, depth + 1);
    }
  } else if (v instanceof CborTag) {
    if (!Number.isSafeInteger(v.tag) || v.tag < 0) throw new CborError('GH_CBOR_UNSUPPORTED_TYPE', 'bad tag number');
    writeHead(out, MT_TAG, v.tag);
    encodeInto(out, v.value, depth + 1);
  } else {
    throw new CborError('GH_CBOR_UNSUPPORTED_TYPE', `cannot encode a value of type ${typeof v}`);
  }
}

/**
 * Encode a value in the RFC 8949 §4.2.1 core deterministic encoding: shortest-form arguments,
 * definite lengths, map keys sorted bytewise by their encodings. Throws {@link CborError} for
 * values outside the data model (non-integers, unsafe integers, duplicate keys).
 */
export function encodeCbor(v: CborValue): Uint8Array {
  // One scratch sink serves every encoding (they never interleave: encoding is synchronous);
  // a nested call, should one happen, gets its own. Allocating a fresh buffer per call was
  // half of the encoder's time.
  const out = spareSink ?? new ByteSink();
  spareSink = undefined;
  try {
    encodeInto(out, v, 0);
    return out.result();
  } finally {
    out.reset();
    spareSink = out;
  }
}

let spareSink: ByteSink | undefined = new ByteSink();

/** The encodings of the integer keys -24…23 (one byte each): protocol-v1's maps use these. */
const SMALL_INT_KEYS = new Map<number, Uint8Array>(
  Array.from({ length: 48 }, (_, i) => {
    const k = i - 24;
    return [k, Uint8Array.of(k >= 0 ? (MT_UINT << 5) | k : (MT_NINT << 5) | (-1 - k))] as const;
  }),
);

function encodeKey(k: number | string): Uint8Array {
  return (typeof k === 'number' ? SMALL_INT_KEYS.get(k) : undefined) ?? encodeCbor(k);
}

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

/** Bytewise comparison of two byte strings (negative, zero, positive). */
export { compareBytes };
