/**
 * protocol-v1 "Backend HTTP API" on the gateway side: building signed requests and reading
 * answers strictly (content type, size, JSON, RFC 9457 problems).
 */
import { isReasonCode, randomNonce, signGatehouseRequest, type HttpSigAlg, type HttpSign } from '../../protocol/index.js';
import type { BackendHttp, BackendRequest, BackendResponse } from './dispatcher.js';
import { BackendError, type RefusedEntry } from './errors.js';

/** A fresh request nonce: 16 random bytes, base64url (protocol-v1: replayed nonces are refused). */
export function requestNonce(): string {
  return Buffer.from(randomNonce(16)).toString('base64url');
}

export interface SignOptions {
  keyid: string;
  alg: HttpSigAlg;
  sign: HttpSign;
  /** Unix milliseconds, for `created`. */
  nowMs: number;
  nonce?: () => string;
}

/** Build a request signed under label `gh` (RFC 9421), with Content-Digest for a JSON body. */
export async function signedRequest(
  http: BackendHttp,
  method: 'GET' | 'POST',
  path: string,
  json: unknown,
  opts: SignOptions,
): Promise<BackendRequest> {
  const headers: Record<string, string> = { accept: 'application/json' };
  let body: Uint8Array | undefined;
  if (json !== undefined) {
    body = new TextEncoder().encode(JSON.stringify(json));
    headers['content-type'] = 'application/json';
  }
  const sigHeaders = await signGatehouseRequest(
    { method, url: http.url(path), headers, ...(body !== undefined ? { body } : {}) },
    { keyid: opts.keyid, alg: opts.alg, created: Math.floor(opts.nowMs / 1000), nonce: (opts.nonce ?? requestNonce)(), sign: opts.sign },
  );
  return { method, path, headers: { ...headers, ...sigHeaders }, ...(body !== undefined ? { body } : {}) };
}

function mediaType(res: BackendResponse): string {
  const ct = res.headers['content-type'];
  const v = Array.isArray(ct) ? ct[0] : ct;
  return (v ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function parseJson(res: BackendResponse): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(res.body));
  } catch (cause) {
    throw new BackendError('response', `backend answer (${res.status}) is not valid JSON`, { cause, status: res.status });
  }
}

/** RFC 9457 problem fields, each kept only when it has the right type. */
function parseProblem(res: BackendResponse): BackendError['problem'] {
  if (mediaType(res) !== 'application/problem+json' && mediaType(res) !== 'application/json') return undefined;
  let v: unknown;
  try {
    v = parseJson(res);
  } catch {
    return undefined;
  }
  if (!isObject(v)) return undefined;
  const out: NonNullable<BackendError['problem']> = {};
  for (const k of ['type', 'title', 'detail', 'reason'] as const) {
    const f = v[k];
    if (typeof f === 'string' && f.length <= 1024) out[k] = f;
  }
  const refused = readRefused(v['refused']);
  if (refused !== undefined) out.refused = refused;
  return out;
}

/** Most entries a `refused` member may name (an upload carries at most 256). */
const MAX_REFUSED = 256;

/** A `not-granted` problem's `refused: [{index, dev, why}]`, or undefined when absent or malformed. */
function readRefused(v: unknown): RefusedEntry[] | undefined {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_REFUSED) return undefined;
  const out: RefusedEntry[] = [];
  for (const e of v as unknown[]) {
    if (!isObject(e)) return undefined;
    const { index, dev, why } = e;
    if (!Number.isSafeInteger(index) || (index as number) < 0 || typeof dev !== 'string' || dev.length > 64 || typeof why !== 'string' || why.length > 1024) return undefined;
    out.push({ index: index as number, dev, why });
  }
  return out;
}

/**
 * Return the JSON body of a `wantStatus` answer, or throw: 5xx → `server`, 4xx → `client` with
 * the problem (and its `reason` when it is a protocol-v1 reason code), anything else → `response`.
 */
export function expectJson(res: BackendResponse, wantStatus: number): unknown {
  if (res.status >= 500) {
    throw new BackendError('server', `backend answered ${res.status}`, { status: res.status, problem: parseProblem(res) });
  }
  if (res.status >= 400) {
    const problem = parseProblem(res);
    throw new BackendError('client', `backend refused the request (${res.status}${problem?.title !== undefined ? `: ${problem.title}` : ''})`, {
      status: res.status,
      problem,
    });
  }
  if (res.status !== wantStatus) throw new BackendError('response', `backend answered ${res.status}, expected ${wantStatus}`, { status: res.status });
  if (mediaType(res) !== 'application/json') {
    throw new BackendError('response', `backend answer is ${mediaType(res) || 'untyped'}, expected application/json`, { status: res.status });
  }
  return parseJson(res);
}

/** The protocol-v1 reason a 4xx problem carries, if it carries a valid one. */
export function problemReason(err: BackendError): import('../../protocol/index.js').ReasonCode | undefined {
  const r = err.problem?.reason;
  return isReasonCode(r) ? r : undefined;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throw a `response` error naming the field. */
export function badField(what: string): never {
  throw new BackendError('response', `backend answer: ${what}`);
}

/** Exactly these keys, no others (strict: an unexpected field is a failure). */
export function exactKeys(v: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) badField(`${what} has unexpected field "${k}"`);
}
