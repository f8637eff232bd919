/**
 * COSE_Sign1 (RFC 9052 §4.2) for protocol-v1. Signing always produces the protocol-v1 profile:
 * tag 18, protected header exactly `{1: alg, 4: kid}`, empty unprotected header, empty external
 * AAD. Decoding has two modes: the strict `protocol-v1` profile (default, used by every
 * message parser) and a `generic` mode for interoperability vectors (other headers allowed,
 * kid in either bucket, optional external AAD). In both, alg comes from the protected header
 * and only EdDSA (-8) and ES256 (-7) are supported.
 */
import { KeyObject } from 'node:crypto';
import { CborError, CborTag, COSE_SIGN1_TAG, decodeCbor, encodeCbor, type CborMap, type CborValue } from './cbor.js';
import { concatBytes, ed25519RawFromKeyObject, ed25519Verify, es256Verify } from './crypto.js';
import { ProtocolError, type ProtocolErrorCode } from './errors.js';
import { isValidId } from './ids.js';
import { COSE_ALG_EDDSA, COSE_ALG_ES256, type CoseAlg, type Signed, type Signer } from './types.js';

// RFC 9052 §3.1 common header labels.
const HDR_ALG = 1;
const HDR_CRIT = 2;
const HDR_KID = 4;

const EMPTY = new Uint8Array(0);
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

export interface DecodeSign1Options {
  /** `protocol-v1` (default): the strict profile. `generic`: any RFC 9052 COSE_Sign1 we can verify. */
  profile?: 'protocol-v1' | 'generic';
  /** External AAD for the Sig_structure (generic mode only; protocol-v1 always uses h''). */
  externalAad?: Uint8Array;
  /**
   * Generic mode only: take alg from the unprotected header when the protected one has none.
   * Off by default because an unprotected alg can be swapped by anyone; exists for interop
   * vectors (COSE WG sign-pass-01). Verification still binds the alg to the key's type.
   */
  algFromUnprotected?: boolean;
  /** Maximum input size (default 1024, protocol-v1 "Encoding"). */
  maxBytes?: number;
}

/** A decoded COSE_Sign1: the protocol-level view plus the raw pieces. */
export interface DecodedSign1 extends Signed<Uint8Array> {
  /** The kid as bytes (empty when absent, generic mode only). */
  kidBytes: Uint8Array;
  /** Whether the input carried tag 18. */
  tagged: boolean;
  protectedBytes: Uint8Array;
  protectedHeader: CborMap;
  unprotectedHeader: CborMap;
}

function coseError(code: ProtocolErrorCode, message: string, cause?: unknown): ProtocolError {
  return new ProtocolError(code, 'malformed', message, cause === undefined ? undefined : { cause });
}

function asCoseAlg(value: CborValue | undefined): CoseAlg {
  if (value === COSE_ALG_EDDSA || value === COSE_ALG_ES256) return value;
  if (value === undefined) throw coseError('GH_COSE_MISSING_ALG', 'COSE_Sign1 has no alg in its protected header');
  const shown = typeof value === 'number' || typeof value === 'string' ? JSON.stringify(value) : 'a non-scalar';
  throw new ProtocolError(
    'GH_COSE_UNSUPPORTED_ALG',
    'malformed',
    `unsupported algorithm ${shown}: only EdDSA (-8) and ES256 (-7) are accepted`,
  );
}

/** RFC 9052 §4.4: Sig_structure = ["Signature1", body_protected, external_aad, payload]. */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array, externalAad: Uint8Array = EMPTY): Uint8Array {
  // Laid out directly (one allocation): this runs for every signed message parsed.
  return concatBytes(SIG1_PREFIX, bstrHead(protectedBytes.length), protectedBytes, bstrHead(externalAad.length), externalAad, bstrHead(payload.length), payload);
}

// 0x84 (array of 4), then "Signature1" as a text string (RFC 9052 §4.4).
const SIG1_PREFIX = encodeCbor(['Signature1']).map((b, i) => (i === 0 ? 0x84 : b));

