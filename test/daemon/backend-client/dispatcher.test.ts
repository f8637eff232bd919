import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { BackendHttp, backendCall, createBackendDispatcher, type BackendTlsOptions } from '../../../daemon/backend-client/dispatcher.js';
import { BackendError } from '../../../daemon/backend-client/errors.js';
import { GatehouseError } from '../../../common/errors.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestPki, issueCert, type CertFiles, type TestPki } from '../../../backend/pki.js';
import { closeServer, listenLoopback } from '../../../testkit/listen.js';

interface Pem {
  key: string;
  cert: string;
}

function pem(c: CertFiles): Pem {
  return { key: c.keyPem, cert: c.certPem };
}

const NAME = 'backend.example.com';

interface TestServer {
  server: Server;
  port: number;
  /** Requests that reached HTTP (bodies included). */
  requests: { method: string; url: string; body: string; sni: string | false | null }[];
}

async function startServer(pem: Pem, handler?: (url: string) => { status: number; headers?: Record<string, string> }): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const server = createServer({ key: pem.key, cert: pem.cert }, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body, sni: (req.socket as TLSSocket).servername });
      const answer = handler?.(req.url ?? '') ?? { status: 200 };
      res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
      res.end('hello from backend');
    });
  });
  // A refused handshake is a client-side event; keep the server quiet about it.
  server.on('tlsClientError', () => undefined);
  return { server, port: await listenLoopback(server), requests };
}

