/**
 * RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest, pure (no I/O): the generic part.
 * (protocol/http-signature.ts is the module to import; the protocol's profile is in gatehouse.ts.)
 * RFC 8941 structured fields as far as the two headers need them (dictionaries of
 * inner lists and byte sequences with parameters), the signature base (RFC 9421 §2.5), signing
 * through an async `sign` callback (so a TPM can sign) and verification with node:crypto.
 *
 * protocol-v1 profile: label `gh`, covering `"@method" "@target-uri"` and, for a request with a
 * body, `"content-digest" "content-type"`, with parameters `created`, `nonce`, `keyid`, `alg`.
 * Nonce replay is stateful and therefore left to the verifier's caller (the backend).
 */
import { createHash, timingSafeEqual, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { HttpSignatureError } from './errors.js';
import {
  isInnerList,
  malformed,
  parseSfDictionary,
  serializeSfBareItem,
  serializeSfInnerList,
  type SfMember,
  type SfParams,
} from './structured-fields.js';

export { HttpSignatureError, type HttpSignatureErrorCode } from './errors.js';
export {
  SF_LIMITS,
  SfToken,
  parseSfDictionary,
  serializeSfBareItem,
  serializeSfInnerList,
  serializeSfParams,
  type SfBareItem,
  type SfInnerList,
  type SfItem,
  type SfMember,
  type SfParams,
} from './structured-fields.js';

/** Algorithms of the RFC 9421 §6.2 registry that protocol-v1 uses. */
export type HttpSigAlg = 'ed25519' | 'ecdsa-p256-sha256';
export const HTTP_SIG_ALGS: readonly HttpSigAlg[] = ['ed25519', 'ecdsa-p256-sha256'];

// ---------------------------------------------------------------------------------------------
// Messages and components (RFC 9421 §2).

/** The parts of a request that signatures and digests cover. Header names are matched case-insensitively. */
export interface HttpRequestParts {
  method: string;
  /** The full target URI, e.g. `https://backend.example.com:8443/v1/verify`. */
  url: string;
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  body?: Uint8Array;
}

/** Signature parameters (RFC 9421 §2.3), serialised in the object's key order. */
export interface SignatureParams {
  created?: number;
  expires?: number;
  nonce?: string;
  alg?: string;
  keyid?: string;
  tag?: string;
}

const PARAM_NAMES = ['created', 'expires', 'nonce', 'alg', 'keyid', 'tag'] as const;

/** RFC 9421 §2.1: the values of every line of a field, trimmed, joined with ", ". */
export function headerValue(headers: HttpRequestParts['headers'], name: string): string | undefined {
  const lower = name.toLowerCase();
  const values: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== lower || v === undefined) continue;
    for (const line of typeof v === 'string' ? [v] : v) values.push(line.replace(/\r?\n[ \t]+/g, ' ').trim());
  }
  return values.length === 0 ? undefined : values.join(', ');
}

