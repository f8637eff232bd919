/**
 * The reference backend over HTTPS (node:https): protocol-v1 "Backend HTTP API". Runnable
 * standalone (`gatehouse-backend serve`) and embeddable in-process (`startBackend`), e.g. by the
 * demo and by tests, on port 0.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'winston';
import { silentLogger } from '../common/log/logger.js';
import type { HttpRequestParts } from '../protocol/index.js';
import { createSession, revocations, verifyHellos, type ApiDeps } from './api.js';
import { CommandWaiters } from './command-waiters.js';
import { issueCommand, type IssueCommand } from './commands.js';
import { pollCommands, uploadAcks, uploadTelemetry } from './data-plane-api.js';
import type { CommandRecord } from './data-plane-store.js';
import { authenticate, type Authenticated, type KeyKind } from './auth.js';
import { ensureDataDir } from './data-dir.js';
import { Problem, sendJson, sendProblem } from './problem.js';
import { BackendConfigError } from './errors.js';
import { openStore } from './open-store.js';
import type { BackendStore } from './store.js';
import { StoreError } from './errors.js';
import { ensureSigningKey } from './signing-key.js';
import { IssuedLeases } from './issued-leases.js';

export const REGISTRY_FILE = 'registry.sqlite';

export interface BackendOptions {
  /** Holds the signing key (`backend-signing-key.pem`, created if missing) and, by default, `registry.sqlite`. */
  dataDir: string;
  /**
   * Where the registry, session keys and nonces live: `sqlite:PATH` or `postgres://…`
   * (backend/store.ts). Default `sqlite:<dataDir>/registry.sqlite`. Replicas share a PostgreSQL store.
   */
  store?: string;
  /** PostgreSQL pool size per process. Default 10. */
  storePoolSize?: number;
  tls: { certPem: string; keyPem: string };
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Unix milliseconds; injected so tests control `created` windows and expiry. */
  clock?: { now(): number };
  logger?: Logger;
  /** Lease lifetime, seconds. Default 86 400 (24 h). */
  leaseSeconds?: number;
  /** Cap on a session credential's lifetime, seconds. Default 172 800 (48 h). */
  maxSessionSeconds?: number;
  /** protocol-v2: a grant's `life`, the longest peripheral session allowed, seconds. Default 86 400 (24 h). */
  grantLifeSeconds?: number;
  /** Request body limit, bytes. Default 512 KiB (256 hellos of the 1024-byte maximum fit). */
  maxBodyBytes?: number;
  /**
   * The origin gateways sign for (`https://host[:port]`): every request's `@target-uri` is this
   * origin and the request path. Required, and never taken from the request's Host header, so a
   * request signed for another deployment does not verify here. A function of the bound port is
   * for listeners on port 0 (tests, the embedded demo).
   */
  publicOrigin: string | ((port: number) => string);
  /** Live request nonces each keyid may hold before its requests get 503 `busy`. Default 10 000. */
  noncesPerKeyid?: number;
  /** Command long polls waiting at once in this process; beyond, 503 `busy`. Default 1000. */
  maxCommandWaiters?: number;
}

/** Why `origin` cannot be a public origin, or undefined: `https://host[:port]`, nothing more. */
export function publicOriginProblem(origin: string): string | undefined {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return `${JSON.stringify(origin)} is not a URL`;
  }
  if (u.protocol !== 'https:') return 'the public origin must be https://';
  if (u.username !== '' || u.password !== '') return 'the public origin must not carry credentials';
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '') return 'the public origin is scheme, host and port only (no path, query or fragment)';
  if (origin.endsWith('/')) return 'the public origin has no trailing slash';
  return undefined;
}

function resolveOrigin(o: BackendOptions['publicOrigin'], port: number): string {
  const origin = typeof o === 'function' ? o(port) : o;
  if (typeof origin !== 'string') throw new BackendConfigError('GH_BACKEND_ORIGIN', 'publicOrigin is required');
  const problem = publicOriginProblem(origin);
  if (problem !== undefined) throw new BackendConfigError('GH_BACKEND_ORIGIN', problem);
  return new URL(origin).origin;
}

export interface RunningBackend {
  /** `https://host:port` (no trailing slash): where it listens. */
  url: string;
  /** The configured public origin requests are verified against. */
  origin: string;
  port: number;
  /** The store this backend reads and writes (shared with other replicas on PostgreSQL). */
  store: BackendStore;
  /** `pk_S`, raw 32 bytes: what peripherals pin. */
  publicKeyRaw: Uint8Array;
  /** `kid_S`. */
  kid: string;
  /** Command long polls waiting in this process now. */
  readonly waitingPolls: number;
  /** Sign and queue a command (protocol-v2 "Commands"); throws `CommandError`. */
  issueCommand(c: IssueCommand): Promise<CommandRecord>;
  close(): Promise<void>;
}

