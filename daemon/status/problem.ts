/**
 * RFC 9457 problem details for the status socket. Only fixed titles and details we wrote: an
 * internal failure answers a generic 500 and the chain goes to the log (CONTRIBUTING.md §9).
 */
import type { ServerResponse } from 'node:http';

export interface Problem {
  type: 'about:blank';
  title: string;
  status: number;
  detail?: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function problem(status: number, detail?: string): Problem {
  return { type: 'about:blank', title: TITLES[status] ?? 'Error', status, ...(detail === undefined ? {} : { detail }) };
}

/** Security headers on every answer: nothing is cacheable or sniffable. */
export function baseHeaders(contentType: string, length: number): Record<string, string | number> {
  return {
    'content-type': contentType,
    'content-length': length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, head = false, contentType = 'application/json'): void {
  const text = Buffer.from(`${JSON.stringify(body)}\n`, 'utf8');
  res.writeHead(status, baseHeaders(contentType, text.length));
  res.end(head ? undefined : text);
}

export function sendProblem(res: ServerResponse, p: Problem, extra: Record<string, string> = {}, head = false): void {
  for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
  sendJson(res, p.status, p, head, 'application/problem+json');
}
