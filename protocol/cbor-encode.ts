/** The deterministic CBOR encoder (RFC 8949 §4.2.1). */
import { CborTag, CborError, MT_UINT, MT_NINT, MT_BSTR, MT_TSTR, MT_ARRAY, MT_MAP, MT_TAG, utf8Encoder, LONE_SURROGATE, compareBytes, type CborValue } from './cbor-core.js';

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
