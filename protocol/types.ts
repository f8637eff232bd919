/**
 * Typed views of the protocol-v1 messages (see docs/protocol.md). Byte strings are plain
 * `Uint8Array`s; ids are 1–64 characters of `[A-Za-z0-9._:-]`.
 */
import type { ReasonCode } from './reasons.js';

export const PROTOCOL_VERSION = 1;

/** COSE algorithm identifiers used by protocol-v1 (RFC 9053). */
export const COSE_ALG_EDDSA = -8;
export const COSE_ALG_ES256 = -7;
export type CoseAlg = typeof COSE_ALG_EDDSA | typeof COSE_ALG_ES256;

export type MessageType = 'challenge-request' | 'challenge' | 'hello' | 'welcome' | 'reject' | 'gw-cred' | 'lease';

/** MQTT topic filters a welcomed device may use; `{dev}` stands for its id. */
export interface Policy {
  pub: string[];
  sub: string[];
}

export interface ChallengeRequest {
  type: 'challenge-request';
  version: 1;
  dev: string;
}

export interface Challenge {
  type: 'challenge';
  version: 1;
  dev: string;
  gn: Uint8Array;
  gw: string;
}

export interface Hello {
  type: 'hello';
  version: 1;
  dev: string;
  pn: Uint8Array;
  gn: Uint8Array;
}

export interface Welcome {
  type: 'welcome';
  version: 1;
  dev: string;
  gw: string;
  hh: Uint8Array;
  cred: Uint8Array;
}

export interface Reject {
  type: 'reject';
  version: 1;
  dev: string;
  hh?: Uint8Array;
  reason: ReasonCode;
  retry?: number;
}

export interface GatewayCredential {
  type: 'gw-cred';
  version: 1;
  gw: string;
  spk: Uint8Array;
  tpk: Uint8Array;
  iat: number;
  exp: number;
}

export interface Lease {
  type: 'lease';
  version: 1;
  dev: string;
  gw: string;
  dpk: Uint8Array;
  policy: Policy;
  iat: number;
  exp: number;
}

/** A decoded COSE_Sign1 whose structure was checked but whose signature may not be yet. */
export interface Signed<T> {
  /** The COSE_Sign1 bytes exactly as received or produced (hh hashes these). */
  bytes: Uint8Array;
  alg: CoseAlg;
  kid: string;
  payload: T;
  /** RFC 9052 §4.4 Sig_structure bytes, ready for a verifier. */
  toBeSigned: Uint8Array;
  signature: Uint8Array;
}

/**
 * Something that signs COSE objects: the peripheral's key, the gateway session key, the
 * backend key (EdDSA) or the TPM key (ES256). `sign` returns the raw signature (64 bytes:
 * Ed25519, or r||s for ES256). Async because a TPM signs off-thread.
 */
export interface Signer {
  readonly alg: CoseAlg;
  readonly kid: string;
  sign(toBeSigned: Uint8Array): Promise<Uint8Array>;
}
