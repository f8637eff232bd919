/**
 * The protocol's profile of RFC 9421 (protocol-v1 "Backend HTTP API"): label `gh`, covering
 * `"@method" "@target-uri"` and, for a request with a body, `"content-digest" "content-type"`,
 * with parameters `created`, `nonce`, `keyid`, `alg`; and base64url. Nonce replay is stateful and
 * therefore left to the verifier's caller (the backend).
 */
import { type KeyObject } from 'node:crypto';
import { HttpSignatureError } from './errors.js';
import {
  type HttpSigAlg,
  type HttpRequestParts,
  type SignatureParams,
  headerValue,
  buildSignatureBase,
  contentDigest,
  verifyContentDigest,
  type HttpSign,
  signRequest,
  verifyRawSignature,
  isHttpSigAlg,
  labelledSignature,
} from './rfc9421.js';
import { malformed } from './structured-fields.js';

/** protocol-v1 "Backend HTTP API": the label every request is signed under. */
export const GATEHOUSE_LABEL = 'gh';
/** protocol-v1: `created` more than this many seconds off is rejected. */
export const GATEHOUSE_MAX_SKEW_SECONDS = 300;

function hasBody(req: HttpRequestParts): req is HttpRequestParts & { body: Uint8Array } {
  return req.body !== undefined && req.body.length > 0;
}

/** The components protocol-v1 requires for this request. */
export function gatehouseCoveredComponents(req: HttpRequestParts): string[] {
  return hasBody(req) ? ['@method', '@target-uri', 'content-digest', 'content-type'] : ['@method', '@target-uri'];
}

/**
 * Sign a request the protocol-v1 way. Returns the headers to add: `content-digest` (when there is
 * a body; the request must already carry `content-type`), `signature-input`, `signature`.
 */
export async function signGatehouseRequest(
  req: HttpRequestParts,
  opts: { keyid: string; alg: HttpSigAlg; created: number; nonce: string; sign: HttpSign },
): Promise<Record<string, string>> {
  const extra: Record<string, string> = {};
  let signed = req;
  if (hasBody(req)) {
    if (headerValue(req.headers, 'content-type') === undefined) {
      throw new HttpSignatureError('GH_HTTPSIG_COMPONENT', 'a request with a body needs a content-type');
    }
    extra['content-digest'] = contentDigest(req.body);
    signed = { ...req, headers: { ...req.headers, 'content-digest': extra['content-digest'] } };
  }
  const params: SignatureParams = { created: opts.created, nonce: opts.nonce, keyid: opts.keyid, alg: opts.alg };
  const { signatureInput, signature } = await signRequest(signed, {
    label: GATEHOUSE_LABEL,
    covered: gatehouseCoveredComponents(req),
    params,
    sign: opts.sign,
  });
  extra['signature-input'] = signatureInput;
  extra['signature'] = signature;
  return extra;
}

/** What a verified protocol-v1 request signature says. */
export interface VerifiedGatehouseSignature {
  keyid: string;
  alg: HttpSigAlg;
  created: number;
  nonce: string;
  /** Index into the keys `resolveKeys` returned of the one that verified. */
  keyIndex: number;
}

/**
 * protocol-v1 request checks: Signature-Input/Signature under `gh` parse strictly; the required
 * components and parameters are covered; `created` within ±300 s of `now`; `expires` not past;
 * the Content-Digest matches the body; the signature verifies under one of the keys that
 * `resolveKeys(keyid, alg)` returns (it may throw its own error for an unknown or revoked key).
 * Does NOT check nonce replay: the caller remembers nonces.
 */
export function verifyGatehouseRequest(
  req: HttpRequestParts,
  opts: {
    now: number;
    maxSkewSeconds?: number;
    resolveKeys: (keyid: string, alg: HttpSigAlg) => readonly KeyObject[];
  },
): VerifiedGatehouseSignature {
  const { input, signature } = labelledSignature(req, GATEHOUSE_LABEL);
  for (const c of gatehouseCoveredComponents(req)) {
    if (!input.covered.includes(c)) throw new HttpSignatureError('GH_HTTPSIG_COVERAGE', `"${c}" must be covered`);
  }
  const { created, nonce, keyid, alg, expires } = input.params;
  if (created === undefined || nonce === undefined || keyid === undefined || alg === undefined) {
    throw new HttpSignatureError('GH_HTTPSIG_COVERAGE', 'created, nonce, keyid and alg are required');
  }
  if (nonce.length < 8 || nonce.length > 128) throw malformed('nonce must be 8-128 characters');
  if (!isHttpSigAlg(alg)) throw new HttpSignatureError('GH_HTTPSIG_ALG', `unsupported alg "${alg}"`);
  const skew = opts.maxSkewSeconds ?? GATEHOUSE_MAX_SKEW_SECONDS;
  if (Math.abs(opts.now - created) > skew) {
    throw new HttpSignatureError('GH_HTTPSIG_STALE', `created is more than ${skew} s from now`);
  }
  if (expires !== undefined && opts.now > expires) throw new HttpSignatureError('GH_HTTPSIG_STALE', 'signature expired');
  // RFC 9530: a body must match its digest; a Content-Digest sent without a body must match the empty body.
  const digestField = headerValue(req.headers, 'content-digest');
  if (hasBody(req) || digestField !== undefined) verifyContentDigest(digestField, req.body ?? new Uint8Array(0));
  const keys = opts.resolveKeys(keyid, alg);
  if (keys.length === 0) throw new HttpSignatureError('GH_HTTPSIG_UNKNOWN_KEY', `no key for keyid "${keyid}"`);
  const base = new TextEncoder().encode(buildSignatureBase(req, input.covered, input.params));
  const keyIndex = keys.findIndex((k) => verifyRawSignature(alg, k, base, signature));
  if (keyIndex < 0) throw new HttpSignatureError('GH_HTTPSIG_BAD_SIGNATURE', 'signature does not verify');
  return { keyid, alg, created, nonce, keyIndex };
}

// ---------------------------------------------------------------------------------------------
// JSON binary values.

/** protocol-v1: binary values in JSON bodies are base64url without padding. */
export function base64UrlEncode(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/** Strict base64url (no padding, canonical), or undefined. */
export function base64UrlDecode(text: string, maxBytes = 1 << 20): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1 || text.length > Math.ceil((maxBytes * 4) / 3)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) return undefined;
  return new Uint8Array(bytes);
}
