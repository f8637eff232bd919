/**
 * An embedded reference backend for tests: HTTPS on 127.0.0.1 port 0, a PKI made at test time
 * in a temp dir (backend/pki.ts), a registry in a real SQLite file, and helpers to register
 * gateways and devices and to send signed requests with undici. `close()` removes everything.
 *
 * The gateway's TPM key here is a software P-256 key (`Es256Signer`): the backend only ever sees
 * its public key and ECDSA signatures, which are the same as a TPM's. Suites that need the real
 * TPM pass its PEM to `addGateway`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { createTestPki, type TestPki } from '../backend/pki.js';
import { startBackend, type BackendOptions, type RunningBackend } from '../backend/server.js';
import type { NewDevice } from '../backend/registry.js';
import { base64UrlDecode, base64UrlEncode, signGatehouseRequest, type HttpSigAlg, type HttpSign, Ed25519Signer, Es256Signer, type Policy } from '../protocol/index.js';

export const BACKEND_TEST_NAME = 'backend.gatehouse.test';

export interface SignedCallOptions {
  /** JSON body; a string or bytes is sent as is. */
  json?: unknown;
  rawBody?: string | Uint8Array;
  keyid: string;
  alg: HttpSigAlg;
  sign: HttpSign;
  /** Unix seconds for `created`; default: the backend clock. */
  created?: number;
  nonce?: string;
  headers?: Record<string, string>;
  /** Sign, then replace the body with this one (tampering tests). */
  tamperBody?: string;
}

export interface CallResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  /** The request headers that were sent (to replay them). */
  sent: { method: string; path: string; headers: Record<string, string>; body?: string | Uint8Array };
}

export interface TestGateway {
  id: string;
  tpm: Es256Signer;
  tpmPublicKeyPem: string;
}

export interface TestBackend {
  /** The running backend (a new object after `restart()`). */
  readonly backend: RunningBackend;
  pki: TestPki;
  dir: string;
  /** The CA certificate PEM a client must trust. */
  caPem: string;
  /** The client agent trusting the test CA (a new one after `restart()`). */
  readonly dispatcher: Agent;
  addGateway(id: string, opts?: { groups?: string[]; tpmPublicKeyPem?: string }): Promise<TestGateway>;
  addDevice(id: string, opts?: { gateways?: string[]; policy?: Policy }): Promise<Ed25519Signer>;
  /** Send a signed request (RFC 9421 `gh`) and read the JSON answer. */
  call(method: 'GET' | 'POST', path: string, opts: SignedCallOptions): Promise<CallResult>;
  /** Send exactly these headers and body (replays, unsigned requests). */
  send(sent: CallResult['sent']): Promise<CallResult>;
  /** Obtain a session credential for `gw` with a fresh session key. */
  openSession(gw: TestGateway, notAfter?: number): Promise<{ session: Ed25519Signer; credential: Uint8Array; notAfter: number }>;
  /** Stop the backend and start it again on the same data directory, port and options. */
  restart(): Promise<void>;
  /** An outage: stop the backend (`start()` brings it back on the same port and data). */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

let nonceCounter = 0;

export async function startTestBackend(opts: Partial<Omit<BackendOptions, 'dataDir' | 'tls'>> = {}): Promise<TestBackend> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-backend-test-'));
  try {
    const pki = await createTestPki(join(dir, 'pki'), { dnsNames: [BACKEND_TEST_NAME, 'localhost'], ips: ['127.0.0.1'] });
    const start = (port: number): Promise<RunningBackend> =>
      startBackend({
        publicOrigin: (p) => `https://127.0.0.1:${p}`,
        ...opts,
        dataDir: join(dir, 'data'),
        tls: { certPem: pki.server.certPem, keyPem: pki.server.keyPem },
        host: '127.0.0.1',
        port,
      });
    let backend = await start(0);
    let stopped = false;
    const stop = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      await backend.close();
      // A fresh agent: the old one's keep-alive sockets were cut by the stop.
      await dispatcher.destroy();
      dispatcher = agent();
    };
    const resume = async (): Promise<void> => {
      if (!stopped) return;
      backend = await start(backend.port);
      stopped = false;
    };
    const agent = (): Agent => new Agent({ connect: { ca: pki.ca.certPem, servername: BACKEND_TEST_NAME }, headersTimeout: 10_000, bodyTimeout: 10_000 });
    let dispatcher = agent();
    const nowS = (): number => Math.floor((opts.clock?.now() ?? Date.now()) / 1000);