interface Route {
  method: 'GET' | 'POST';
  path: RegExp;
  kind: KeyKind;
  handle(ctx: { auth: Authenticated; body: unknown; query: URLSearchParams; now: number; signal: AbortSignal }): Promise<{ status: number; value: unknown }>;
}

/** Read the body, refusing more than `max` bytes (by Content-Length up front, or while streaming). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) return Promise.reject(new Problem('body-too-large', `at most ${max} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > max) {
        req.off('data', onData);
        reject(new Problem('body-too-large', `at most ${max} bytes`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (cause) {
    throw new Problem('malformed-request', 'body is not valid UTF-8 JSON', { cause });
  }
}

/** Start the backend; resolves once it listens. */
export async function startBackend(opts: BackendOptions): Promise<RunningBackend> {
  const logger = (opts.logger ?? silentLogger()).child({ area: 'backend' });
  const clock = opts.clock ?? { now: () => Date.now() };
  const nowS = (): number => Math.floor(clock.now() / 1000);
  // A fixed origin is checked before anything is created; a function of the port after listen.
  if (typeof opts.publicOrigin !== 'function') resolveOrigin(opts.publicOrigin, 0);
  ensureDataDir(opts.dataDir);
  const { signer, created } = await ensureSigningKey(opts.dataDir);
  if (created) logger.info('backend signing key created', { kid: signer.kid });
  const registry = await openStore(opts.store ?? `sqlite:${join(opts.dataDir, REGISTRY_FILE)}`, {
    now: nowS,
    logger,
    ...(opts.noncesPerKeyid !== undefined ? { noncesPerKeyid: opts.noncesPerKeyid } : {}),
    ...(opts.storePoolSize !== undefined ? { poolSize: opts.storePoolSize } : {}),
  });
  let origin = '';
  const maxBody = opts.maxBodyBytes ?? 512 * 1024;
  const deps: ApiDeps = {
    registry,
    signer,
    logger,
    leaseSeconds: opts.leaseSeconds ?? 86_400,
    leases: new IssuedLeases(),
    maxSessionSeconds: opts.maxSessionSeconds ?? 172_800,
    grantLifeSeconds: opts.grantLifeSeconds ?? 86_400,
  };
  const waiters = new CommandWaiters(opts.maxCommandWaiters ?? 1000);
  let unsubscribe: () => void;
  try {
    unsubscribe = await registry.onCommandQueued((gw) => waiters.notify(gw));
  } catch (err) {
    await registry.close();
    throw err;
  }
  const gwFrom = (m: RegExpExecArray): string | undefined => m[1];
  const routes: Route[] = [
    {
      method: 'POST',
      path: /^\/v1\/gateways\/([A-Za-z0-9._:-]{1,64})\/sessions$/,
      kind: 'tpm',
      handle: async ({ auth, body, now }) => ({ status: 201, value: await createSession(body, auth.gateway, now, deps) }),
    },
    {
      method: 'POST',
      path: /^\/v1\/verify$/,
      kind: 'session',
      handle: async ({ auth, body, now }) => ({ status: 200, value: await verifyHellos(body, auth, now, deps) }),
    },
    {
      method: 'GET',
      path: /^\/v1\/gateways\/([A-Za-z0-9._:-]{1,64})\/revocations$/,
      kind: 'session',
      handle: async ({ auth, query }) => ({ status: 200, value: await revocations(query, auth.gateway, deps) }),
    },
    {
      method: 'POST',
      path: /^\/v1\/gateways\/([A-Za-z0-9._:-]{1,64})\/telemetry$/,
      kind: 'session',
      handle: async ({ auth, body, now }) => ({ status: 200, value: await uploadTelemetry(body, auth.gateway.id, now, deps) }),
    },
    {
      method: 'GET',
      path: /^\/v1\/gateways\/([A-Za-z0-9._:-]{1,64})\/commands$/,
      kind: 'session',
      handle: async ({ auth, query, signal }) => ({ status: 200, value: await pollCommands(query, auth.gateway.id, deps, waiters, nowS, signal) }),
    },
    {
      method: 'POST',
      path: /^\/v1\/gateways\/([A-Za-z0-9._:-]{1,64})\/acks$/,
      kind: 'session',
      handle: async ({ auth, body, now }) => ({ status: 200, value: await uploadAcks(body, auth.gateway.id, now, deps) }),
    },
  ];

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '';
    const q = rawUrl.indexOf('?');
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const matching = routes.map((r) => ({ r, m: r.path.exec(path) })).filter((x) => x.m !== null);
    if (matching.length === 0) throw new Problem('not-found');
    const hit = matching.find((x) => x.r.method === req.method);
    if (hit === undefined || hit.m === null) {
      res.setHeader('allow', matching.map((x) => x.r.method).join(', '));
      throw new Problem('method-not-allowed');
    }
    const body = await readBody(req, maxBody);
    if (hit.r.method === 'POST') {
      const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (ct !== 'application/json') throw new Problem('unsupported-media-type');
    }
    const now = nowS();
    const parts: HttpRequestParts = {
      method: req.method ?? '',
      // Never the Host header: a request signed for another origin must not verify here.
      url: `${origin}${rawUrl}`,
      headers: req.headers,
      ...(body.length > 0 ? { body: new Uint8Array(body) } : {}),
    };
    const auth = await authenticate(parts, hit.r.kind, gwFrom(hit.m), { registry, now });
    const json = hit.r.method === 'POST' ? parseJson(body) : undefined;
    const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1));
    // A long poll whose client went away stops waiting.
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    const out = await hit.r.handle({ auth, body: json, query, now, signal: gone.signal });
    sendJson(res, out.status, out.value);
  }

  const server: Server = createServer(
    {
      cert: opts.tls.certPem,
      key: opts.tls.keyPem,
      minVersion: 'TLSv1.2',
      maxHeaderSize: 16 * 1024,
      requestTimeout: 30_000,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
      handshakeTimeout: 10_000,
    },
    (req, res) => {
      const started = Date.now();
      handle(req, res)
        .catch((err: unknown) => {
          if (res.headersSent) {
            res.destroy();
            return;
          }
          if (err instanceof Problem) {
            const status = err.slug === 'body-too-large' ? 'close' : 'keep';
            logger.warn('request refused', { method: req.method, path: req.url?.split('?')[0], problem: err.slug, detail: err.detail });
            sendProblem(res, err.slug, {
              ...(err.detail !== undefined ? { detail: err.detail } : {}),
              close: status === 'close',
              ...(err.slug === 'busy' ? { retryAfter: 5 } : {}),
              ...(err.extra !== undefined ? { extra: err.extra } : {}),
            });
            if (status === 'close') res.once('finish', () => req.destroy());
            return;
          }
          if (err instanceof StoreError && err.code === 'GH_STORE_UNAVAILABLE') {
            // PostgreSQL down or restarting: a 503 the gateway retries, not a 500.
            logger.warn('store unavailable', { method: req.method, path: req.url?.split('?')[0], error: err.cause instanceof Error ? err.cause.message : err.message });
            sendProblem(res, 'store-unavailable', { retryAfter: 1 });
            return;
          }
          // CONTRIBUTING.md §9: the client gets a generic problem; the chain goes to the log.
          logger.error('request failed', { method: req.method, path: req.url?.split('?')[0], error: err instanceof Error ? err.message : String(err) });
          logger.debug('request failure stack', { stack: err instanceof Error ? err.stack : undefined });
          sendProblem(res, 'internal');
        })
        .finally(() => logger.debug('request', { method: req.method, path: req.url?.split('?')[0], status: res.statusCode, ms: Date.now() - started }));
    },
  );
  server.maxHeadersCount = 64;
  server.maxConnections = 1024;
  server.on('tlsClientError', (err) => logger.debug('TLS handshake failed', { error: err.message }));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    unsubscribe();
    waiters.close();
    void registry.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  try {
    origin = resolveOrigin(opts.publicOrigin, port);
  } catch (err) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    unsubscribe();
    waiters.close();
    void registry.close();
    throw err;
  }
  const hostForUrl = (opts.host ?? '127.0.0.1').includes(':') ? `[${opts.host ?? ''}]` : (opts.host ?? '127.0.0.1');
  logger.info('backend listening', { host: opts.host ?? '127.0.0.1', port, origin, kid: signer.kid });
  let closing: Promise<void> | undefined;
  return {
    url: `https://${hostForUrl}:${port}`,
    origin,
    port,
    store: registry,
    publicKeyRaw: signer.publicKeyRaw,
    kid: signer.kid,
    get waitingPolls() {
      return waiters.size;
    },
    issueCommand: (c) => issueCommand(registry, signer, c, nowS()),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        unsubscribe();
        waiters.close();
        server.close(() => {
          registry.close().then(resolve, (err: unknown) => {
            logger.warn('store close failed', { error: err instanceof Error ? err.message : String(err) });
            resolve();
          });
        });
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
