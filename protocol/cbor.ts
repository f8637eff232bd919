/**
 * Deterministic CBOR (RFC 8949) for the protocol: a small encoder that always produces the
 * §4.2.1 core deterministic encoding (cbor-encode.ts), and a strict, bounded decoder that accepts
 * only that encoding (cbor-decode.ts); the data model and errors in cbor-core.ts.
 */
export {
  MAX_MESSAGE_BYTES,
  DEFAULT_MAX_DEPTH,
  COSE_SIGN1_TAG,
  CborTag,
  CborError,
  compareBytes,
  type CborErrorCode,
  type CborKey,
  type CborMap,
  type CborValue,
  type DecodeOptions,
} from './cbor-core.js';
export { encodeCbor } from './cbor-encode.js';
export { decodeCbor } from './cbor-decode.js';
