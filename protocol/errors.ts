/**
 * Protocol errors: a message or signature failed a protocol check.
 */
import { CodedError } from '../common/errors.js';
import type { ReasonCode } from './reasons.js';

/**
 * Every stable code a `ProtocolError` (and its subclass `CborError`) is thrown with. A new
 * protocol version adds its codes here, each with a one-line comment.
 */
export type ProtocolErrorCode =
  // CBOR (RFC 8949 deterministic subset): all reason `malformed`.
  /** The input is not a Uint8Array. */
  | 'GH_CBOR_INPUT'
  /** The input exceeds the decoder's size bound. */
  | 'GH_CBOR_TOO_LARGE'
  /** The input ends in the middle of an item. */
  | 'GH_CBOR_TRUNCATED'
  /** Bytes follow the top-level item. */
  | 'GH_CBOR_TRAILING_BYTES'
  /** A declared length exceeds the bytes left. */
  | 'GH_CBOR_LENGTH'
  /** An integer or length beyond 2^53 − 1. */
  | 'GH_CBOR_INT_RANGE'
  /** A reserved additional-information value (28–30). */
  | 'GH_CBOR_RESERVED'
  /** An argument not in its shortest form. */
  | 'GH_CBOR_NON_SHORTEST'
  /** An indefinite-length item or a stray "break". */
  | 'GH_CBOR_INDEFINITE'
  /** A floating-point value. */
  | 'GH_CBOR_FLOAT'
  /** A simple value (false, true, null, undefined, …). */
  | 'GH_CBOR_SIMPLE'
  /** A tag other than COSE_Sign1 (18) at the top level. */
  | 'GH_CBOR_TAG'
  /** A map key that is neither an integer nor a text string. */
  | 'GH_CBOR_MAP_KEY_TYPE'
  /** Map keys not in deterministic order. */
  | 'GH_CBOR_UNSORTED_KEYS'
  /** A map key appears twice. */
  | 'GH_CBOR_DUPLICATE_KEY'
  /** Nesting beyond the depth bound. */
  | 'GH_CBOR_TOO_DEEP'
  /** Text that is not valid UTF-8 (or, encoding, a lone surrogate). */
  | 'GH_CBOR_UTF8'
  /** A value the encoder does not support (unsafe integer, float, …). */
  | 'GH_CBOR_UNSUPPORTED_TYPE'
  // COSE_Sign1 (RFC 9052).
  /** Not an array of 4 items of the right types. */
  | 'GH_COSE_STRUCTURE'
  /** The protected header is not an acceptable map or holds a label not allowed. */
  | 'GH_COSE_HEADER'
  /** A `crit` header: no extension is understood. */
  | 'GH_COSE_CRIT'
  /** No `alg` in the protected header. */
  | 'GH_COSE_MISSING_ALG'
  /** An `alg` other than EdDSA (-8) or ES256 (-7). */
  | 'GH_COSE_UNSUPPORTED_ALG'
  /** A signer's kid outside 1–64 characters of [A-Za-z0-9._:-] (reason `internal`). */
  | 'GH_COSE_BAD_KID'
  /** A signer returned a signature of the wrong length (reason `internal`). */
  | 'GH_COSE_SIGNATURE_LENGTH'
  // Keys.
  /** An unacceptable Ed25519 public key (wrong length, small order, …). */
  | 'GH_CRYPTO_BAD_PUBLIC_KEY'
  /** An Ed25519 seed that is not 32 bytes (reason `internal`). */
  | 'GH_CRYPTO_BAD_SEED'
  /** A KeyObject of the wrong type or curve (reason `internal`). */
  | 'GH_CRYPTO_KEY_TYPE'
  // Messages (protocol-v1 payloads).
  /** The message is not a Uint8Array. */
  | 'GH_MSG_INPUT'
  /** The message exceeds MAX_MESSAGE_BYTES. */
  | 'GH_MSG_TOO_LARGE'
  /** Neither a CBOR map nor a COSE_Sign1. */
  | 'GH_MSG_NOT_A_MESSAGE'
  /** A message that must be signed (a hello) came unsigned. */
  | 'GH_MSG_NOT_SIGNED'
  /** The payload is not a CBOR map. */
  | 'GH_MSG_NOT_MAP'
  /** A required field is missing. */
  | 'GH_MSG_MISSING_FIELD'
  /** A field of the wrong CBOR type. */
  | 'GH_MSG_FIELD_TYPE'
  /** A byte-string field of the wrong length. */
  | 'GH_MSG_FIELD_LENGTH'
  /** A key this message type does not have. */
  | 'GH_MSG_UNKNOWN_FIELD'
  /** An unknown message type. */
  | 'GH_MSG_UNKNOWN_TYPE'
  /** Another message type than the one expected. */
  | 'GH_MSG_WRONG_TYPE'
  /** A protocol version other than 1 (reason `unsupported-version`). */
  | 'GH_MSG_UNSUPPORTED_VERSION'
  /** An id (dev, gw) outside 1–64 characters of [A-Za-z0-9._:-]. */
  | 'GH_MSG_BAD_ID'
  /** A public key field that is not an acceptable key. */
  | 'GH_MSG_BAD_KEY'
  /** A policy that is not {"pub": [...], "sub": [...]} of acceptable topic filters. */
  | 'GH_MSG_BAD_POLICY'
  /** An unknown reason code. */
  | 'GH_MSG_BAD_REASON'
  /** exp not later than iat. */
  | 'GH_MSG_BAD_VALIDITY'
  /** Signed with an algorithm this message type does not allow. */
  | 'GH_MSG_WRONG_ALG'
  /** The kid does not match the key expected. */
  | 'GH_MSG_KID_MISMATCH'
  // The peripheral side (peripherals/reference).
  /** A peripheral's own id is invalid or not its signer's kid (reason `internal`). */
  | 'GH_PERIPHERAL_BAD_DEV'
  /** A challenge for another device than this peripheral. */
  | 'GH_PERIPHERAL_WRONG_DEV'
  | ProtocolV2ErrorCode;

