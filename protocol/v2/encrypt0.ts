/**
 * COSE_Encrypt0 (RFC 9052 §5.2) with AES-CCM-16-64-128 (alg 10, RFC 9053 §4.2: 128-bit key,
 * 64-bit tag, 13-byte nonce) on node:crypto. Only this algorithm: protocol-v2 frames use it and
 * nothing else.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { CborTag, decodeCbor, encodeCbor, type CborValue } from '../cbor.js';
import { ProtocolError } from '../errors.js';

/** RFC 9053 §4.2: AES-CCM-16-64-128. */
export const COSE_ALG_AES_CCM_16_64_128 = 10;
export const COSE_ENCRYPT0_TAG = 16;
export const AES_CCM_KEY_BYTES = 16;
export const AES_CCM_NONCE_BYTES = 13;
export const AES_CCM_TAG_BYTES = 8;

/** RFC 9052 §5.3: Enc_structure = ["Encrypt0", protected, external_aad]. */
export function encStructure(protectedBytes: Uint8Array, externalAad: Uint8Array): Uint8Array {
  return encodeCbor(['Encrypt0', protectedBytes, externalAad]);
}

function checkKeyNonce(key: Uint8Array, nonce: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== AES_CCM_KEY_BYTES) throw new ProtocolError('GH_AEAD_INPUT', 'internal', 'AES-CCM-16-64-128 keys are 16 bytes');
  if (!(nonce instanceof Uint8Array) || nonce.length !== AES_CCM_NONCE_BYTES) throw new ProtocolError('GH_AEAD_INPUT', 'internal', 'AES-CCM-16-64-128 nonces are 13 bytes');
}

/** AES-CCM-16-64-128 encryption: ciphertext || 8-byte tag. */
export function aesCcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  checkKeyNonce(key, nonce);
  const c = createCipheriv('aes-128-ccm', key, nonce, { authTagLength: AES_CCM_TAG_BYTES });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const head = c.update(plaintext);
  const tail = c.final();
  const out = new Uint8Array(head.length + tail.length + AES_CCM_TAG_BYTES);
  out.set(head, 0);
  out.set(tail, head.length);
  out.set(c.getAuthTag(), head.length + tail.length);
  return out;
}

/**
 * AES-CCM-16-64-128 decryption of ciphertext || tag. Throws `GH_AEAD_DECRYPT` (malformed) when
 * the input is shorter than the tag or the tag does not verify; never returns unverified bytes.
 */
export function aesCcmOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
  checkKeyNonce(key, nonce);
  if (!(sealed instanceof Uint8Array) || sealed.length < AES_CCM_TAG_BYTES) {
    throw new ProtocolError('GH_AEAD_DECRYPT', 'malformed', 'ciphertext shorter than the 8-byte tag');
  }
  const ct = sealed.subarray(0, sealed.length - AES_CCM_TAG_BYTES);
  try {
    const d = createDecipheriv('aes-128-ccm', key, nonce, { authTagLength: AES_CCM_TAG_BYTES });
    d.setAuthTag(sealed.subarray(sealed.length - AES_CCM_TAG_BYTES));
    d.setAAD(aad, { plaintextLength: ct.length });
    const head = d.update(ct);
    d.final();
    return new Uint8Array(head);
  } catch (cause) {
    throw new ProtocolError('GH_AEAD_DECRYPT', 'malformed', 'AES-CCM tag does not verify', { cause });
  }
}

const HDR_ALG = 1;
const HDR_IV = 5;

/**
 * Decrypt a COSE_Encrypt0 (RFC 9052 §5.2) whose protected header names alg 10 and whose
 * unprotected header carries the full IV (label 5): the general form, for interoperability
 * vectors. Frames use their own stricter parser (partial IV, fixed headers). Throws a
 * ProtocolError (`GH_COSE_STRUCTURE`, `GH_COSE_HEADER`, `GH_COSE_UNSUPPORTED_ALG`, `GH_AEAD_DECRYPT`).
 */
export function openEncrypt0(bytes: Uint8Array, key: Uint8Array, externalAad: Uint8Array = new Uint8Array(0)): Uint8Array {
  const top = decodeCbor(bytes, { maxBytes: 64 * 1024, topLevelTag: COSE_ENCRYPT0_TAG });
  const body = top instanceof CborTag ? top.value : top;
  if (!Array.isArray(body) || body.length !== 3) throw new ProtocolError('GH_COSE_STRUCTURE', 'malformed', 'COSE_Encrypt0 must be an array of 3 items');
  const [prot, unprot, ct] = body as [CborValue, CborValue, CborValue];
  if (!(prot instanceof Uint8Array) || !(unprot instanceof Map) || !(ct instanceof Uint8Array)) {
    throw new ProtocolError('GH_COSE_STRUCTURE', 'malformed', 'COSE_Encrypt0 is [bstr, map, bstr]');
  }
  const header = prot.length === 0 ? new Map() : decodeCbor(prot, { allowTopLevelTag: false });
  if (!(header instanceof Map)) throw new ProtocolError('GH_COSE_HEADER', 'malformed', 'protected header is not a map');
  if (header.get(HDR_ALG) !== COSE_ALG_AES_CCM_16_64_128) throw new ProtocolError('GH_COSE_UNSUPPORTED_ALG', 'malformed', 'only alg 10 (AES-CCM-16-64-128) is supported');
  const iv = unprot.get(HDR_IV);
  if (!(iv instanceof Uint8Array)) throw new ProtocolError('GH_COSE_HEADER', 'malformed', 'unprotected header has no IV (label 5)');
  return aesCcmOpen(key, iv, encStructure(prot, externalAad), ct);
}
