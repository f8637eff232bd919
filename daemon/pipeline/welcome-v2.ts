/**
 * protocol-v2 "Welcome" on the gateway side: the grant relayed unchanged (online) or the
 * gateway credential and lease (offline, v1's offline rule), `life` = min(the gateway's maximum
 * session age, grant.life, lease.exp − now), and the session keys derived from Z when the
 * welcome is signed. Pure apart from the signer.
 */
import {
  bytesEqual,
  deriveSessionKeysFromSecret,
  encodeUnsignedReject,
  encodeUnsignedRejectV2,
  expandPolicy,
  parseGrant,
  ProtocolError,
  signReject,
  signRejectV2,
  signWelcomeV2,
  wipeIntermediates,
  type Lease,
  type ReasonCode,
  type Signer,
} from '../../protocol/index.js';
import type { ProtocolVersion, SessionOpening } from './types.js';

export interface WelcomeV2Input {
  gw: string;
  dev: string;
  hh: Uint8Array;
  /** Z = X25519(ge_priv, pe), from the hello checks; zeroed here whatever the outcome. */
  z: Uint8Array;
  lease: Lease;
  leaseBytes: Uint8Array;
  /** The grant bytes (online); absent offline. */
  grant: Uint8Array | undefined;
  offline: boolean;
  /** The gateway credential (offline welcomes carry it). */
  credential: Uint8Array;
  maxSessionAgeSec: number;
  nowS: number;
  signer: Signer;
}

/** Why a v2 welcome cannot be made from a verdict (answered `internal`). */
export class WelcomeV2Refusal extends Error {}

/** Signs the v2 welcome and derives the session keys. Throws {@link WelcomeV2Refusal}. */
export async function makeWelcomeV2(i: WelcomeV2Input): Promise<{ reply: Uint8Array; session: SessionOpening }> {
  try {
    let life = Math.min(i.maxSessionAgeSec, i.lease.exp - i.nowS);
    let reply: Uint8Array;
    if (!i.offline) {
      if (i.grant === undefined) throw new WelcomeV2Refusal('the backend answered a v2 hello without a grant');
      const g = parseGrant(i.grant).payload;
      // protocol-v2: the grant binds this hello; one for another hello would be refused by P.
      if (!bytesEqual(g.hh, i.hh) || g.dev !== i.dev || g.gw !== i.gw) throw new WelcomeV2Refusal('the grant names another hello, device or gateway');
      life = Math.min(life, g.life);
      if (life < 1) throw new WelcomeV2Refusal('no session life left');
      reply = await signWelcomeV2({ type: 'welcome', version: 2, dev: i.dev, gw: i.gw, hh: i.hh, grant: i.grant, life }, i.signer);
    } else {
      if (life < 1) throw new WelcomeV2Refusal('no session life left');
      reply = await signWelcomeV2({ type: 'welcome', version: 2, dev: i.dev, gw: i.gw, hh: i.hh, cred: i.credential, lease: i.leaseBytes, life }, i.signer);
    }
    const keys = deriveSessionKeysFromSecret(i.z, i.hh, i.dev, i.gw);
    wipeIntermediates(keys);
    return {
      reply,
      session: {
        dev: i.dev,
        hh: i.hh,
        sid: keys.sid,
        kUp: keys.kUp,
        ivUp: keys.ivUp,
        kDn: keys.kDn,
        ivDn: keys.ivDn,
        lifeSeconds: life,
        policy: expandPolicy(i.lease.policy, i.dev),
        offline: i.offline,
      },
    };
  } catch (e) {
    if (e instanceof ProtocolError) throw new WelcomeV2Refusal(`welcome cannot be made: ${e.code}`);
    throw e;
  } finally {
    i.z.fill(0);
  }
}

export interface RejectInput {
  version: ProtocolVersion;
  dev: string;
  reason: ReasonCode;
  hh?: Uint8Array;
  retry?: number;
}

/** A reject of the topic's version: signed with the session key, unsigned only without one. */
export async function encodeRejectOf(r: RejectInput, signer: Signer | undefined): Promise<Uint8Array> {
  const base = { type: 'reject' as const, dev: r.dev, reason: r.reason, ...(r.hh === undefined ? {} : { hh: r.hh }), ...(r.retry === undefined ? {} : { retry: r.retry }) };
  if (r.version === 2) {
    const m = { ...base, version: 2 as const };
    return signer === undefined ? encodeUnsignedRejectV2(m) : signRejectV2(m, signer);
  }
  const m = { ...base, version: 1 as const };
  return signer === undefined ? encodeUnsignedReject(m) : signReject(m, signer);
}
