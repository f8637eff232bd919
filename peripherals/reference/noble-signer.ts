/**
 * The reference peripheral's Ed25519 signer on @noble/ed25519: a small, audited, pure
 * implementation, the same shape of code a firmware build would carry, so hellos are produced
 * by something other than the OpenSSL the gateway and backend verify with.
 */
import * as ed from '@noble/ed25519';
import { COSE_ALG_EDDSA, ProtocolError, type Signer } from '../../protocol/index.js';

export class NobleEd25519Signer implements Signer {
  readonly alg = COSE_ALG_EDDSA;

  readonly #seed: Uint8Array;

  private constructor(
    readonly kid: string,
    seed: Uint8Array,
    /** Raw 32-byte public key. */
    readonly publicKeyRaw: Uint8Array,
  ) {
    this.#seed = seed;
  }

  /** Derive the key pair from a 32-byte RFC 8032 seed. */
  static async fromSeed(seed: Uint8Array, kid: string): Promise<NobleEd25519Signer> {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) {
      throw new ProtocolError('GH_CRYPTO_BAD_SEED', 'internal', 'an Ed25519 seed is 32 bytes');
    }
    const copy = Uint8Array.from(seed);
    return new NobleEd25519Signer(kid, copy, await ed.getPublicKeyAsync(copy));
  }

  /** A fresh random key pair. */
  static async generate(kid: string): Promise<NobleEd25519Signer> {
    return NobleEd25519Signer.fromSeed(ed.utils.randomSecretKey(), kid);
  }

  sign(toBeSigned: Uint8Array): Promise<Uint8Array> {
    return ed.signAsync(toBeSigned, this.#seed);
  }

  /** The seed, for writing a key file. Never log it. */
  exportSeed(): Uint8Array {
    return Uint8Array.from(this.#seed);
  }
}
