/**
 * protocol-v1 "Device lease": is this lease one the gateway may rely on? Pure (the time comes
 * in as `nowS`); used on arrival (verify answers), at load and at each offline use (lease cache).
 */
import { parseLease, verifySign1, type Lease, type Signed } from '../../protocol/index.js';

export type LeaseCheck = { ok: true; lease: Signed<Lease> } | { ok: false; why: string };

/**
 * Parse a lease and check it is for this gateway (and, when given, this device), unexpired and
 * signed by a known backend kid; and, unless `verifySignature` is false, that its signature
 * verifies under that pk_S.
 */
export function checkLease(
  bytes: Uint8Array,
  opts: { gw: string; backendKeys: ReadonlyMap<string, Uint8Array>; nowS: number; dev?: string; verifySignature?: boolean },
): LeaseCheck {
  let signed: Signed<Lease>;
  try {
    signed = parseLease(bytes);
  } catch (err) {
    return { ok: false, why: `lease does not parse: ${(err as Error).message}` };
  }
  const key = opts.backendKeys.get(signed.kid);
  if (key === undefined) return { ok: false, why: `lease signed by unknown backend kid ${signed.kid}` };
  if (opts.verifySignature !== false && !verifySign1(signed, key)) return { ok: false, why: 'lease signature does not verify under pk_S' };
  const l = signed.payload;
  if (l.gw !== opts.gw) return { ok: false, why: `lease issued to gateway ${l.gw}` };
  if (opts.dev !== undefined && l.dev !== opts.dev) return { ok: false, why: `lease is for device ${l.dev}` };
  if (l.exp <= opts.nowS) return { ok: false, why: 'lease expired' };
  return { ok: true, lease: signed };
}
