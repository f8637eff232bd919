/**
 * The status socket: HTTP/1.1 over a Unix socket, read-only. Routes: GET /v1/status,
 * /v1/peripherals, /v1/failing, /v1/events?since=&limit=&dev=, /v1/check, /v1/scan (nearby BLE peripherals), /metrics. Access control is the socket's
 * mode (0660) and group; no body is ever accepted; every internal failure answers a generic
 * problem and logs the chain (CONTRIBUTING.md §9).
 */
import { chmod, chown, lstat, stat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'winston';
import { logError, silentLogger } from '../../common/log/logger.js';
import { isValidId } from '../../protocol/index.js';
import { StatusError } from './errors.js';
import { problem, sendJson, sendProblem } from './problem.js';
import { groupId, prepareSocketPath } from './socket-file.js';
import type { ScanReport, StatusSource } from './types.js';

export interface StatusServerOptions {
  socketPath: string;
  source: StatusSource;
  /** Group given access (mode 0660). Absent or unknown: mode only (tests run unprivileged). */
  group?: string;
  logger?: Logger;
  /** Resolve a group name to a gid (defaults to /etc/group). */
  resolveGroup?: (name: string) => Promise<number | undefined>;
  /**
   * How a group that does not exist is reported: `warn` (default) when the operator named it or
   * the daemon runs under systemd (where sysusers creates it); `info` otherwise (a plain start
   * from a shell with the default group, where it is expected). See {@link missingGroupLevel}.
   */
  missingGroup?: 'warn' | 'info';
  /** Whole-request timeout. */
  requestTimeoutMs?: number;
  /** Largest request head accepted (node:http maxHeaderSize). */
  maxHeaderBytes?: number;
  /** Upper bound on `limit` for /v1/events. */
  maxEventsPerPage?: number;
  /** Time a /v1/check run may take before answering 503. */
  checkTimeoutMs?: number;
  /** Concurrent client connections. */
  maxConnections?: number;
  /** How often node:http enforces the request and head timeouts (its default is 30 s). */
  timeoutCheckIntervalMs?: number;
}

const SOCKET_MODE = 0o660;
const ROUTES = new Set(['/v1/status', '/v1/peripherals', '/v1/failing', '/v1/events', '/v1/check', '/v1/scan', '/metrics']);
const MAX_SEQ = Number.MAX_SAFE_INTEGER;
const NO_SCAN: ScanReport = { ble: { available: false, reason: 'this daemon has no BLE transport to ask' }, peripherals: [] };

function intParam(params: URLSearchParams, name: string, dflt: number, max: number): number {
  const v = params.get(name);
  if (v === null) return dflt;
  if (!/^\d{1,16}$/.test(v) || Number(v) > max) throw new StatusError('GH_STATUS_BAD_QUERY', `query parameter ${name} must be an integer 0..${max}`);
  return Number(v);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Whether a missing status group deserves a warning: yes when the config names a group other
 * than the default (the operator asked for it) or the daemon runs under systemd (JOURNAL_STREAM or
 * INVOCATION_ID set: the shipped sysusers file creates the default group, so its absence is a
 * packaging fault). A plain start from a shell with the default group gets one info line.
 */
export function missingGroupLevel(group: string, defaultGroup: string | undefined, env: NodeJS.ProcessEnv): 'warn' | 'info' {
  const underSystemd = (env.JOURNAL_STREAM ?? '') !== '' || (env.INVOCATION_ID ?? '') !== '';
  return group !== defaultGroup || underSystemd ? 'warn' : 'info';
}

export class StatusServer {
  #server: Server | undefined;
  #ino: number | undefined;
  readonly #log: Logger;
  readonly #opts: Required<Omit<StatusServerOptions, 'group' | 'logger'>> & Pick<StatusServerOptions, 'group'>;

  constructor(options: StatusServerOptions) {
    this.#log = options.logger ?? silentLogger();
    this.#opts = {
      socketPath: options.socketPath,
      source: options.source,
      group: options.group,
      resolveGroup: options.resolveGroup ?? ((n) => groupId(n)),
      missingGroup: options.missingGroup ?? 'warn',
      requestTimeoutMs: options.requestTimeoutMs ?? 10000,
      maxHeaderBytes: options.maxHeaderBytes ?? 8192,
      maxEventsPerPage: options.maxEventsPerPage ?? 1000,
      checkTimeoutMs: options.checkTimeoutMs ?? 30000,
      maxConnections: options.maxConnections ?? 32,
      timeoutCheckIntervalMs: options.timeoutCheckIntervalMs ?? 1000,
    };
  }

  /** Listen. Replaces a stale socket safely; refuses symlinks, other files and a live daemon. */
  async start(): Promise<void> {
    if (this.#server !== undefined) throw new StatusError('GH_STATUS_LISTEN', 'status server already started');
    const path = this.#opts.socketPath;
    await prepareSocketPath(path);
    const server = createServer(
      {
        maxHeaderSize: this.#opts.maxHeaderBytes,
        requestTimeout: this.#opts.requestTimeoutMs,
        headersTimeout: Math.min(5000, this.#opts.requestTimeoutMs),
        // A client that sends half a request (slowloris) is cut off within a second of its deadline.
        connectionsCheckingInterval: this.#opts.timeoutCheckIntervalMs,
      },
      (req, res) => this.#handle(req, res),
    );
    server.keepAliveTimeout = 5000;
    server.maxRequestsPerSocket = 100;
    server.maxHeadersCount = 32;
    server.maxConnections = this.#opts.maxConnections;
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      // Oversized or malformed heads and half-sent requests get a bare answer, no detail.
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const reason = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new StatusError('GH_STATUS_LISTEN', `cannot listen on ${path}`, { cause: err })));
      server.listen(path, () => resolve());
    });
    this.#server = server;
    try {
      await chmod(path, SOCKET_MODE);
      const st = await lstat(path);
      this.#ino = st.ino;
      await this.#applyGroup(path, st.gid);
    } catch (err) {
      await this.stop();
      throw err instanceof StatusError ? err : new StatusError('GH_STATUS_LISTEN', `cannot set permissions on ${path}`, { cause: err });
    }
    this.#log.info('status socket listening', { path, mode: '0660', group: this.#opts.group ?? null });
  }

  async #applyGroup(path: string, currentGid: number): Promise<void> {
    const name = this.#opts.group;
    if (name === undefined) return;
    const gid = await this.#opts.resolveGroup(name);
    if (gid === undefined) {
      if (this.#opts.missingGroup === 'warn') this.#log.warn('status group does not exist; socket keeps its owner group', { group: name });
      else this.#log.info('status group does not exist (default group, not under systemd); socket keeps its owner group', { group: name });
      return;
    }
    // Under the shipped unit the runtime directory is setgid gatehouse-status: nothing to do.
    if (gid === currentGid) return;
    try {
      await chown(path, -1, gid);
    } catch (err) {
      logError(this.#log, 'cannot give the status socket its group; members may be refused', err, { group: name });
    }
  }

  /** Stop answering, close connections, remove our socket file (only ours). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    const st = await stat(this.#opts.socketPath).catch(() => undefined);
    // node:http unlinks its socket on close; if a file is still there and it is ours, remove it.
    if (st !== undefined && st.isSocket() && st.ino === this.#ino) await unlink(this.#opts.socketPath).catch(() => undefined);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.#route(req, res).catch((err: unknown) => {
      logError(this.#log, 'status request failed', err, { method: req.method, path: (req.url ?? '').split('?')[0] });
      if (!res.headersSent) sendProblem(res, problem(500));
      else res.destroy();
    });
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      sendProblem(res, problem(405, 'the status API is read-only'), { allow: 'GET, HEAD' });
      req.resume();
      return;
    }
    const length = req.headers['content-length'];
    if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined) {
      // No route takes a body: refuse without reading it, and close so it is never consumed.
      res.setHeader('connection', 'close');
      sendProblem(res, problem(413, 'requests to the status API carry no body'));
      req.destroy();
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      sendProblem(res, problem(400, 'malformed request target'), {}, head);
      return;
    }
    if (!ROUTES.has(url.pathname)) {
      sendProblem(res, problem(404), {}, head);
      return;
    }
    const params = url.searchParams;
    const allowed = url.pathname === '/v1/events' ? ['since', 'limit', 'dev'] : [];
    for (const key of params.keys()) {
      if (!allowed.includes(key)) {
        sendProblem(res, problem(400, `unknown query parameter ${JSON.stringify(key.slice(0, 32))}`), {}, head);
        return;
      }
    }
    const src = this.#opts.source;
    switch (url.pathname) {
      case '/v1/status':
        sendJson(res, 200, await src.getStatus(), head);
        return;
      case '/v1/peripherals':
        sendJson(res, 200, { peripherals: await src.getPeripherals() }, head);
        return;
      case '/v1/scan':
        sendJson(res, 200, src.getScan === undefined ? NO_SCAN : await src.getScan(), head);
        return;
      case '/v1/failing':
        sendJson(res, 200, { failing: await src.getFailing() }, head);
        return;
      case '/v1/events': {
        let since: number;
        let limit: number;
        let dev: string | undefined;
        try {
          since = intParam(params, 'since', 0, MAX_SEQ);
          limit = intParam(params, 'limit', 100, this.#opts.maxEventsPerPage);
          // A device id (1-64 id characters) or nothing: the filter is as bounded as the ring.
          const d = params.get('dev');
          if (d !== null && !isValidId(d)) throw new StatusError('GH_STATUS_BAD_QUERY', 'query parameter dev must be a device id (1-64 of A-Z a-z 0-9 . _ : -)');
          dev = d ?? undefined;
        } catch (err) {
          if (err instanceof StatusError && err.code === 'GH_STATUS_BAD_QUERY') {
            sendProblem(res, problem(400, err.message), {}, head);
            return;
          }
          throw err;
        }
        sendJson(res, 200, src.getEvents(since, limit, dev), head);
        return;
      }
      case '/v1/check': {
        const report = await withTimeout(src.runChecks(), this.#opts.checkTimeoutMs);
        if (report === 'timeout') {
          sendProblem(res, problem(503, 'checks did not finish in time'), {}, head);
          return;
        }
        sendJson(res, 200, report, head);
        return;
      }
      case '/metrics': {
        const text = Buffer.from(await src.registry.metrics(), 'utf8');
        res.writeHead(200, { 'content-type': src.registry.contentType, 'content-length': text.length, 'cache-control': 'no-store' });
        res.end(head ? undefined : text);
        return;
      }
    }
  }
}
