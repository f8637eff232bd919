/**
 * COSE_Encrypt0 (RFC 9052 §5.2) with AES-CCM-16-64-128 (alg 10, RFC 9053 §4.2: 128-bit key,
 * 64-bit tag, 13-byte nonce) on node:crypto. Only this algorithm: protocol-v2 frames use it and
 * nothing else.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { encodeCbor } from '../cbor.js';
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