const COMPONENT_RE = /^(@[a-z-]+|[!#$%&'*+\-.^_`|~0-9a-z]+)$/;

/** The value of one covered component (RFC 9421 §2.1, §2.2). */
export function componentValue(req: HttpRequestParts, component: string): string {
  if (!component.startsWith('@')) {
    const v = headerValue(req.headers, component);
    if (v === undefined) throw new HttpSignatureError('GH_HTTPSIG_COMPONENT', `covered header "${component}" is absent`);
    return v;
  }
  let url: URL;
  try {
    url = new URL(req.url);
  } catch (cause) {
    throw new HttpSignatureError('GH_HTTPSIG_COMPONENT', 'target URI is not absolute', { cause });
  }
  switch (component) {
    case '@method':
      return req.method; // §2.2.1: case-sensitive, as sent
    case '@target-uri':
      return url.href; // §2.2.2, in the WHATWG-normalised form both sides compute
    case '@authority':
      return url.host.toLowerCase(); // §2.2.3: default port omitted
    case '@scheme':
      return url.protocol.slice(0, -1).toLowerCase();
    case '@path':
      return url.pathname === '' ? '/' : url.pathname; // §2.2.6
    case '@query':
      return url.search === '' ? '?' : url.search; // §2.2.7
    case '@request-target':
      return url.pathname + url.search;
    default:
      throw new HttpSignatureError('GH_HTTPSIG_COMPONENT', `unsupported derived component "${component}"`);
  }
}

/** Parameters in the object's own key order: the order the signer chose and the verifier received (§2.3). */
function paramsMap(params: SignatureParams): SfParams {
  const m: SfParams = new Map();
  for (const [k, v] of Object.entries(params) as [string, string | number | undefined][]) {
    if (v === undefined) continue;
    if (!(PARAM_NAMES as readonly string[]).includes(k)) throw malformed(`unknown signature parameter "${k}"`);
    m.set(k, v);
  }
  return m;
}

/** The `@signature-params` value: the inner list of covered components with its parameters. */
export function serializeSignatureParams(covered: readonly string[], params: SignatureParams): string {
  return serializeSfInnerList({ items: covered.map((c) => ({ value: c, params: new Map() })), params: paramsMap(params) });
}

/** RFC 9421 §2.5: the signature base, as UTF-8 text (no trailing newline). */
export function buildSignatureBase(req: HttpRequestParts, covered: readonly string[], params: SignatureParams): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const c of covered) {
    if (!COMPONENT_RE.test(c)) throw new HttpSignatureError('GH_HTTPSIG_MALFORMED', `bad component identifier "${c}"`);
    // §2.5: a component may be covered only once.
    if (seen.has(c)) throw new HttpSignatureError('GH_HTTPSIG_MALFORMED', `component "${c}" covered twice`);
    seen.add(c);
    const value = componentValue(req, c);
    if (/[\r\n]/.test(value)) throw new HttpSignatureError('GH_HTTPSIG_COMPONENT', `component "${c}" has a line break`);
    lines.push(`"${c}": ${value}`);
  }
  lines.push(`"@signature-params": ${serializeSignatureParams(covered, params)}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// RFC 9530 Content-Digest.

const DIGEST_ALGS: Readonly<Record<string, string>> = { 'sha-256': 'sha256', 'sha-512': 'sha512' };

/** `sha-256=:…:` for a body (RFC 9530 §2). */
export function contentDigest(body: Uint8Array): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
}

/**
 * Check a Content-Digest field against a body: every known algorithm present must match and
 * `sha-256` must be present (protocol-v1). Unknown algorithms are ignored (RFC 9530 §2).
 */
export function verifyContentDigest(field: string | undefined, body: Uint8Array, required = 'sha-256'): void {
  if (field === undefined) throw new HttpSignatureError('GH_DIGEST_MISSING', 'Content-Digest is missing');
  let dict: Map<string, SfMember>;
  try {
    dict = parseSfDictionary(field);
  } catch (cause) {
    throw new HttpSignatureError('GH_DIGEST_MALFORMED', 'Content-Digest is not a valid dictionary', { cause });
  }
  if (!dict.has(required)) throw new HttpSignatureError('GH_DIGEST_MISSING', `Content-Digest has no ${required}`);
  for (const [alg, member] of dict) {
    const nodeAlg = DIGEST_ALGS[alg];
    if (nodeAlg === undefined) continue;
    if (isInnerList(member) || !(member.value instanceof Uint8Array)) {
      throw new HttpSignatureError('GH_DIGEST_MALFORMED', `Content-Digest ${alg} is not a byte sequence`);
    }
    const actual = createHash(nodeAlg).update(body).digest();
    const claimed = member.value;
    if (claimed.length !== actual.length || !timingSafeEqual(claimed, actual)) {
      throw new HttpSignatureError('GH_DIGEST_MISMATCH', `Content-Digest ${alg} does not match the body`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Signature-Input / Signature headers.

/** One parsed Signature-Input member. */
export interface SignatureInput {
  covered: string[];
  params: SignatureParams;
}

/** Parse `Signature-Input` into label → covered components and parameters (RFC 9421 §4.1). */
export function parseSignatureInput(field: string): Map<string, SignatureInput> {
  const out = new Map<string, SignatureInput>();
  for (const [label, member] of parseSfDictionary(field)) {
    if (!isInnerList(member)) throw malformed(`Signature-Input "${label}" is not an inner list`);
    const covered: string[] = [];
    for (const item of member.items) {
      if (typeof item.value !== 'string') throw malformed('component identifier is not a string');
      // Component parameters (sf, key, bs, req, tr) are not used by protocol-v1: refuse, never ignore.
      if (item.params.size > 0) throw malformed(`component parameters on "${item.value}" are not supported`);
      covered.push(item.value);
    }
    const params: SignatureParams = {};
    for (const [k, v] of member.params) {
      if (k === 'created' || k === 'expires') {
        if (typeof v !== 'number' || v < 0) throw malformed(`parameter ${k} is not a non-negative integer`);
        params[k] = v;
      } else if (k === 'nonce' || k === 'alg' || k === 'keyid' || k === 'tag') {
        if (typeof v !== 'string') throw malformed(`parameter ${k} is not a string`);
        params[k] = v;
      } else {
        throw malformed(`unknown signature parameter "${k}"`);
      }
    }
    // Insertion order is the received order: the @signature-params line re-serialises it (§2.3).
    out.set(label, { covered, params });
  }
  return out;
}

/** Parse `Signature` into label → signature bytes (RFC 9421 §4.2). */
export function parseSignatureField(field: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [label, member] of parseSfDictionary(field)) {
    if (isInnerList(member) || !(member.value instanceof Uint8Array)) throw malformed(`Signature "${label}" is not a byte sequence`);
    out.set(label, member.value);
  }
  return out;
}

export function serializeSignatureInput(label: string, covered: readonly string[], params: SignatureParams): string {
  return `${label}=${serializeSignatureParams(covered, params)}`;
}

export function serializeSignatureField(label: string, signature: Uint8Array): string {
  return `${label}=${serializeSfBareItem(signature)}`;
}

// ---------------------------------------------------------------------------------------------
// Sign and verify.

/** Signs a signature base; async so the TPM can sign off-thread. Returns raw bytes (64 for both algs). */
export type HttpSign = (base: Uint8Array) => Promise<Uint8Array>;

/** Sign a request: returns the base and the two header values. Covers exactly `covered`. */
export async function signRequest(
  req: HttpRequestParts,
  opts: { label: string; covered: readonly string[]; params: SignatureParams; sign: HttpSign },
): Promise<{ base: string; signatureInput: string; signature: string }> {
  const base = buildSignatureBase(req, opts.covered, opts.params);
  const sig = await opts.sign(new TextEncoder().encode(base));
  return {
    base,
    signatureInput: serializeSignatureInput(opts.label, opts.covered, opts.params),
    signature: serializeSignatureField(opts.label, sig),
  };
}

/** Verify a raw signature over a base with node:crypto (RFC 9421 §3.3.4 ECDSA r||s, §3.3.6 Ed25519). */
export function verifyRawSignature(alg: HttpSigAlg, key: KeyObject, base: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  try {
    if (alg === 'ed25519') return key.asymmetricKeyType === 'ed25519' && cryptoVerify(null, base, key, signature);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return false;
    return cryptoVerify('sha256', base, { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

/**
 * Verify the signature labelled `label` on a request under `key` (RFC 9421 §3.2), without any
 * profile rules. Returns the parsed Signature-Input member; throws {@link HttpSignatureError}.
 */
export function verifyMessageSignature(req: HttpRequestParts, label: string, alg: HttpSigAlg, key: KeyObject): SignatureInput {
  const { input, signature } = labelledSignature(req, label);
  const base = new TextEncoder().encode(buildSignatureBase(req, input.covered, input.params));
  if (!verifyRawSignature(alg, key, base, signature)) throw new HttpSignatureError('GH_HTTPSIG_BAD_SIGNATURE', 'signature does not verify');
  return input;
}

/** The parsed `Signature-Input` and `Signature` members of one label (RFC 9421 §4.1, §4.2). */
export function labelledSignature(req: HttpRequestParts, label: string): { input: SignatureInput; signature: Uint8Array } {
  const inputField = headerValue(req.headers, 'signature-input');
  const sigField = headerValue(req.headers, 'signature');
  if (inputField === undefined || sigField === undefined) {
    throw new HttpSignatureError('GH_HTTPSIG_MISSING', 'Signature-Input and Signature are required');
  }
  const input = parseSignatureInput(inputField).get(label);
  const signature = parseSignatureField(sigField).get(label);
  if (input === undefined || signature === undefined) {
    throw new HttpSignatureError('GH_HTTPSIG_MISSING', `no signature labelled "${label}"`);
  }
  return { input, signature };
}

export function isHttpSigAlg(v: unknown): v is HttpSigAlg {
  return typeof v === 'string' && (HTTP_SIG_ALGS as readonly string[]).includes(v);
}
