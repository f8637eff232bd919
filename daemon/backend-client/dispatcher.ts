/**
 * The HTTPS link to the backend: an undici `Agent` built with a strict TLS policy, injected
 * wherever it is used (never installed as the global dispatcher), and `BackendHttp`, a thin
 * request function that bounds answers, never follows redirects and maps every failure to a
 * typed `BackendError`.
 *
 * TLS policy (docs/backend-client.md "TLS policy"):
 * - trust only the CA from config (`ca` replaces node's system roots, on purpose);
 * - TLS 1.2 minimum;
 * - the certificate must name the expected host in a subjectAltName, checked with node's
 *   `tls.checkServerIdentity` (exact label matching, never a substring test); a CN-only
 *   certificate is refused (RFC 9525 §6.3: CN-ID is not used);
 * - an optional SPKI pin is checked after the name check, never instead of it.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { Agent as UndiciAgent, buildConnector as UndiciBuildConnector, Dispatcher, errors as UndiciErrors } from 'undici';
import { BackendConfigError, BackendError, type BackendErrorKind } from './errors.js';

// Only the parts of undici this link uses: its Agent (HTTP/1.1 client pool), the TLS connector,
// its error classes and `request`. undici's index also loads fetch, WebSocket, EventSource, the
// caches, mocks, interceptors and HTTP/2, which cost the daemon ~5 MB of resident memory it never
// uses (docs/dependencies.md "undici"). undici has no `exports` map, so these paths are public
// files of the exactly pinned version; they are the same modules the index re-exports.
const undiciFile = createRequire(import.meta.url);
const Agent = undiciFile('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
const buildConnector = undiciFile('undici/lib/core/connect.js') as typeof UndiciBuildConnector;
const undiciErrors = undiciFile('undici/lib/core/errors.js') as typeof UndiciErrors;
const undiciRequest = undiciFile('undici/lib/api/api-request.js') as Dispatcher['request'];

/**
 * The backend Agent. undici's index mixes its API (`request`, `stream`, …) into every dispatcher;
 * without the index this subclass carries the one method `BackendHttp` calls.
 */
class BackendAgent extends Agent {}
BackendAgent.prototype.request = undiciRequest;

export interface BackendTlsOptions {
  /** Backend base URL, `https://host[:port]` (a path is not allowed). */
  url: string;
  /** PEM CA bundle that is the only trust anchor for the backend. */
  ca: string | Uint8Array;
  /**
   * The name the certificate must carry. Defaults to the URL's host. Required when the URL host
   * is an IP address and the certificate names a DNS name; also sent as SNI.
   */
  serverName?: string;
  /**
   * Connect to this address instead of resolving the URL host (like curl `--resolve`). The
   * certificate is still checked against `serverName` / the URL host.
   */
  connectAddress?: string;
  /** Optional SPKI pins: base64 SHA-256 of the DER SubjectPublicKeyInfo. Checked after the name. */
  spkiPinsSha256?: readonly string[];
  /** Default 5000. */
  connectTimeoutMs?: number;
  /** Time to the response headers (default 10000). */
  headersTimeoutMs?: number;
  /** Idle time between body chunks (default 10000). */
  bodyTimeoutMs?: number;
  /** Keep an idle connection this long (default 30000). */
  keepAliveTimeoutMs?: number;
  /** Concurrent connections to the backend (default 4). */
  connections?: number;
}

/** The parsed form of the backend URL. */
export interface BackendOrigin {
  origin: string;
  host: string;
  /** The name certificates are checked against. */
  expectedName: string;
}

/** Validate the backend URL and work out the expected certificate name. */
export function parseBackendOrigin(url: string, serverName?: string): BackendOrigin {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new BackendConfigError(`backend url is not a URL: ${url}`, { cause });
  }
  if (u.protocol !== 'https:') throw new BackendConfigError(`backend url must be https: ${url}`);
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
    throw new BackendConfigError(`backend url must be an origin only (https://host[:port]): ${url}`);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const expectedName = (serverName ?? host).toLowerCase();
  return { origin: u.origin, host, expectedName };
}

/**
 * The identity check run on every handshake. Exported for tests and `check`.
 * Returns an Error (refuse) or undefined (accept), as `tls.checkServerIdentity` does.
 */
