/**
 * TPM 2.0 wire formats Gatehouse builds and reads (TPM 2.0 Part 2, big-endian). Pure: no FFI.
 * The bytes built here go through `Tss2_MU_*_Unmarshal` into the library's own structs, so we
 * never mirror a C struct layout by hand.
 */
import { TpmError } from './errors.js';

/** TPM_ALG_ID values (Part 2 §6.3). */
export const TPM2_ALG = { SHA256: 0x000b, NULL: 0x0010, ECDSA: 0x0018, ECC: 0x0023 } as const;
/** TPM_ECC_CURVE (Part 2 §6.4). */
export const TPM2_ECC_NIST_P256 = 0x0003;

/** TPMA_OBJECT bits (Part 2 §8.3). */
export const TPMA_OBJECT = {
  fixedTPM: 0x00000002,
  stClear: 0x00000004,
  fixedParent: 0x00000010,
  sensitiveDataOrigin: 0x00000020,
  userWithAuth: 0x00000040,
  adminWithPolicy: 0x00000080,
  noDA: 0x00000400,
  encryptedDuplication: 0x00000800,
  restricted: 0x00010000,
  decrypt: 0x00020000,
  sign: 0x00040000,
} as const;

/**
 * What the gateway identity key must have: non-exportable, born in the TPM, signing only. `open()`
 * checks these; `noDA` is not among them, so a key provisioned before Gatehouse set it still opens
 * (with a warning, see `hasNoDA`).
 */
export const REQUIRED_ATTRIBUTES =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.sign;
/**
 * What provisioning creates: REQUIRED_ATTRIBUTES plus `noDA` (0x00040472). The key's authValue is
 * 32 random bytes, nothing guessing could find, so dictionary-attack protection guards nothing
 * for it, while without `noDA` a lockout
 * caused by anyone's failed authorizations would stop it signing. TPM 2.0 Part 1 "Dictionary
 * Attack Protection" and Part 2 TPMA_OBJECT: an object with noDA is not subject to DA
 * protection, so it stays usable in lockout.
 */
export const PROVISIONED_ATTRIBUTES = REQUIRED_ATTRIBUTES | TPMA_OBJECT.noDA;
/** Must be clear: not a decryption key, not a restricted (attestation) key. */
export const FORBIDDEN_ATTRIBUTES = TPMA_OBJECT.decrypt | TPMA_OBJECT.restricted;

class Writer {
  readonly #parts: number[] = [];
  u16(v: number): this {
    this.#parts.push((v >>> 8) & 0xff, v & 0xff);
    return this;
  }
  u32(v: number): this {
    this.#parts.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    return this;
  }
  tpm2b(b: Uint8Array): this {
    this.u16(b.length);
    for (const x of b) this.#parts.push(x);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
}

class Reader {
  #off = 0;
  readonly #b: Uint8Array;
  readonly #what: string;