    const send = async (sent: CallResult['sent']): Promise<CallResult> => {
      const res = await request(`${backend.url}${sent.path}`, {
        method: sent.method,
        headers: sent.headers,
        ...(sent.body !== undefined ? { body: typeof sent.body === 'string' ? sent.body : Buffer.from(sent.body) } : {}),
        dispatcher,
      });
      const text = await res.body.text();
      let body: unknown = text;
      const ct = String(res.headers['content-type'] ?? '');
      if (ct.startsWith('application/json') || ct.startsWith('application/problem+json')) body = JSON.parse(text);
      return { status: res.statusCode, headers: res.headers, body, sent };
    };

    const call: TestBackend['call'] = async (method, path, c) => {
      const headers: Record<string, string> = { ...(c.headers ?? {}) };
      let body: string | Uint8Array | undefined = c.rawBody;
      if (c.json !== undefined) body = JSON.stringify(c.json);
      if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
      const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
      // Signed for the backend's configured origin, as a gateway configured with it would.
      const sig = await signGatehouseRequest(
        { method, url: `${backend.origin}${path}`, headers, ...(bytes !== undefined ? { body: bytes } : {}) },
        { keyid: c.keyid, alg: c.alg, created: c.created ?? nowS(), nonce: c.nonce ?? `test-nonce-${process.pid}-${++nonceCounter}`, sign: c.sign },
      );
      const sent = { method, path, headers: { ...headers, ...sig }, ...(body !== undefined ? { body: c.tamperBody ?? body } : {}) };
      return send(sent);
    };

    return {
      get backend() {
        return backend;
      },
      pki,
      dir,
      caPem: pki.ca.certPem,
      get dispatcher() {
        return dispatcher;
      },
      async addGateway(id, o = {}) {
        const tpm = Es256Signer.generate(`tpm:${id}`);
        const pem = o.tpmPublicKeyPem ?? tpm.publicKey.export({ format: 'pem', type: 'spki' }).toString();
        await backend.store.addGateway({ id, tpmPublicKeyPem: pem, groups: o.groups ?? [] });
        return { id, tpm, tpmPublicKeyPem: pem };
      },
      async addDevice(id, o = {}) {
        const signer = Ed25519Signer.generate(id);
        const d: NewDevice = { id, publicKey: signer.publicKeyRaw, gateways: o.gateways ?? ['*'], ...(o.policy ? { policy: o.policy } : {}) };
        await backend.store.addDevice(d);
        return signer;
      },
      call,
      send,
      async openSession(gw, notAfter) {
        const session = Ed25519Signer.generate(gw.id);
        const r = await call('POST', `/v1/gateways/${gw.id}/sessions`, {
          json: { sessionPublicKey: base64UrlEncode(session.publicKeyRaw), notAfter: notAfter ?? nowS() + 86_400 },
          keyid: `tpm:${gw.id}`,
          alg: 'ecdsa-p256-sha256',
          sign: (b) => gw.tpm.sign(b),
        });
        if (r.status !== 201) throw new Error(`session refused: ${r.status} ${JSON.stringify(r.body)}`);
        const answer = r.body as { credential: string; notAfter: number };
        const credential = base64UrlDecode(answer.credential);
        if (credential === undefined) throw new Error('credential is not base64url');
        return { session, credential, notAfter: answer.notAfter };
      },
      async restart() {
        await stop();
        await resume();
      },
      stop,
      start: resume,
      async close() {
        await dispatcher.close();
        if (!stopped) await backend.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
