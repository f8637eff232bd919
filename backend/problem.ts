/**
 * RFC 9457 problem details for the reference backend: stable `type` URIs and titles, an
 * optional protocol-v1 `reason` extension, never internal detail (CONTRIBUTING.md §9: internal failures
 * answer a generic problem and log the chain).
 */
import type { ServerResponse } from 'node:http';
import { CodedError } from '../common/errors.js';
import type { ReasonCode } from '../protocol/index.js';

/** The problem types the backend answers with. `type` is `urn:gatehouse:problem:<slug>`. */
export const PROBLEMS = {
  'malformed-request': { status: 400, title: 'Malformed request', reason: 'malformed' },
  'too-many-hellos': { status: 400, title: 'Too many hellos in one request', reason: 'malformed' },
  'bad-content-digest': { status: 400, title: 'Content-Digest missing or does not match the body', reason: 'bad-signature' },
  'signature-invalid': { status: 401, title: 'Missing or malformed HTTP message signature', reason: 'bad-signature' },
  'signature-stale': { status: 401, title: 'Signature created too far from the current time', reason: 'bad-signature' },
  'replayed-nonce': { status: 401, title: 'Signature nonce already used', reason: 'bad-signature' },
  'unknown-gateway': { status: 401, title: 'Unknown gateway', reason: 'bad-signature' },
  'unknown-key': { status: 401, title: 'No valid key for this keyid', reason: 'bad-signature' },
  'bad-signature': { status: 401, title: 'Signature does not verify', reason: 'bad-signature' },
  'gateway-revoked': { status: 403, title: 'Gateway revoked', reason: 'revoked' },
  'wrong-key-for-call': { status: 403, title: 'This call must be signed by another key', reason: 'bad-signature' },
  'not-found': { status: 404, title: 'Not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'body-too-large': { status: 413, title: 'Request body too large', reason: 'malformed' },
  'unsupported-media-type': { status: 415, title: 'Content-Type must be application/json', reason: 'malformed' },
  'too-many-records': { status: 400, title: 'Too many records in one request', reason: 'malformed' },
  'not-granted': { status: 403, title: 'A record names a device not granted at this gateway, or a topic outside its policy', reason: 'not-allowed-here' },
  'busy': { status: 503, title: 'Backend busy, retry later', reason: 'busy' },
  'store-unavailable': { status: 503, title: 'Backend storage unavailable, retry later', reason: 'busy' },
  'internal': { status: 500, title: 'Internal error', reason: 'internal' },
} as const satisfies Record<string, { status: number; title: string; reason?: ReasonCode }>;

export type ProblemSlug = keyof typeof PROBLEMS;

export const PROBLEM_TYPE_PREFIX = 'urn:gatehouse:problem:';

type SnakeCase<S extends string> = S extends `${infer A}-${infer B}` ? `${A}_${SnakeCase<B>}` : S;

/** The stable code of each problem: `GH_BACKEND_` and the slug, e.g. `GH_BACKEND_REPLAYED_NONCE`. */
export type ProblemCode = `GH_BACKEND_${Uppercase<SnakeCase<ProblemSlug>>}`;

/**
 * Thrown by request handling; turned into a problem answer. `detail` must be safe to show.
 * Code: `GH_BACKEND_` and the slug, e.g. `GH_BACKEND_REPLAYED_NONCE`.
 */
export class Problem extends CodedError<ProblemCode> {
  /** RFC 9457 §3.2 extension members (safe to show), e.g. which records were refused. */
  readonly extra: Readonly<Record<string, unknown>> | undefined;

  constructor(
    readonly slug: ProblemSlug,
    readonly detail?: string,
    options?: { cause?: unknown; extra?: Record<string, unknown> },
  ) {
    super(`GH_BACKEND_${slug.toUpperCase().replace(/-/g, '_')}` as ProblemCode, detail ?? PROBLEMS[slug].title, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.extra = options?.extra;
  }
}

/** The RFC 9457 body for a problem. */
export function problemBody(slug: ProblemSlug, detail?: string, extra?: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const p: { status: number; title: string; reason?: ReasonCode } = PROBLEMS[slug];
  return {
    ...(extra ?? {}),
    type: `${PROBLEM_TYPE_PREFIX}${slug}`,
    title: p.title,
    status: p.status,
    ...(detail !== undefined ? { detail } : {}),
    ...(p.reason !== undefined ? { reason: p.reason } : {}),
  };
}

/** Send a problem answer (and close the connection when the request was not read to the end). */
export function sendProblem(res: ServerResponse, slug: ProblemSlug, opts: { detail?: string; close?: boolean; retryAfter?: number; extra?: Readonly<Record<string, unknown>> } = {}): void {
  const body = JSON.stringify(problemBody(slug, opts.detail, opts.extra));
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (opts.close === true) headers['connection'] = 'close';
  if (opts.retryAfter !== undefined) headers['retry-after'] = opts.retryAfter;
  res.writeHead(PROBLEMS[slug].status, headers).end(body);
}

/** Send a JSON answer. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
    .end(body);
}
