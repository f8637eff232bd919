/**
 * The one interface for the gateway identity key (protocol-v1: "ECDSA P-256 key created inside
 * the TPM, never exportable"). Implemented by the TPM store (tpm/tpm-key-store.ts) and, for
 * development only, the software store (tpm/software-key-store.ts).
 */
import { createPublicKey } from 'node:crypto';
import { sha256, COSE_ALG_ES256, type Signer } from '../protocol/index.js';
import { TpmError } from './errors.js';

export interface SignOptions {
  /** 'raw' (default): r||s, 64 bytes, as COSE and RFC 9421 want. 'der': ECDSA-Sig-Value, as openssl wants. */
  format?: 'raw' | 'der';
}

export interface KeyStore {
  readonly kind: 'tpm' | 'software';
  /** Connect and check the key. Must be called before anything else. */
  open(): Promise<void>;
  /** Release the TPM context (or key). Idempotent. */
  close(): Promise<void>;
  /** DER SubjectPublicKeyInfo of the P-256 public key. */
  publicKeySpkiDer(): Uint8Array;
  /** The same key as PEM ("-----BEGIN PUBLIC KEY-----"). */
  publicKeyPem(): string;
  /** SHA-256 of the SPKI DER: protocol-v1 `tpk`. */
  thumbprint(): Uint8Array;
  /** ECDSA-sign a 32-byte digest (the caller hashed the message with SHA-256). */
  sign(digest32: Uint8Array, opts?: SignOptions): Promise<Uint8Array>;
  /** A protocol `Signer` (alg -7, ES256) over this key. */
  signer(kid: string): Signer;
  /** TPM stores: whether the key has the noDA attribute (a DA lockout cannot stop it signing). */
  noDA?(): boolean;
  /** TPM stores: whether the key is used with an authValue (false for a key from an older release). */
  hasAuth?(): boolean;
}

/** PEM of a SPKI DER. */
export function spkiToPem(spki: Uint8Array): string {
  return createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).export({ format: 'pem', type: 'spki' }).toString();
}

export function checkDigest(digest32: Uint8Array): void {
  if (!(digest32 instanceof Uint8Array) || digest32.length !== 32) {
    throw new TpmError('GH_TPM_BAD_INPUT', `sign() takes a 32-byte SHA-256 digest, got ${digest32?.length ?? 'none'} bytes`);
  }
}

/**
 * ES256 signer over a key store (RFC 9053 §2.1: ECDSA w/ SHA-256, signature r||s): hashes
 * toBeSigned with SHA-256, then has the store sign the digest.
 */
export function es256Signer(store: Pick<KeyStore, 'sign'>, kid: string): Signer {
  return {
    alg: COSE_ALG_ES256,
    kid,
    sign: (toBeSigned: Uint8Array) => store.sign(sha256(toBeSigned), { format: 'raw' }),
  };
}

/** Lowercase hex, as thumbprints are shown and recorded. */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
