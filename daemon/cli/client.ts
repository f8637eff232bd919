/**
 * The CLI side of the status socket: one GET, a timeout, a bounded answer, and errors a field
 * tech can act on (not running, no permission).
 */
import { request } from 'node:http';
import { CodedError } from '../../common/errors.js';

export type StatusClientErrorCode =
  /** Nothing answers on the status socket. */
  | 'GH_CLI_NOT_RUNNING'
  /** The socket exists but this user may not connect to it. */
  | 'GH_CLI_PERMISSION'
  /** The daemon did not answer in time. */
  | 'GH_CLI_TIMEOUT'
  /** The daemon's answer is unusable (status, size, JSON). */
  | 'GH_CLI_ANSWER';

/** The daemon could not be asked. */
export class StatusClientError extends CodedError<StatusClientErrorCode> {}

const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export interface GetOptions {
  timeoutMs?: number;
}

function connectError(err: NodeJS.ErrnoException, socketPath: string): StatusClientError {
  switch (err.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new StatusClientError('GH_CLI_NOT_RUNNING', `gatehouse is not running (nothing answers on ${socketPath}); see: systemctl status gatehouse`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new StatusClientError(
        'GH_CLI_PERMISSION',
        `permission denied on ${socketPath}: add your user to group gatehouse-status (sudo usermod -aG gatehouse-status $USER, then log in again) or use sudo`,
        { cause: err },
      );
    default:
      return new StatusClientError('GH_CLI_NOT_RUNNING', `cannot reach gatehouse on ${socketPath} (${err.code ?? err.message})`, { cause: err });
  }
}

/** GET `path` on the status socket and parse the JSON answer (text for /metrics). */
export function getText(socketPath: string, path: string, opts: GetOptions = {}): Promise<{ status: number; contentType: string; body: string }> {
  const timeoutMs = opts.timeoutMs ?? 10000;
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', headers: { accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy(new StatusClientError('GH_CLI_ANSWER', `answer from ${path} larger than ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const timer = setTimeout(() => req.destroy(new StatusClientError('GH_CLI_TIMEOUT', `gatehouse did not answer ${path} within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err instanceof StatusClientError ? err : connectError(err, socketPath));
    });
    req.end();
  });
}

export async function getJson<T>(socketPath: string, path: string, opts: GetOptions = {}): Promise<T> {
  const r = await getText(socketPath, path, opts);
  let body: unknown;
  try {
    body = JSON.parse(r.body);
  } catch (err) {
    throw new StatusClientError('GH_CLI_ANSWER', `gatehouse answered ${path} with something that is not JSON (HTTP ${r.status})`, { cause: err });
  }
  if (r.status !== 200) {
    const p = body as { title?: unknown; detail?: unknown };
    const text = typeof p.detail === 'string' ? p.detail : typeof p.title === 'string' ? p.title : `HTTP ${r.status}`;
    throw new StatusClientError('GH_CLI_ANSWER', `gatehouse answered ${path}: ${text}`);
  }
  return body as T;
}
