/**
 * HTTP/1.1 over a Unix socket for tests (service helper): one request, the whole answer, a timeout.
 */
import { request } from 'node:http';

export interface UnixResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function unixRequest(
  socketPath: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<UnixResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: opts.method ?? 'GET', headers: opts.headers, timeout: opts.timeoutMs ?? 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(opts.body);
  });
}