/** Codes of protocol v2 (protocol/v2/, the reference peripheral's v2 session). */
export type ProtocolV2ErrorCode =
  // Primitives.
  /** An X25519 key that is not 32 bytes. */
  | 'GH_X25519_BAD_KEY'
  /** X25519 gave the all-zero shared secret (RFC 7748 §6.1): a small-order peer key. */
  | 'GH_X25519_ALL_ZERO'
  /** HKDF input out of range (a length or label the key schedule never uses). */
  | 'GH_KDF_INPUT'
  /** AES-CCM key, nonce or tag of the wrong size. */
  | 'GH_AEAD_INPUT'
  /** AES-CCM authentication failed. */
  | 'GH_AEAD_DECRYPT'
  // Messages and frame payloads.
  /** A v2 COSE object that is not tagged (v2 objects always are). */
  | 'GH_MSG_NOT_TAGGED'
  /** A welcome with other than exactly one of {grant} or {cred, lease}. */
  | 'GH_MSG_WELCOME_SHAPE'
  /** A receipt's lists are not sorted, disjoint, or above nothing. */
  | 'GH_MSG_BAD_SEQ_LIST'
  /** A topic with a wildcard or NUL, empty, or over 128 bytes. */
  | 'GH_MSG_BAD_TOPIC'
  /** A body over its bound (1,024 for pub and msg, 800 for a command). */
  | 'GH_MSG_BODY_TOO_LARGE'
  /** An ack status other than done, failed or refused. */
  | 'GH_MSG_BAD_STATUS'
  /** A receipt that breaks its rules (busy without retry, lists not sorted or not disjoint). */
  | 'GH_MSG_BAD_RECEIPT'
  /** A frame type that does not travel in this direction (a receipt from a peripheral, say). */
  | 'GH_FRAME_WRONG_DIRECTION'
  // The gateway's v2 hello checks.
  /** hello.gw is not this gateway. */
  | 'GH_HELLO_GW_MISMATCH'
  /** hello.ge is not the ge issued with this gn. */
  | 'GH_HELLO_GE_MISMATCH'
  /** pe is not a usable X25519 key. */
  | 'GH_HELLO_PE'
  // Frames: the drops, then the sender's own limits.
  | FrameDropCode
  /** A plaintext over 1,264 bytes. */
  | 'GH_FRAME_PLAINTEXT_TOO_LARGE'
  /** A seq outside 0..2^40−1. */
  | 'GH_FRAME_SEQ_RANGE'
  /** The sender's seq would pass 2^40−1: the session must end. */
  | 'GH_FRAME_SEQ_EXHAUSTED'
  // The reference peripheral's v2 session.
  /** The session has ended (bye sent or received, life over, 16 drops). */
  | 'GH_SESSION_ENDED'
  /** The gateway answered busy: no pub before its retry has passed. */
  | 'GH_SESSION_BUSY';

/**
 * A message or signature failed a protocol check. `reason` is the protocol-v1 reason code a
 * reject for this failure carries.
 */
export class ProtocolError extends CodedError<ProtocolErrorCode> {
  readonly reason: ReasonCode;

  constructor(code: ProtocolErrorCode, reason: ReasonCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.reason = reason;
  }
}

/** Why a received frame is dropped without an answer (protocol-v2 "Frames", Receiving). */
export type FrameDropCode =
  /** A frame over 1,280 bytes on the wire. */
  | 'GH_FRAME_TOO_LARGE'
  /** Not CBOR at all. */
  | 'GH_FRAME_NOT_CBOR'
  /** Not tag 16 (COSE_Encrypt0). */
  | 'GH_FRAME_NOT_TAG16'
  /** Not a 3-element array of protected bstr, unprotected map, ciphertext bstr. */
  | 'GH_FRAME_STRUCTURE'
  /** A protected header other than exactly h'a1010a'. */
  | 'GH_FRAME_PROTECTED'
  /** An unprotected header other than exactly {6: piv}. */
  | 'GH_FRAME_UNPROTECTED'
  /** A piv that is empty, over 5 bytes, or has a leading zero byte. */
  | 'GH_FRAME_PIV'
  /** Decryption failed (wrong key, altered bytes). */
  | 'GH_FRAME_DECRYPT'
  /** A seq already received. */
  | 'GH_FRAME_REPLAY'
  /** A seq 64 or more below the highest received. */
  | 'GH_FRAME_TOO_OLD';
