/**
 * protocol-v1 "Peripheral checks on a welcome", in the spec's order. A peripheral that passes
 * them has authenticated the gateway. Pure: the caller supplies the pinned backend keys, its
 * own id, the hello bytes it sent and (if it has a clock) the time.
 */
import { decodeCbor } from './cbor.js';
import { decodeSign1, verifySign1, type DecodedSign1 } from './cose.js';
import { bytesEqual } from './crypto.js';
import { ProtocolError } from './errors.js';
import { helloHash, parseGatewayCredential, parseWelcome } from './messages.js';
import type { GatewayCredential, Signed, Welcome } from './types.js';

export interface CheckWelcomeOptions {
  /** Pinned backend public keys `pk_S` (raw Ed25519, 32 bytes), by kid. */
  backendKeys: ReadonlyMap<string, Uint8Array>;
  /** The peripheral's own device id. */
  dev: string;
  /** The hello exactly as this peripheral sent it. */
  helloBytes: Uint8Array;
  /** Unix seconds, only if the peripheral has a clock; without it expiry is not checked. */
  now?: number;
  /**
   * The bytes of a credential whose signature this peripheral has already verified under a
   * pinned `pk_S` (from an earlier welcome it accepted). A welcome relaying exactly these bytes
   * skips that one Ed25519 verification; every other check still runs, the kid must still be
   * pinned. A gateway relays the same credential for its whole session, so a peripheral that
   * authenticates often saves a verification per welcome.
   */
  verifiedCredential?: Uint8Array;
}

/** Stable refusal codes of {@link checkWelcome}. */
export type WelcomeRefusal =
  | 'GH_WELCOME_MALFORMED'
  | 'GH_WELCOME_CRED_MALFORMED'
  | 'GH_WELCOME_CRED_UNKNOWN_KID'
  | 'GH_WELCOME_CRED_SIGNATURE'
  | 'GH_WELCOME_CRED_TYPE'
  | 'GH_WELCOME_GW_MISMATCH'
  | 'GH_WELCOME_EXPIRED'
  | 'GH_WELCOME_SIGNATURE'
  | 'GH_WELCOME_DEV_MISMATCH'
  | 'GH_WELCOME_HELLO_HASH';

export type CheckWelcomeResult =
  | { ok: true; welcome: Welcome; credential: GatewayCredential; signed: Signed<Welcome> }
  | { ok: false; code: WelcomeRefusal; detail: string };

function refuse(code: WelcomeRefusal, detail: string): CheckWelcomeResult {
  return { ok: false, code, detail };
}

function describe(e: unknown): string {
  if (e instanceof ProtocolError) return `${e.code}: ${e.message}`;
  throw e;
}

/**
 * Run the peripheral's checks on a welcome. Returns the welcome and its credential, or the
 * first failed check as a stable code and a human-readable detail. Never throws for bad input.
 */
export function checkWelcome(welcomeBytes: Uint8Array, opts: CheckWelcomeOptions): CheckWelcomeResult {
  let welcome: Signed<Welcome>;
  try {
    welcome = parseWelcome(welcomeBytes);
  } catch (e) {
    return refuse('GH_WELCOME_MALFORMED', `welcome: ${describe(e)}`);
  }

  // 1. cred verifies under a pinned pk_S ...
  const credBytes = welcome.payload.cred;
  let credEnvelope: DecodedSign1;
  try {
    credEnvelope = decodeSign1(credBytes);
  } catch (e) {
    return refuse('GH_WELCOME_CRED_MALFORMED', `credential: ${describe(e)}`);
  }
  const pkS = opts.backendKeys.get(credEnvelope.kid);
  if (pkS === undefined) {
    return refuse('GH_WELCOME_CRED_UNKNOWN_KID', `credential is signed by kid ${JSON.stringify(credEnvelope.kid)}, which is not a pinned backend key`);
  }
  const known = opts.verifiedCredential !== undefined && bytesEqual(credBytes, opts.verifiedCredential);
  if (!known && !verifySign1(credEnvelope, pkS)) {
    return refuse('GH_WELCOME_CRED_SIGNATURE', `credential signature does not verify under pinned backend key ${JSON.stringify(credEnvelope.kid)}`);
  }
  // ... and is a gw-cred.
  let credType: unknown;
  try {
    const payload = decodeCbor(credEnvelope.payload, { allowTopLevelTag: false });
    credType = payload instanceof Map ? payload.get(1) : undefined;
  } catch (e) {
    return refuse('GH_WELCOME_CRED_MALFORMED', `credential payload: ${describe(e)}`);
  }
  if (credType !== 'gw-cred') {
    return refuse('GH_WELCOME_CRED_TYPE', `credential is a ${JSON.stringify(credType ?? null)} message, not a gw-cred`);
  }
  let credential: GatewayCredential;
  try {
    credential = parseGatewayCredential(credBytes).payload;
  } catch (e) {
    return refuse('GH_WELCOME_CRED_MALFORMED', `credential: ${describe(e)}`);
  }

  // 2. cred.gw == welcome.gw
  if (credential.gw !== welcome.payload.gw) {
    return refuse('GH_WELCOME_GW_MISMATCH', `credential is for gateway ${JSON.stringify(credential.gw)}, welcome is from ${JSON.stringify(welcome.payload.gw)}`);
  }
  // 3. if P has a clock, now < cred.exp
  if (opts.now !== undefined && !(opts.now < credential.exp)) {
    return refuse('GH_WELCOME_EXPIRED', `credential expired at ${credential.exp} (now ${opts.now})`);
  }
  // 4. the welcome verifies under cred.spk
  if (!verifySign1(welcome, credential.spk)) {
    return refuse('GH_WELCOME_SIGNATURE', 'welcome signature does not verify under the credential\'s session key');
  }
  // 5. welcome.dev is its own id
  if (welcome.payload.dev !== opts.dev) {
    return refuse('GH_WELCOME_DEV_MISMATCH', `welcome is for device ${JSON.stringify(welcome.payload.dev)}, not ${JSON.stringify(opts.dev)}`);
  }
  // 6. welcome.hh == SHA-256(hello as sent)
  if (!bytesEqual(welcome.payload.hh, helloHash(opts.helloBytes))) {
    return refuse('GH_WELCOME_HELLO_HASH', 'welcome hh is not the SHA-256 of the hello this peripheral sent');
  }
  return { ok: true, welcome: welcome.payload, credential, signed: welcome };
}
