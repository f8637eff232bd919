/**
 * The protocol-v1 library: deterministic CBOR, COSE_Sign1, the messages and the peripheral's
 * welcome checks. Pure: no I/O, no transport. See docs/protocol.md.
 */
export * from './errors.js';
export * from './reasons.js';
export * from './types.js';
export { isValidId } from './ids.js';
export {
  CborError,
  CborTag,
  COSE_SIGN1_TAG,
  DEFAULT_MAX_DEPTH,
  MAX_MESSAGE_BYTES,
  decodeCbor,
  encodeCbor,
  type CborKey,
  type CborMap,
  type CborValue,
  type DecodeOptions,
} from './cbor.js';
export {
  Ed25519Signer,
  Es256Signer,
  assertEd25519PublicKey,
  bytesEqual,
  concatBytes,
  ed25519PublicKeyFromRaw,
  ed25519PublicKeyProblem,
  ed25519RawFromKeyObject,
  ed25519Verify,
  es256Verify,
  p256PublicKey,
  randomNonce,
  sha256,
} from './crypto.js';
export { decodeSign1, sigStructure, signSign1, verifySign1, type DecodeSign1Options, type DecodedSign1 } from './cose.js';
export {
  DEFAULT_POLICY,
  decodeChallenge,
  decodeChallengeRequest,
  decodeDownMessage,
  decodeUpMessage,
  encodeChallenge,
  encodeChallengeRequest,
  encodeUnsignedReject,
  expandPolicy,
  helloHash,
  parseGatewayCredential,
  parseHello,
  parseLease,
  parseReject,
  parseWelcome,
  signGatewayCredential,
  signHello,
  signLease,
  signReject,
  signWelcome,
  type DownMessage,
  type ParsedReject,
  type UpMessage,
} from './messages.js';
export { MAX_TOPIC_FILTER_CHARS, NONCE_BYTES, topicFilterProblem } from './payload.js';
export { checkWelcome, type CheckWelcomeOptions, type CheckWelcomeResult, type WelcomeRefusal } from './peripheral-checks.js';
export * from './http-signature.js';
export * from './ble.js';
export * from './v2/index.js';
export { anyTopicMatches, topicMatches } from './topic-match.js';
