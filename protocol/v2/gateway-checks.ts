/**
 * protocol-v2 "Gateway checks on a hello", the checks v2 adds to v1's (which run first, in
 * v1's order): hello.gw is this gateway, hello.ge is the ge issued with this gn, pe is 32
 * bytes and Z = X25519(ge_priv, pe) is not all zero. Any failure is `malformed` and nothing
 * goes to the backend.
 */
import type { KeyObject } from 'node:crypto';
import { bytesEqual } from '../crypto.js';
import { ProtocolError } from '../errors.js';
import { x25519SharedSecret } from './key-schedule.js';
import type { HelloV2 } from './types.js';

export interface GatewayHelloV2Options {
  /** This gateway's id. */
  gw: string;
  /** The ge issued with the challenge whose gn the hello carries. */
  issuedGe: Uint8Array;
  /** Its private key (kept with the outstanding challenge). */
  gePrivateKey: KeyObject;
}

/**
 * Run the v2 additions on a parsed hello. Returns Z, which the gateway keeps for the key
 * schedule once it sends the welcome (the ge private key is erased with the challenge).
 * Throws a ProtocolError with reason `malformed`: `GH_HELLO_GW_MISMATCH`, `GH_HELLO_GE_MISMATCH`,
 * `GH_HELLO_PE`, `GH_X25519_ALL_ZERO`.
 */
export function checkHelloV2AtGateway(hello: HelloV2, opts: GatewayHelloV2Options): { z: Uint8Array } {
  if (hello.gw !== opts.gw) throw new ProtocolError('GH_HELLO_GW_MISMATCH', 'malformed', `hello names gateway ${JSON.stringify(hello.gw)}, this is ${JSON.stringify(opts.gw)}`);
  if (!bytesEqual(hello.ge, opts.issuedGe)) throw new ProtocolError('GH_HELLO_GE_MISMATCH', 'malformed', 'hello.ge is not the ge issued with this gn');
  if (!(hello.pe instanceof Uint8Array) || hello.pe.length !== 32) throw new ProtocolError('GH_HELLO_PE', 'malformed', 'pe must be 32 bytes');
  return { z: x25519SharedSecret(opts.gePrivateKey, hello.pe) };
}