export function checkBackendIdentity(
  expectedName: string,
  cert: PeerCertificate,
  spkiPinsSha256?: readonly string[],
): Error | undefined {
  if (isIP(expectedName) === 0) {
    // RFC 9525 §6.3: only DNS-IDs count; node would fall back to the CN, so insist on a SAN.
    const sans = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('DNS:'));
    if (sans.length === 0) {
      return Object.assign(new Error(`backend certificate has no DNS subjectAltName (CN-only certificates are refused)`), {
        code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      });
    }
  }
  const nameError = checkServerIdentity(expectedName, cert);
  if (nameError !== undefined) return nameError;
  if (spkiPinsSha256 !== undefined && spkiPinsSha256.length > 0) {
    const spki = spkiOf(cert);
    const pin = createHash('sha256').update(spki).digest('base64');
    if (!spkiPinsSha256.includes(pin)) {
      return Object.assign(new Error(`backend certificate key does not match the configured SPKI pin`), {
        code: 'ERR_TLS_SPKI_PIN_MISMATCH',
      });
    }
  }
  return undefined;
}

function spkiOf(cert: PeerCertificate): Buffer {
  // `cert.pubkey` is only the EC point for EC keys; the pin is over the whole SPKI.
  return new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
}

/** Build the injected undici Agent for the backend with the TLS policy above. */
export function createBackendDispatcher(options: BackendTlsOptions): UndiciAgent {
  const origin = parseBackendOrigin(options.url, options.serverName);
  const sni = isIP(origin.expectedName) === 0 ? origin.expectedName : undefined;
  const pins = options.spkiPinsSha256;
  const base = buildConnector({
    ca: typeof options.ca === 'string' ? options.ca : Buffer.from(options.ca),
    minVersion: 'TLSv1.2',
    rejectUnauthorized: true,
    timeout: options.connectTimeoutMs ?? 5000,
    keepAlive: true,
    ...(sni !== undefined ? { servername: sni } : {}),
    checkServerIdentity: (_host: string, cert: PeerCertificate) => checkBackendIdentity(origin.expectedName, cert, pins),
  });
  const connect: UndiciBuildConnector.connector = (opts, callback) => {
    // SNI is the expected name even when the URL host is an IP or connectAddress is used.
    base(
      {
        ...opts,
        hostname: options.connectAddress ?? opts.hostname,
        ...(sni !== undefined ? { servername: sni } : {}),
      },
      callback,
    );
  };
  return new BackendAgent({
    connect,
    connections: options.connections ?? 4,
    headersTimeout: options.headersTimeoutMs ?? 10000,
    bodyTimeout: options.bodyTimeoutMs ?? 10000,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 30000,
    pipelining: 1,
  });
}

export interface BackendRequest {
  method: 'GET' | 'POST';
  /** Path and query, starting with `/`. */
  path: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  signal?: AbortSignal;
}

export interface BackendResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

/** Drop an unread body; destroying it emits an abort error nobody needs. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
]);

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** Map a transport failure to a BackendError kind. */
export function classifyTransportError(err: unknown, signal?: AbortSignal): BackendError {
  if (err instanceof BackendError) return err;
  if (signal?.aborted === true) {
    const reason: unknown = signal.reason;
    const timedOut = typeof reason === 'object' && reason !== null && 'name' in reason && reason.name === 'TimeoutError';
    return new BackendError(timedOut ? 'timeout' : 'aborted', timedOut ? 'backend request deadline passed' : 'backend request aborted', { cause: err });
  }
  // undici wraps connector errors sometimes; look one level down too.
  const inner = typeof err === 'object' && err !== null && 'cause' in err ? (err as { cause: unknown }).cause : undefined;
  const code = codeOf(err) ?? codeOf(inner);
  if (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code.startsWith('EPROTO'))) {
    return new BackendError('tls', `TLS handshake with the backend refused (${code})`, { cause: err });
  }
  if (err instanceof undiciErrors.ConnectTimeoutError || err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || code === 'ETIMEDOUT') {
    return new BackendError('timeout', `backend timed out (${code ?? 'timeout'})`, { cause: err });
  }
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new BackendError('connect', `cannot connect to the backend (${code})`, { cause: err });
  }
  if (err instanceof undiciErrors.RequestAbortedError) {
    return new BackendError('aborted', 'backend request aborted', { cause: err });
  }
  return new BackendError('network', `backend connection failed (${code ?? 'error'})`, { cause: err });
}