describe('daemon/backend-client/dispatcher: TLS policy over real HTTPS on loopback', () => {
  let dir: string;
  let pki: TestPki;
  let ca: Pem;
  let seq = 0;
  const servers: Server[] = [];
  const agents: { close(): Promise<void> }[] = [];

  before(async function () {
    this.timeout(60000);
    dir = await mkdtemp(join(tmpdir(), 'gh-dispatcher-'));
    // backend/pki.ts: a CA, the genuine certificate and the hostile variants, made now.
    pki = await createTestPki(dir, { dnsNames: [NAME] });
    ca = pem(pki.ca);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  async function leaf(sans: string[]): Promise<Pem> {
    seq += 1;
    return pem(await issueCert(dir, pki.ca, { name: `extra-${seq}`, sans }));
  }
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    await Promise.all(servers.splice(0).map(closeServer));
  });

  async function serve(pem: Pem, handler?: Parameters<typeof startServer>[1]): Promise<TestServer> {
    const s = await startServer(pem, handler);
    servers.push(s.server);
    return s;
  }

  function client(port: number, extra: Partial<BackendTlsOptions> = {}): BackendHttp {
    // The URL names the backend; connectAddress points the TCP connection at loopback.
    const opts: BackendTlsOptions = { url: `https://${NAME}:${port}`, ca: ca.cert, connectAddress: '127.0.0.1', connectTimeoutMs: 3000, ...extra };
    const dispatcher = createBackendDispatcher(opts);
    agents.push(dispatcher);
    return new BackendHttp({ url: opts.url, dispatcher });
  }

  async function post(http: BackendHttp): Promise<unknown> {
    return http.request({ method: 'POST', path: '/v1/verify', headers: { 'content-type': 'application/json' }, body: new TextEncoder().encode('{"secret":"body"}') });
  }

  async function expectRefused(leaf: Pem, extra: Partial<BackendTlsOptions> = {}, pattern?: RegExp): Promise<void> {
    const s = await serve(leaf);
    await assert.rejects(post(client(s.port, extra)), (e: unknown) => {
      assert.ok(e instanceof BackendError, String(e));
      assert.equal(e.kind, 'tls', e.message);
      assert.equal(e.code, 'GH_BACKEND_TLS');
      if (pattern !== undefined) assert.match(String((e.cause as Error).message), pattern);
      return true;
    });
    assert.equal(s.requests.length, 0, 'no request (and no body) reached the server');
  }

  it('talks to the right backend: trusted CA, exact name, SNI sent', async () => {
    const s = await serve(pem(pki.server));
    const res = await client(s.port).request({ method: 'POST', path: '/v1/verify', headers: { 'content-type': 'text/plain' }, body: new TextEncoder().encode('x') });
    assert.equal(res.status, 200);
    assert.equal(new TextDecoder().decode(res.body), 'hello from backend');
    assert.equal(s.requests[0]?.sni, NAME);
  });

  it('accepts a URL with an IP host when serverName names the certificate, sending it as SNI', async () => {
    const s = await serve(pem(pki.server));
    const dispatcher = createBackendDispatcher({ url: `https://127.0.0.1:${s.port}`, ca: ca.cert, serverName: NAME });
    agents.push(dispatcher);
    const res = await new BackendHttp({ url: `https://127.0.0.1:${s.port}`, dispatcher }).request({ method: 'GET', path: '/' });
    assert.equal(res.status, 200);
    assert.equal(s.requests[0]?.sni, NAME);
  });

  it('refuses a certificate from an untrusted CA', async () => {
    await expectRefused(pem(pki.untrusted));
  });

  it('refuses a trusted certificate for another name', async () => {
    await expectRefused(pem(pki.wrongName), {}, /altnames/);
  });

  it('refuses names that merely contain the expected one', async () => {
    await expectRefused(pem(pki.suffixed));
    await expectRefused(pem(pki.prefixed));
    await expectRefused(await leaf(['*.example.com.attacker.test']));
  });

  it('refuses a CN-only certificate even when the CN is the expected name', async () => {
    await expectRefused(pem(pki.cnOnly), {}, /CN-only/);
  });

  it('refuses an expired certificate', async () => {
    await expectRefused(pem(pki.expired));
  });

  it('checks an SPKI pin after the name, never instead of it', async () => {
    const good = pem(pki.server);
    const pin = createHash('sha256').update(new X509Certificate(good.cert).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    const s = await serve(good);
    assert.equal((await client(s.port, { spkiPinsSha256: [pin] }).request({ method: 'GET', path: '/' })).status, 200);
    // same name, another key: refused by the pin
    await expectRefused(await leaf([NAME]), { spkiPinsSha256: [pin] }, /SPKI pin/);
    // right key, wrong name: the pin does not rescue it
    const wrongName = pem(pki.wrongName);
    const wrongPin = createHash('sha256').update(new X509Certificate(wrongName.cert).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    await expectRefused(wrongName, { spkiPinsSha256: [wrongPin] }, /altnames/);
  });

  it('never follows a redirect: a 3xx is an error and the other origin gets nothing', async () => {
    const other = await serve(pem(pki.server));
    const s = await serve(pem(pki.server), () => ({ status: 307, headers: { location: `https://${NAME}:${other.port}/steal` } }));
    await assert.rejects(post(client(s.port)), (e: unknown) => e instanceof BackendError && e.kind === 'redirect' && e.status === 307);
    assert.equal(other.requests.length, 0);
  });

  it('reports a refused connection as connect', async () => {
    const s = await serve(pem(pki.server));
    const port = s.port;
    await new Promise<void>((r) => s.server.close(() => r()));
    await assert.rejects(post(client(port)), (e: unknown) => e instanceof BackendError && e.kind === 'connect' && e.unreachable);
  });

  it('refuses a backend URL that is not an https origin', () => {
    for (const url of ['http://backend.example.com', 'https://backend.example.com/v1', 'https://u:p@backend.example.com', 'not a url']) {
      assert.throws(() => createBackendDispatcher({ url, ca: ca.cert }), (e: unknown) => e instanceof GatehouseError && e.code === 'GH_BACKEND_CONFIG', url);
    }
  });

  it('gives up on a backend that accepts but never answers (headers timeout)', async () => {
    const silent = createServer({ key: pki.server.keyPem, cert: pki.server.certPem }, () => undefined);
    const port = await listenLoopback(silent);
    servers.push(silent);
    const http = client(port, { headersTimeoutMs: 200 });
    await assert.rejects(http.request({ method: 'GET', path: '/' }), (e: unknown) => e instanceof BackendError && e.kind === 'timeout' && e.unreachable);
  });

  it('bounds the answer size', async () => {
    const s = await serve(pem(pki.server));
    const dispatcher = createBackendDispatcher({ url: `https://${NAME}:${s.port}`, ca: ca.cert, connectAddress: '127.0.0.1' });
    agents.push(dispatcher);
    const http = new BackendHttp({ url: `https://${NAME}:${s.port}`, dispatcher, maxResponseBytes: 4 });
    await assert.rejects(http.request({ method: 'GET', path: '/' }), (e: unknown) => e instanceof BackendError && e.kind === 'response');
  });

  it('tells its observer each request: call label, seconds, and the error kind of a failure', async () => {
    const s = await serve(pem(pki.server), (url) => ({ status: url.startsWith('/v1/gateways/') ? 503 : 200 }));
    const dispatcher = createBackendDispatcher({ url: `https://${NAME}:${s.port}`, ca: ca.cert, connectAddress: '127.0.0.1' });
    agents.push(dispatcher);
    const seen: [string, number, string | undefined][] = [];
    const http = new BackendHttp({ url: `https://${NAME}:${s.port}`, dispatcher, maxResponseBytes: 64, observe: (call, seconds, kind) => seen.push([call, seconds, kind]) });
    assert.equal((await http.request({ method: 'POST', path: '/v1/verify', body: new Uint8Array([1]) })).status, 200);
    assert.equal((await http.request({ method: 'GET', path: '/v1/gateways/gw%2D1/revocations?since=3' })).status, 503);
    const refused = await leaf([`other.${NAME}`]);
    const bad = await serve(refused);
    const badDispatcher = createBackendDispatcher({ url: `https://${NAME}:${bad.port}`, ca: ca.cert, connectAddress: '127.0.0.1' });
    agents.push(badDispatcher);
    const badHttp = new BackendHttp({ url: `https://${NAME}:${bad.port}`, dispatcher: badDispatcher, observe: (call, seconds, kind) => seen.push([call, seconds, kind]) });
    await assert.rejects(badHttp.request({ method: 'POST', path: '/v1/gateways/gw-1/sessions' }), (e: unknown) => e instanceof BackendError && e.kind === 'tls');
    assert.deepEqual(seen.map(([call, , kind]) => [call, kind]), [['verify', undefined], ['revocations', 'server'], ['session', 'tls']]);
    for (const [, seconds] of seen) assert.ok(seconds > 0 && seconds < 60, String(seconds));
  });

  it('labels calls by path with a bounded set (never the gateway id)', () => {
    assert.equal(backendCall('/v1/verify'), 'verify');
    assert.equal(backendCall('/v1/gateways/gw-7/sessions'), 'session');
    assert.equal(backendCall('/v1/gateways/gw-7/revocations?since=0'), 'revocations');
    assert.equal(backendCall('/v1/verify/extra'), 'other');
    assert.equal(backendCall('/'), 'other');
  });
});
