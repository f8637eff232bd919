/**
 * protocol-v1 "Offline": when the backend cannot be reached, a hello is welcomed if it verifies
 * under the dpk of an unexpired lease issued to this gateway for that device; otherwise the
 * answer is backend-unavailable (no lease) or bad-signature. Pure: the hello bytes, the lease
 * lookup and the time come in; the client counts, logs and answers.
 */
import { parseHello, parseHelloV2, verifySign1, type Hello, type HelloV2, type Lease, type Signed } from '../../protocol/index.js';

/** A lease held for a device (the lease cache checks gateway, device, signature and expiry on lookup). */
export interface HeldLease {
  lease: Lease;
  bytes: Uint8Array;
}

export type OfflineVerdict =
  /** The hello does not parse, or names another device than the one it came for. */
  | { kind: 'malformed' }
  /** No lease, or none still valid: the backend must decide (backend-unavailable). */
  | { kind: 'no-lease'; dev: string }
  /** The hello does not verify under the leased device key. */
  | { kind: 'bad-signature'; dev: string }
  | { kind: 'welcome'; dev: string; lease: Lease; leaseBytes: Uint8Array };

/**
 * Decides `hello` (as received for device `dev`) offline under the lease `leaseOf` answers.
 * `nowS` (Unix seconds) bounds the lease again, whatever the lookup did.
 */
export function decideOffline(hello: Uint8Array, dev: string, leaseOf: (dev: string) => HeldLease | undefined, nowS: number): OfflineVerdict {
  let signed: Signed<Hello> | Signed<HelloV2>;
  try {
    signed = parseHello(hello);
  } catch {
    // protocol-v2 keeps v1's offline rule for v2 hellos (the welcome then carries cred + lease).
    try {
      signed = parseHelloV2(hello);
    } catch {
      return { kind: 'malformed' };
    }
  }
  if (signed.payload.dev !== dev) return { kind: 'malformed' };
  const held = leaseOf(dev);
  if (held === undefined || held.lease.dev !== dev || held.lease.exp <= nowS) return { kind: 'no-lease', dev };
  if (!verifySign1(signed, held.lease.dpk)) return { kind: 'bad-signature', dev };
  return { kind: 'welcome', dev, lease: held.lease, leaseBytes: held.bytes };
}