/** Hears every backend request: its call (verify, session, revocations, other), seconds, and error kind if it failed. */
export type BackendObserver = (call: BackendCall, seconds: number, error?: BackendErrorKind) => void;

export type BackendCall = 'verify' | 'session' | 'revocations' | 'telemetry' | 'commands' | 'acks' | 'other';

/** The metrics label of a request path (bounded: never the gateway id in the path). */
export function backendCall(path: string): BackendCall {
  if (path === '/v1/verify') return 'verify';
  if (path.startsWith('/v1/gateways/')) {
    const rest = path.split('?', 1)[0]!;
    if (rest.endsWith('/sessions')) return 'session';
    if (rest.endsWith('/revocations')) return 'revocations';
    if (rest.endsWith('/telemetry')) return 'telemetry';
    if (rest.endsWith('/commands')) return 'commands';
    if (rest.endsWith('/acks')) return 'acks';
  }
  return 'other';
}

/**
 * Requests to the backend over the injected dispatcher. Answers are bounded; a 3xx is an error
 * (redirects are never followed, so a signed request cannot be bounced to another origin).
 */
export class BackendHttp {
  readonly origin: string;
  readonly #dispatcher: Dispatcher;
  readonly #maxResponseBytes: number;
  readonly #observe: BackendObserver | undefined;

  constructor(options: { url: string; dispatcher: Dispatcher; maxResponseBytes?: number; observe?: BackendObserver }) {
    this.origin = parseBackendOrigin(options.url).origin;
    this.#dispatcher = options.dispatcher;
    this.#maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024;
    this.#observe = options.observe;
  }

  /** The absolute URL of a path, as it is signed (`@target-uri`). */
  url(path: string): string {
    return new URL(path, this.origin).href;
  }

  /**
   * Send one request. Throws BackendError for transport failures, 3xx and over-long answers.
   * The observer (metrics) hears every request's duration and, for a failure, its error kind
   * (an HTTP 4xx/5xx answer is not thrown here; the caller's check classifies it).
   */
  async request(req: BackendRequest): Promise<BackendResponse> {
    const observe = this.#observe;
    if (observe === undefined) return this.#send(req);
    const t0 = performance.now();
    const call = backendCall(req.path);
    try {
      const res = await this.#send(req);
      const kind = res.status >= 500 ? 'server' : res.status >= 400 ? 'client' : undefined;
      observe(call, (performance.now() - t0) / 1000, kind);
      return res;
    } catch (err) {
      observe(call, (performance.now() - t0) / 1000, err instanceof BackendError ? err.kind : 'network');
      throw err;
    }
  }

  async #send(req: BackendRequest): Promise<BackendResponse> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#dispatcher.request({
        origin: this.origin,
        method: req.method,
        path: req.path,
        headers: req.headers ?? {},
        ...(req.body !== undefined ? { body: Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength) } : {}),
        ...(req.signal !== undefined ? { signal: req.signal } : {}),
      });
    } catch (err) {
      throw classifyTransportError(err, req.signal);
    }
    if (res.statusCode >= 300 && res.statusCode < 400) {
      discard(res.body);
      throw new BackendError('redirect', `backend answered ${res.statusCode}; redirects are not followed`, { status: res.statusCode });
    }
    const declared = Number(res.headers['content-length'] ?? Number.NaN);
    if (Number.isFinite(declared) && declared > this.#maxResponseBytes) {
      discard(res.body);
      throw new BackendError('response', `backend answer of ${declared} bytes exceeds ${this.#maxResponseBytes}`, { status: res.statusCode });
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body) {
        const b = chunk as Buffer;
        total += b.length;
        if (total > this.#maxResponseBytes) {
          discard(res.body);
          throw new BackendError('response', `backend answer exceeds ${this.#maxResponseBytes} bytes`, { status: res.statusCode });
        }
        chunks.push(b);
      }
    } catch (err) {
      throw classifyTransportError(err, req.signal);
    }
    return { status: res.statusCode, headers: res.headers, body: new Uint8Array(Buffer.concat(chunks)) };
  }
}
