/**
 * A gateway-side test environment: the reference backend over HTTPS on loopback (certificates
 * made now by backend/pki.ts), a gateway key (software key store), registered devices, and the
 * project's dispatcher, session manager and client wired together. Requests the client sends
 * are recorded through an undici interceptor on the injected dispatcher, so tests can check
 * them independently. Everything lives in one temp dir that `dispose()` removes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { createTestPki, type TestPki } from '../backend/pki.js';
import { startBackend, type RunningBackend } from '../backend/server.js';
import { BackendClient, type BackendClientOptions } from '../daemon/backend-client/client.js';
import type { TimerClock } from '../common/clock.js';
import { BackendHttp, createBackendDispatcher } from '../daemon/backend-client/dispatcher.js';
import { SessionManager, type SessionManagerOptions } from '../daemon/backend-client/session.js';
import { Ed25519Signer, randomNonce, signHello, type Policy } from '../protocol/index.js';
import type { VerifyRequest } from '../daemon/pipeline/types.js';
import { SoftwareKeyStore } from '../tpm/software-key-store.js';
import type { KeyStore } from '../tpm/key-store.js';
import { BACKEND_CLIENT_DEFAULTS } from './component-defaults.js';

export const BACKEND_NAME = 'backend.example.com';
export const GW = 'gw-test-1';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array | undefined;
}

export class BackendEnv {
  backend!: RunningBackend;
  pki!: TestPki;
  keyStore!: KeyStore;
  readonly requests: RecordedRequest[] = [];
  readonly devices = new Map<string, Ed25519Signer>();
  readonly #closers: (() => Promise<void>)[] = [];
  #port = 0;
  #backendClock: { now(): number } | undefined;

  private constructor(readonly dir: string) {}

  /** Certificates for the backend (slow-ish: share one per suite). Remove `dir` after. */
  static async makePki(dir: string): Promise<TestPki> {
    return createTestPki(dir, { dnsNames: [BACKEND_NAME] });
  }

  /**
   * One PKI shared by the tests of the enclosing suite: made in `before` in a temp dir that
   * `after` removes. Call at describe level; the returned function gives the PKI inside tests.
   */
  static suitePki(prefix: string): () => TestPki {
    let dir: string | undefined;
    let pki: TestPki | undefined;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), prefix));
      pki = await BackendEnv.makePki(dir);
    });
    after(async () => {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });
    return () => {
      if (pki === undefined) throw new Error(`suitePki(${JSON.stringify(prefix)}): read before the suite started`);
      return pki;
    };
  }

  /** Start a backend (optionally on `clock`), register GW with a software key. */
  static async create(opts: { clock?: { now(): number }; pki?: TestPki } = {}): Promise<BackendEnv> {
    const env = new BackendEnv(await mkdtemp(join(tmpdir(), 'gh-bc-')));
    env.#backendClock = opts.clock;
    env.pki = opts.pki ?? (await createTestPki(join(env.dir, 'pki'), { dnsNames: [BACKEND_NAME] }));
    await env.startBackend();
    env.keyStore = new SoftwareKeyStore({ keyFile: join(env.dir, 'gw-key.pem') });
    await env.keyStore.open();
    await env.backend.store.addGateway({ id: GW, tpmPublicKeyPem: env.keyStore.publicKeyPem() });
    return env;
  }

  /** (Re)start the backend on the same data dir and, after the first start, the same port. */
  async startBackend(): Promise<void> {
    this.backend = await startBackend({
      dataDir: join(this.dir, 'backend'),
      tls: { certPem: this.pki.server.certPem, keyPem: this.pki.server.keyPem },
      port: this.#port,
      publicOrigin: (port) => `https://${BACKEND_NAME}:${port}`,
      ...(this.#backendClock !== undefined ? { clock: this.#backendClock } : {}),
    });
    this.#port = this.backend.port;
  }

  async stopBackend(): Promise<void> {
    await this.backend.close();
  }

  get url(): string {
    return `https://${BACKEND_NAME}:${this.#port}`;
  }

  get backendKeys(): Map<string, Uint8Array> {
    return new Map([[this.backend.kid, this.backend.publicKeyRaw]]);
  }

  /** The project's dispatcher for this backend, recording each request it carries. */
  http(opts: { ca?: string } = {}): BackendHttp {
    const agent = createBackendDispatcher({ url: this.url, ca: opts.ca ?? this.pki.ca.certPem, connectAddress: '127.0.0.1', connectTimeoutMs: 3000 });
    this.#closers.push(() => agent.close());
    const record: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (o, handler) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries((o.headers ?? {}) as Record<string, string>)) headers[k.toLowerCase()] = v;
      const body = o.body instanceof Uint8Array ? new Uint8Array(o.body) : undefined;
      this.requests.push({ method: o.method, path: o.path, headers, body });
      return dispatch(o, handler);
    };
    return new BackendHttp({ url: this.url, dispatcher: agent.compose(record) });
  }

  session(opts: Partial<SessionManagerOptions> = {}): SessionManager {
    const s = new SessionManager({
      gw: GW,
      http: this.http(),
      tpmSigner: this.keyStore.signer(`tpm:${GW}`),
      tpmPublicKeySpki: this.keyStore.publicKeySpkiDer(),
      backendKeys: this.backendKeys,
      stateDir: join(this.dir, 'state'),
      ...opts,
    });
    this.#closers.push(async () => s.stop());
    return s;
  }

  client(session: BackendClientOptions['session'], opts: Partial<BackendClientOptions> = {}): BackendClient {
    const c = new BackendClient({
      gw: GW,
      http: this.http(),
      session,
      backendKeys: this.backendKeys,
      stateDir: join(this.dir, 'state'),
      ...BACKEND_CLIENT_DEFAULTS,
      revocationPollMs: 0,
      ...opts,
    });
    this.#closers.push(() => c.stop());
    return c;
  }

  /** Register a device (allowed at GW unless `gateways` says otherwise; the default policy unless given). */
  async addDevice(dev: string, gateways: string[] = [GW], policy?: Policy): Promise<Ed25519Signer> {
    const signer = Ed25519Signer.generate(dev);
    await this.backend.store.addDevice({ id: dev, publicKey: signer.publicKeyRaw, gateways, ...(policy === undefined ? {} : { policy }) });
    this.devices.set(dev, signer);
    return signer;
  }

  /** A hello from `dev` (signed by its key, or by `signer`), as the pipeline submits it. */
  async hello(dev: string, signer?: Ed25519Signer, id = `mqtt:${dev}:${Math.random().toString(36).slice(2, 8)}`): Promise<VerifyRequest> {
    const key = signer ?? this.devices.get(dev) ?? Ed25519Signer.generate(dev);
    const hello = await signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn: randomNonce(16) }, key);
    return { id, transport: 'mqtt', dev, hello };
  }

  async dispose(): Promise<void> {
    for (const c of this.#closers.splice(0).reverse()) await c().catch(() => undefined);
    await this.backend.close().catch(() => undefined);
    await this.keyStore.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The real clock shifted by an offset the test moves: breaker and expiry windows without sleeping. */
export class ShiftedClock implements TimerClock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
  setTimeout(fn: () => void, ms: number): object {
    return setTimeout(fn, ms);
  }
  clearTimeout(handle: object): void {
    clearTimeout(handle as NodeJS.Timeout);
  }
}
