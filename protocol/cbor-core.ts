/**
 * Deterministic CBOR (RFC 8949) for protocol-v1, the shared part of protocol/cbor-encode.ts and
 * protocol/cbor-decode.ts (protocol/cbor.ts is the module to import): a small encoder that always produces the
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

/** CBOR major types (RFC 8949 §3.1). */
export const MT_UINT = 0;
export const MT_NINT = 1;
export const MT_BSTR = 2;
export const MT_TSTR = 3;
export const MT_ARRAY = 4;
export const MT_MAP = 5;
export const MT_TAG = 6;
export const MT_SIMPLE = 7;

export const utf8Encoder = new TextEncoder();
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// fatal: refuse invalid UTF-8; ignoreBOM: keep a leading U+FEFF instead of silently dropping it.
export const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytewise comparison of two byte strings (negative, zero, positive). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
