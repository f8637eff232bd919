/**
 * The leases this backend process signed lately, one per (device, gateway), reused while they
 * have at least half their life left and say exactly what a new one would (same device key,
 * policy and signing key). A device that authenticates again through the same gateway then gets
 * the same lease bytes: the backend saves a signature, and the gateway, which verifies every lease
 * it is given (security finding 5), recognises bytes it already verified. protocol-v1 asks only
 * that a lease be signed by S for that device and gateway and unexpired; a reused lease still has
 * at least half of `leaseSeconds` left, so an offline welcome under it lasts at least that.
 * Bounded: the least recently used entry goes first. Per process: replicas do not share it (each
 * issues its own; nothing depends on two replicas answering the same bytes).
 */
import { base64UrlEncode, signLease, type Policy, type Signer } from '../protocol/index.js';

interface Issued {
  fingerprint: string;
  iat: number;
  exp: number;
  bytes: Uint8Array;
}

export class IssuedLeases {
  readonly #byDevGw = new Map<string, Issued>();

  constructor(readonly max = 20_000) {}

  get size(): number {
    return this.#byDevGw.size;
  }

  /** The lease for `dev` at `gw` as of `now`: a reused one when it fits, else a new one signed by `signer`. */
  async lease(o: { dev: string; gw: string; dpk: Uint8Array; policy: Policy; now: number; leaseSeconds: number }, signer: Signer): Promise<{ bytes: Uint8Array; iat: number }> {
    const key = `${o.dev}\n${o.gw}`;
    const fingerprint = `${signer.kid}\n${base64UrlEncode(o.dpk)}\n${JSON.stringify(o.policy)}`;
    const held = this.#byDevGw.get(key);
    if (held !== undefined) {
      this.#byDevGw.delete(key);
      if (held.fingerprint === fingerprint && held.exp - o.now >= o.leaseSeconds / 2 && held.exp - o.now <= o.leaseSeconds) {
        this.#byDevGw.set(key, held);
        return { bytes: held.bytes, iat: held.iat };
      }
    }
    const exp = o.now + o.leaseSeconds;
    const bytes = await signLease({ type: 'lease', version: 1, dev: o.dev, gw: o.gw, dpk: o.dpk, policy: o.policy, iat: o.now, exp }, signer);
    this.#byDevGw.set(key, { fingerprint, iat: o.now, exp, bytes });
    if (this.#byDevGw.size > this.max) this.#byDevGw.delete(this.#byDevGw.keys().next().value as string);
    return { bytes, iat: o.now };
  }
}