/** Deterministic (shortest) head of a byte string of `len` bytes (RFC 8949 §4.2.1). */
function bstrHead(len: number): Uint8Array {
  if (len < 24) return Uint8Array.of(0x40 | len);
  if (len <= 0xff) return Uint8Array.of(0x58, len);
  if (len <= 0xffff) return Uint8Array.of(0x59, len >>> 8, len & 0xff);
  return Uint8Array.of(0x5a, len >>> 24, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
}

/**
 * Sign `payload` as a protocol-v1 COSE_Sign1: tag 18, protected `{1: signer.alg, 4: kid}`,
 * unprotected `{}`, external AAD empty. The signer's kid must be a valid id.
 */
export async function signSign1(payload: Uint8Array, signer: Signer): Promise<Uint8Array> {
  if (!isValidId(signer.kid)) {
    throw new ProtocolError('GH_COSE_BAD_KID', 'internal', 'signer kid must be 1–64 characters of [A-Za-z0-9._:-]');
  }
  if (signer.alg !== COSE_ALG_EDDSA && signer.alg !== COSE_ALG_ES256) {
    throw new ProtocolError('GH_COSE_UNSUPPORTED_ALG', 'internal', `unsupported algorithm ${String(signer.alg)}`);
  }
  const protectedBytes = encodeCbor(
    new Map<number, CborValue>([
      [HDR_ALG, signer.alg],
      [HDR_KID, utf8Encoder.encode(signer.kid)],
    ]),
  );
  const signature = await signer.sign(sigStructure(protectedBytes, payload));
  if (!(signature instanceof Uint8Array) || signature.length !== 64) {
    throw new ProtocolError('GH_COSE_SIGNATURE_LENGTH', 'internal', 'signer returned a signature that is not 64 bytes');
  }
  return encodeCbor(new CborTag(COSE_SIGN1_TAG, [protectedBytes, new Map(), payload, signature]));
}

function decodeHeaderBytes(bytes: Uint8Array): CborMap {
  // RFC 9052 §3: a zero-length bstr stands for an empty protected header.
  if (bytes.length === 0) return new Map();
  let header: CborValue;
  try {
    header = decodeCbor(bytes, { allowTopLevelTag: false });
  } catch (cause) {
    if (cause instanceof CborError) throw coseError('GH_COSE_HEADER', `protected header: ${cause.message}`, cause);
    throw cause;
  }
  if (!(header instanceof Map)) throw coseError('GH_COSE_HEADER', 'protected header is not a map');
  return header;
}

/**
 * Decode and check the structure of a COSE_Sign1 (tagged or untagged). Does not verify the
 * signature: pass the result to {@link verifySign1}. Throws a ProtocolError with a `GH_CBOR_…`
 * or `GH_COSE_…` code; an algorithm other than EdDSA/ES256 gives `GH_COSE_UNSUPPORTED_ALG`.
 */
export function decodeSign1(bytes: Uint8Array, opts: DecodeSign1Options = {}): DecodedSign1 {
  const generic = opts.profile === 'generic';
  const top = decodeCbor(bytes, { maxBytes: opts.maxBytes });
  const tagged = top instanceof CborTag;
  const body = top instanceof CborTag ? top.value : top;
  if (!Array.isArray(body) || body.length !== 4) {
    throw coseError('GH_COSE_STRUCTURE', 'COSE_Sign1 must be an array of 4 items');
  }
  const [protectedBytes, unprotected, payload, signature] = body as [CborValue, CborValue, CborValue, CborValue];
  if (!(protectedBytes instanceof Uint8Array)) throw coseError('GH_COSE_STRUCTURE', 'COSE_Sign1 protected header must be a byte string');
  if (!(unprotected instanceof Map)) throw coseError('GH_COSE_STRUCTURE', 'COSE_Sign1 unprotected header must be a map');
  if (!(payload instanceof Uint8Array)) throw coseError('GH_COSE_STRUCTURE', 'COSE_Sign1 payload must be a byte string (no detached payloads)');
  if (!(signature instanceof Uint8Array)) throw coseError('GH_COSE_STRUCTURE', 'COSE_Sign1 signature must be a byte string');

  const protectedHeader = decodeHeaderBytes(protectedBytes);
  let kidValue: CborValue | undefined;
  let algValue: CborValue | undefined;

  if (!generic) {
    // protocol-v1 "Encoding": protected header exactly {1: alg, 4: kid}, unprotected empty.
    for (const label of protectedHeader.keys()) {
      if (label !== HDR_ALG && label !== HDR_KID) {
        throw coseError(label === HDR_CRIT ? 'GH_COSE_CRIT' : 'GH_COSE_HEADER', `protected header label ${JSON.stringify(label)} is not allowed in protocol-v1`);
      }
    }
    if (unprotected.size !== 0) throw coseError('GH_COSE_HEADER', 'protocol-v1 requires an empty unprotected header');
    algValue = protectedHeader.get(HDR_ALG);
    kidValue = protectedHeader.get(HDR_KID);
    if (kidValue === undefined) throw coseError('GH_COSE_BAD_KID', 'protected header has no kid');
  } else {
    // RFC 9052 §3: a label must not appear in both buckets.
    for (const label of unprotected.keys()) {
      if (protectedHeader.has(label)) throw coseError('GH_COSE_HEADER', `header label ${JSON.stringify(label)} is in both buckets`);
    }
    if (unprotected.has(HDR_CRIT)) throw coseError('GH_COSE_CRIT', 'crit must be in the protected header');
    const crit = protectedHeader.get(HDR_CRIT);
    if (crit !== undefined) {
      // RFC 9052 §3.1: every label in crit must be understood; we understand alg and kid only.
      if (!Array.isArray(crit) || crit.length === 0) throw coseError('GH_COSE_CRIT', 'crit must be a non-empty array');
      for (const label of crit) {
        if (label !== HDR_ALG && label !== HDR_KID) {
          throw coseError('GH_COSE_CRIT', `critical header ${JSON.stringify(label)} is not understood`);
        }
      }
    }
    algValue = protectedHeader.get(HDR_ALG);
    if (algValue === undefined && opts.algFromUnprotected === true) algValue = unprotected.get(HDR_ALG);
    kidValue = protectedHeader.get(HDR_KID) ?? unprotected.get(HDR_KID);
  }

  const alg = asCoseAlg(algValue);
  let kidBytes: Uint8Array = EMPTY;
  if (kidValue !== undefined) {
    if (!(kidValue instanceof Uint8Array)) throw coseError('GH_COSE_BAD_KID', 'kid must be a byte string');
    kidBytes = kidValue;
  }
  let kid = '';
  try {
    kid = utf8Decoder.decode(kidBytes);
  } catch (cause) {
    if (!generic) throw coseError('GH_COSE_BAD_KID', 'kid is not valid UTF-8', cause);
    kid = Buffer.from(kidBytes).toString('hex');
  }
  if (!generic && !isValidId(kid)) throw coseError('GH_COSE_BAD_KID', 'kid must be 1–64 characters of [A-Za-z0-9._:-]');

  // RFC 9053 §2.2: alg -8 also covers Ed448, whose signatures are 114 bytes; we support Ed25519 only.
  if (alg === COSE_ALG_EDDSA && signature.length === 114) {
    throw new ProtocolError('GH_COSE_UNSUPPORTED_ALG', 'malformed', 'unsupported algorithm: EdDSA over Ed448 (only Ed25519 is accepted)');
  }
  // Both EdDSA over Ed25519 and ES256 (raw r||s, RFC 9053 §2.1) signatures are 64 bytes.
  if (signature.length !== 64) throw coseError('GH_COSE_SIGNATURE_LENGTH', `signature is ${signature.length} bytes, expected 64`);

  if (generic && opts.externalAad !== undefined && !(opts.externalAad instanceof Uint8Array)) {
    throw coseError('GH_COSE_STRUCTURE', 'externalAad must be bytes');
  }
  const externalAad = generic ? (opts.externalAad ?? EMPTY) : EMPTY;
  return {
    // A copy: the caller's buffer may be reused by its transport, and hh hashes these bytes.
    bytes: Uint8Array.from(bytes),
    alg,
    kid,
    kidBytes,
    payload,
    // RFC 9052 §4.4: with no protected header parameters, body_protected is a zero-length bstr,
    // even when the sender wrote h'A0' (§3: recipients accept both forms).
    toBeSigned: sigStructure(protectedHeader.size === 0 ? EMPTY : protectedBytes, payload, externalAad),
    signature,
    tagged,
    protectedBytes,
    protectedHeader,
    unprotectedHeader: unprotected,
  };
}

/**
 * Verify a decoded COSE_Sign1 under `publicKey`: a raw 32-byte Ed25519 key, an Ed25519
 * KeyObject, or (ES256) a P-256 KeyObject or its DER SPKI bytes. The key's type must match
 * the message's alg, so an attacker cannot pick the algorithm. Never throws; false on any
 * mismatch or bad signature.
 */
export function verifySign1(signed: Pick<Signed<unknown>, 'alg' | 'toBeSigned' | 'signature'>, publicKey: Uint8Array | KeyObject): boolean {
  try {
    if (signed.alg === COSE_ALG_EDDSA) {
      const raw = publicKey instanceof KeyObject ? (publicKey.asymmetricKeyType === 'ed25519' ? ed25519RawFromKeyObject(publicKey) : undefined) : publicKey;
      if (raw === undefined || raw.length !== 32) return false;
      return ed25519Verify(raw, signed.toBeSigned, signed.signature);
    }
    if (signed.alg === COSE_ALG_ES256) {
      if (publicKey instanceof Uint8Array && publicKey.length === 32) return false;
      return es256Verify(publicKey, signed.toBeSigned, signed.signature);
    }
    return false;
  } catch {
    return false;
  }
}