  constructor(b: Uint8Array, what: string) {
    this.#b = b;
    this.#what = what;
  }
  #need(n: number): void {
    if (this.#off + n > this.#b.length) throw new TpmError('GH_TPM_COMMAND', `truncated ${this.#what} from the TPM`);
  }
  u16(): number {
    this.#need(2);
    const v = ((this.#b[this.#off] ?? 0) << 8) | (this.#b[this.#off + 1] ?? 0);
    this.#off += 2;
    return v;
  }
  u32(): number {
    this.#need(4);
    const v = this.u16() * 0x10000 + this.u16();
    return v >>> 0;
  }
  tpm2b(max: number): Uint8Array {
    const n = this.u16();
    if (n > max) throw new TpmError('GH_TPM_COMMAND', `oversized field in ${this.#what} from the TPM`);
    this.#need(n);
    const v = this.#b.slice(this.#off, this.#off + n);
    this.#off += n;
    return v;
  }
  get remaining(): number {
    return this.#b.length - this.#off;
  }
}

/**
 * TPM2B_PUBLIC template for the gateway key: ECC P-256, ECDSA-SHA256, attributes
 * PROVISIONED_ATTRIBUTES unless given (tests make keys the way older releases did). `unique`
 * seeds primary-key derivation (Part 1 §27.2.6), so a fresh random value gives a fresh key from
 * the same owner seed.
 */
export function eccSigningTemplate(unique: Uint8Array, attributes: number = PROVISIONED_ATTRIBUTES): Uint8Array {
  const w = new Writer();
  const inner = new Writer()
    .u16(TPM2_ALG.ECC) // type
    .u16(TPM2_ALG.SHA256) // nameAlg
    .u32(attributes)
    .tpm2b(new Uint8Array(0)) // authPolicy: none
    .u16(TPM2_ALG.NULL) // symmetric: none (not a storage key)
    .u16(TPM2_ALG.ECDSA) // scheme
    .u16(TPM2_ALG.SHA256) // scheme hash
    .u16(TPM2_ECC_NIST_P256)
    .u16(TPM2_ALG.NULL) // kdf
    .tpm2b(unique) // unique.x
    .tpm2b(new Uint8Array(0)) // unique.y
    .bytes();
  return w.tpm2b(inner).bytes();
}

/** TPM2B_SENSITIVE_CREATE with empty userAuth and data (the key is used with a password session of ""). */
export function emptySensitiveCreate(): Uint8Array {
  return new Writer().u16(4).u16(0).u16(0).bytes();
}

/** The key's authValue length: the nameAlg's digest size (SHA-256), the most TPM2B_AUTH takes for it. */
export const KEY_AUTH_BYTES = 32;

/** TPM2B_SENSITIVE_CREATE with `userAuth` and empty data. */
export function sensitiveCreateWithAuth(auth: Uint8Array): Uint8Array {
  const inner = new Writer().tpm2b(auth).u16(0).bytes();
  return new Writer().tpm2b(inner).bytes();
}

/** TPM2B_AUTH. */
export function authTpm2b(auth: Uint8Array): Uint8Array {
  if (auth.length > KEY_AUTH_BYTES) throw new TpmError('GH_TPM_BAD_INPUT', `an authValue has at most ${KEY_AUTH_BYTES} bytes`);
  return new Writer().tpm2b(auth).bytes();
}

/**
 * The parent of the identity key: an ECC P-256 storage primary in the owner hierarchy with the
 * fixed template below and an empty `unique`, so every TPM2_CreatePrimary with it re-creates the
 * same key (Part 1 §27.2.6) and it never needs persisting. Only Gatehouse's own in-memory private
 * blobs are ever loaded under it; none is written anywhere.
 */
export function storageParentTemplate(): Uint8Array {
  const attributes =
    TPMA_OBJECT.fixedTPM |
    TPMA_OBJECT.fixedParent |
    TPMA_OBJECT.sensitiveDataOrigin |
    TPMA_OBJECT.userWithAuth |
    TPMA_OBJECT.noDA |
    TPMA_OBJECT.restricted |
    TPMA_OBJECT.decrypt;
  const inner = new Writer()
    .u16(TPM2_ALG.ECC)
    .u16(TPM2_ALG.SHA256)
    .u32(attributes)
    .tpm2b(new Uint8Array(0)) // authPolicy: none
    .u16(0x0006) // symmetric: AES
    .u16(128)
    .u16(0x0043) // CFB
    .u16(TPM2_ALG.NULL) // scheme
    .u16(TPM2_ECC_NIST_P256)
    .u16(TPM2_ALG.NULL) // kdf
    .tpm2b(new Uint8Array(0))
    .tpm2b(new Uint8Array(0))
    .bytes();
  return new Writer().tpm2b(inner).bytes();
}

/** Empty TPM2B (e.g. TPM2B_DATA outsideInfo). */
export function emptyTpm2b(): Uint8Array {
  return new Writer().u16(0).bytes();
}

/** TPML_PCR_SELECTION with no selections. */
export function emptyPcrSelection(): Uint8Array {
  return new Writer().u32(0).bytes();
}

export function digestTpm2b(digest32: Uint8Array): Uint8Array {
  return new Writer().tpm2b(digest32).bytes();
}

/** TPMT_SIG_SCHEME {ECDSA, SHA256}. */
export function ecdsaSha256Scheme(): Uint8Array {
  return new Writer().u16(TPM2_ALG.ECDSA).u16(TPM2_ALG.SHA256).bytes();
}

/** NULL TPMT_TK_HASHCHECK: allowed because the key is not restricted (Part 3 §20.2). */
export function nullHashcheckTicket(): Uint8Array {
  return new Writer().u16(0x8024 /* TPM_ST_HASHCHECK */).u32(0x40000007 /* TPM_RH_NULL */).u16(0).bytes();
}

/** The parts of a TPMT_PUBLIC Gatehouse checks. */
export interface EccPublic {
  type: number;
  nameAlg: number;
  attributes: number;
  scheme: number;
  schemeHash: number;
  curve: number;
  x: Uint8Array;
  y: Uint8Array;
}

/** Parse a TPM2B_PUBLIC (wire) holding an ECC key. Throws GH_TPM_KEY_ATTRIBUTES for another type. */
export function parseEccPublic(tpm2bPublic: Uint8Array): EccPublic {
  const r = new Reader(tpm2bPublic, 'TPM2B_PUBLIC');
  const size = r.u16();
  if (size !== r.remaining) throw new TpmError('GH_TPM_COMMAND', 'TPM2B_PUBLIC size does not match its contents');
  const type = r.u16();
  const nameAlg = r.u16();
  const attributes = r.u32();
  r.tpm2b(64); // authPolicy
  if (type !== TPM2_ALG.ECC) {
    throw new TpmError('GH_TPM_KEY_ATTRIBUTES', `the key is not an ECC key (TPM_ALG 0x${type.toString(16)})`);
  }
  const symAlg = r.u16();
  if (symAlg !== TPM2_ALG.NULL) {
    // keyBits and mode of a storage key's symmetric scheme; such a key also has `decrypt` and is rejected
    r.u16();
    r.u16();
  }
  const scheme = r.u16();
  const schemeHash = scheme === TPM2_ALG.NULL ? 0 : r.u16();
  const curve = r.u16();
  const kdf = r.u16();
  if (kdf !== TPM2_ALG.NULL) r.u16();
  const x = r.tpm2b(66);
  const y = r.tpm2b(66);
  return { type, nameAlg, attributes, scheme, schemeHash, curve, x, y };
}

/** Throw unless `pub` is the kind of key the gateway identity must be. */
export function checkIdentityKey(pub: EccPublic, handleHex: string): void {
  const problems: string[] = [];
  if (pub.curve !== TPM2_ECC_NIST_P256) problems.push(`curve 0x${pub.curve.toString(16)} is not NIST P-256`);
  if (pub.scheme !== TPM2_ALG.ECDSA || pub.schemeHash !== TPM2_ALG.SHA256) problems.push('scheme is not ECDSA-SHA256');
  const missing = REQUIRED_ATTRIBUTES & ~pub.attributes;
  if (missing) problems.push(`missing attributes 0x${(missing >>> 0).toString(16)}`);
  const extra = FORBIDDEN_ATTRIBUTES & pub.attributes;
  if (extra) problems.push(`forbidden attributes 0x${(extra >>> 0).toString(16)} (decrypt/restricted)`);
  if (problems.length > 0) {
    throw new TpmError('GH_TPM_KEY_ATTRIBUTES', `the key at ${handleHex} is not a Gatehouse identity key: ${problems.join('; ')}`);
  }
}

/** Whether the key is exempt from dictionary-attack lockout (TPMA_OBJECT.noDA). */
export function hasNoDA(pub: EccPublic): boolean {
  return (pub.attributes & TPMA_OBJECT.noDA) !== 0;
}

function leftPad(b: Uint8Array, len: number): Uint8Array {
  if (b.length > len) throw new TpmError('GH_TPM_COMMAND', 'integer from the TPM is too long');
  const out = new Uint8Array(len);
  out.set(b, len - b.length);
  return out;
}

/** DER SubjectPublicKeyInfo prefix for id-ecPublicKey / prime256v1 with an uncompressed point (RFC 5480). */
const P256_SPKI_PREFIX = Uint8Array.from([
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
  0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
]);

/** The SPKI DER of a P-256 point. */
export function p256SpkiDer(x: Uint8Array, y: Uint8Array): Uint8Array {
  const out = new Uint8Array(P256_SPKI_PREFIX.length + 64);
  out.set(P256_SPKI_PREFIX, 0);
  out.set(leftPad(x, 32), P256_SPKI_PREFIX.length);
  out.set(leftPad(y, 32), P256_SPKI_PREFIX.length + 32);
  return out;
}

/** Parse a TPMT_SIGNATURE (wire) holding an ECDSA signature into raw r||s (64 bytes). */
export function ecdsaSignatureRaw(tpmtSignature: Uint8Array): Uint8Array {
  const r = new Reader(tpmtSignature, 'TPMT_SIGNATURE');
  const alg = r.u16();
  if (alg !== TPM2_ALG.ECDSA) throw new TpmError('GH_TPM_COMMAND', `unexpected signature algorithm 0x${alg.toString(16)}`);
  r.u16(); // hash
  const sr = r.tpm2b(66);
  const ss = r.tpm2b(66);
  const out = new Uint8Array(64);
  out.set(leftPad(sr, 32), 0);
  out.set(leftPad(ss, 32), 32);
  return out;
}

function derInteger(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const trimmed = b.subarray(i);
  const pad = (trimmed[0] ?? 0) & 0x80 ? 1 : 0;
  const out = new Uint8Array(2 + pad + trimmed.length);
  out[0] = 0x02;
  out[1] = pad + trimmed.length;
  out.set(trimmed, 2 + pad);
  return out;
}

/** Raw r||s (64 bytes) to a DER ECDSA-Sig-Value (RFC 3279 §2.2.3), as openssl and X.509 use. */
export function rawEcdsaToDer(raw: Uint8Array): Uint8Array {
  if (raw.length !== 64) throw new TpmError('GH_TPM_BAD_INPUT', 'an ES256 raw signature is 64 bytes');
  const r = derInteger(raw.subarray(0, 32));
  const s = derInteger(raw.subarray(32));
  const out = new Uint8Array(2 + r.length + s.length);
  out[0] = 0x30;
  out[1] = r.length + s.length;
  out.set(r, 2);
  out.set(s, 2 + r.length);
  return out;
}
