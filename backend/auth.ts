/**
 * protocol-v1 "Backend checks", request level: the RFC 9421 signature under label `gh` (with
 * RFC 9530 Content-Digest), `created` within 300 s, a fresh nonce, and a registered, unrevoked
 * gateway whose TPM key (`tpm:{gw}`) or current session key (`session:{gw}`) signed it.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { isValidId, ed25519PublicKeyFromRaw, HttpSignatureError, verifyGatehouseRequest, type HttpRequestParts, type HttpSigAlg } from '../protocol/index.js';
import { Problem, type ProblemSlug } from './problem.js';
import type { GatewayRecord } from './registry.js';
import type { BackendStore } from './store.js';

/** Which key a call must be signed with (protocol-v1 "Backend HTTP API" table). */
export type KeyKind = 'tpm' | 'session';

const ALG_FOR: Readonly<Record<KeyKind, HttpSigAlg>> = { tpm: 'ecdsa-p256-sha256', session: 'ed25519' };

export interface Authenticated {
  gateway: GatewayRecord;
  kind: KeyKind;
  keyid: string;
  /** For a session-key call: the raw Ed25519 session public key that signed it (a v2 grant's `spk`). */
  sessionPublicKey?: Uint8Array;
}

export interface AuthDeps {
  registry: BackendStore;
  /** Unix seconds. */
  now: number;
}

function signatureProblem(err: HttpSignatureError): Problem {
  const slug: ProblemSlug = (() => {
    switch (err.code) {
      case 'GH_HTTPSIG_STALE':
        return 'signature-stale';
      case 'GH_HTTPSIG_BAD_SIGNATURE':
        return 'bad-signature';
      case 'GH_HTTPSIG_UNKNOWN_KEY':
        return 'unknown-key';
      case 'GH_DIGEST_MISSING':
      case 'GH_DIGEST_MALFORMED':
      case 'GH_DIGEST_MISMATCH':
        return 'bad-content-digest';
      default:
        return 'signature-invalid';
    }
  })();
  // The messages of HttpSignatureError are our own text about the request, never secrets.
  return new Problem(slug, err.message, { cause: err });
}

/**
 * Authenticate a request that must be signed with a `kind` key, for gateway `pathGw` when the
 * path names one. Throws a {@link Problem}.
 */
export async function authenticate(req: HttpRequestParts, kind: KeyKind, pathGw: string | undefined, deps: AuthDeps): Promise<Authenticated> {
  // verifyGatehouseRequest asks for the keys synchronously; the store answers asynchronously. So:
  // a first pass runs every check that needs no key (syntax, coverage, created, digest) and learns
  // the keyid; the keys are read; a second pass verifies the signature under them.
  let wanted: { gw: string } | undefined;
  const NEED_KEYS = Symbol('need keys');
  const checkKeyid = (keyid: string, alg: HttpSigAlg): string => {
    const m = /^(tpm|session):(.+)$/.exec(keyid);
    if (!m || !isValidId(m[2])) throw new Problem('signature-invalid', 'keyid must be "tpm:{gw}" or "session:{gw}"');
    const gw = m[2];
    if (m[1] !== kind) throw new Problem('wrong-key-for-call', `this call must be signed with a ${kind} key`);
    if (pathGw !== undefined && gw !== pathGw) throw new Problem('wrong-key-for-call', 'keyid names another gateway than the path');
    if (alg !== ALG_FOR[kind]) throw new Problem('signature-invalid', `a ${kind} key signs with alg "${ALG_FOR[kind]}"`);
    return gw;
  };
  const verify = (resolveKeys: (keyid: string, alg: HttpSigAlg) => readonly KeyObject[]): ReturnType<typeof verifyGatehouseRequest> => {
    try {
      return verifyGatehouseRequest(req, { now: deps.now, resolveKeys });
    } catch (err) {
      if (err instanceof HttpSignatureError) throw signatureProblem(err);
      throw err;
    }
  };
  try {
    verify((keyid, alg) => {
      wanted = { gw: checkKeyid(keyid, alg) };
      throw NEED_KEYS;
    });
  } catch (err) {
    if (err !== NEED_KEYS) throw err;
  }
  if (wanted === undefined) throw new Problem('internal');
  const gateway = await deps.registry.getGateway(wanted.gw);
  if (gateway === undefined) throw new Problem('unknown-gateway');
  if (gateway.status !== 'active') throw new Problem('gateway-revoked');
  // protocol-v1: S keeps the two newest session keys of each gateway.
  const sessionKeys = kind === 'tpm' ? [] : (await deps.registry.sessionKeys(wanted.gw, deps.now)).map((s) => s.publicKey);
  const keys = kind === 'tpm' ? [createPublicKey(gateway.tpmPublicKeyPem)] : sessionKeys.map((k) => ed25519PublicKeyFromRaw(k));
  const verified = verify((keyid, alg) => {
    if (checkKeyid(keyid, alg) !== wanted?.gw) throw new Problem('internal');
    return keys;
  });
  // Remember the nonce only once the signature verified, so unsigned junk cannot fill the cache.
  const seen = await deps.registry.checkNonce(verified.keyid, verified.nonce, verified.created, deps.now);
  if (seen === 'replay') throw new Problem('replayed-nonce');
  if (seen === 'full') throw new Problem('busy', 'too many recent requests for this key');
  const spk = kind === 'session' ? sessionKeys[verified.keyIndex] : undefined;
  return { gateway, kind, keyid: verified.keyid, ...(spk !== undefined ? { sessionPublicKey: spk } : {}) };
}
