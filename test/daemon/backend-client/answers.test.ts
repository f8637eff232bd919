/**
 * The client against a hostile or broken backend: a real HTTPS server on loopback (genuine
 * certificate from backend/pki.ts) whose answers each test chooses. Leases in answers are
 * really signed, by the test's backend key or by an impostor.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestPki, type TestPki } from '../../../backend/pki.js';
import { BackendClient, type BackendClientOptions } from '../../../daemon/backend-client/client.js';
import { BackendHttp, createBackendDispatcher } from '../../../daemon/backend-client/dispatcher.js';
import type { VerifyRequest, VerifyResult } from '../../../daemon/pipeline/types.js';
import { DEFAULT_POLICY, Ed25519Signer, Es256Signer, randomNonce, sha256, signGatewayCredential, signHello, signLease } from '../../../protocol/index.js';
import { base64UrlDecode } from '../../../protocol/http-signature.js';
import { SessionManager } from '../../../daemon/backend-client/session.js';
import { closeServer, listenLoopback } from '../../../testkit/listen.js';
import { BACKEND_CLIENT_DEFAULTS } from '../../../testkit/component-defaults.js';

const NAME = 'backend.example.com';
const GW = 'gw-a';

interface Answer {
  status: number;
  type?: string;
  body: string;
  headers?: Record<string, string>;
}

type Handler = (path: string, body: { hellos?: { id: string }[]; sessionPublicKey?: string }) => Answer | Promise<Answer>;

function reasonOf(r: VerifyResult): string {
  return r.ok ? 'ok' : r.reason;
}

describe('daemon/backend-client/client against broken and hostile answers', function () {
  this.timeout(60000);
  let dir: string;
  let pki: TestPki;
  let server: Server;
  let port: number;
  let handler: Handler;
  let hits: string[];
  const backend = Ed25519Signer.generate('backend-1');
  const impostor = Ed25519Signer.generate('backend-1');
  const device = Ed25519Signer.generate('dev-1');
  // The same key under kid dev-2: the test leases carry `device`'s public key as dpk.
  const device2 = Ed25519Signer.fromKeyObject(device.privateKey, 'dev-2');
  const device3 = Ed25519Signer.fromKeyObject(device.privateKey, 'dev-3');
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-answers-'));
    pki = await createTestPki(join(dir, 'pki'), { dnsNames: [NAME] });
    server = createServer({ key: pki.server.keyPem, cert: pki.server.certPem }, (req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => { raw += c.toString(); });
      req.on('end', () => {
        hits.push(req.url ?? '');
        void Promise.resolve(handler(req.url ?? '', raw === '' ? {} : (JSON.parse(raw) as { hellos?: { id: string }[] }))).then((a) => {
          res.writeHead(a.status, { 'content-type': a.type ?? 'application/json', ...a.headers });
          res.end(a.body);
        });
      });
    });
    port = await listenLoopback(server);
  });
  after(async () => {
    await closeServer(server);
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    hits = [];
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  function client(opts: Partial<BackendClientOptions> = {}): BackendClient {
    const agent = createBackendDispatcher({ url: `https://${NAME}:${port}`, ca: pki.ca.certPem, connectAddress: '127.0.0.1' });
    const session = { signer: Ed25519Signer.generate(GW), credential: new Uint8Array([0xd2]), notAfter: Math.floor(Date.now() / 1000) + 3600 };
    const c = new BackendClient({
      gw: GW,
      http: new BackendHttp({ url: `https://${NAME}:${port}`, dispatcher: agent, maxResponseBytes: 64 * 1024 }),
      session: { current: () => session },
      backendKeys: new Map([[backend.kid, backend.publicKeyRaw]]),
      stateDir: join(dir, `state-${Math.random().toString(36).slice(2)}`),
      ...BACKEND_CLIENT_DEFAULTS,
      revocationPollMs: 0,
      retryBaseMs: 1,
      retryMaxMs: 2,
      ...opts,
    });
    closers.push(async () => {
      await c.stop();
      await agent.close();
    });
    return c;
  }

  async function hello(dev = 'dev-1', signer = device): Promise<VerifyRequest> {
    const bytes = await signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn: randomNonce(16) }, signer);
    return { id: `x-${dev}`, transport: 'ble', dev, hello: bytes };
  }

  async function lease(dev: string, opts: { signer?: Ed25519Signer; gw?: string; policy?: { pub: string[]; sub: string[] } } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const bytes = await signLease(
      { type: 'lease', version: 1, dev, gw: opts.gw ?? GW, dpk: device.publicKeyRaw, policy: opts.policy ?? { pub: [...DEFAULT_POLICY.pub], sub: [...DEFAULT_POLICY.sub] }, iat: now, exp: now + 3600 },
      opts.signer ?? backend,
    );
    return Buffer.from(bytes).toString('base64url');
  }

  const json = (v: unknown, status = 200): Answer => ({ status, body: JSON.stringify(v) });
  const okAll = async (b: { hellos?: { id: string }[] }): Promise<Answer> =>
    json({ results: await Promise.all((b.hellos ?? []).map(async (h) => ({ id: h.id, ok: true, dev: 'dev-1', lease: await lease('dev-1') }))) });

  /** A client that holds a valid lease for dev-1 (so "not offline" is visible). */
  async function leasedClient(opts: Partial<BackendClientOptions> = {}): Promise<BackendClient> {
    const c = client(opts);
    handler = (_p, b) => okAll(b);
    assert.ok((await c.verify(await hello())).ok);
    return c;
  }

  it('accepts a well-formed answer and caches its lease', async () => {
    const c = await leasedClient();
    assert.equal(c.stats().leases, 1);
  });

  const malformed: [string, Answer | ((b: { hellos?: { id: string }[] }) => Answer)][] = [
    ['a non-JSON content type', { status: 200, type: 'text/html', body: '<html>' }],
    ['invalid JSON', { status: 200, body: '{"results": [' }],
    ['results that is not an array', json({ results: {} })],
    ['a result for an unknown id', json({ results: [{ id: 'nope', ok: false, reason: 'revoked' }] })],
    ['a reason that is not a protocol-v1 reason', (b) => json({ results: [{ id: b.hellos?.[0]?.id, ok: false, reason: 'because' }] })],
    ['ok that is not a boolean', (b) => json({ results: [{ id: b.hellos?.[0]?.id, ok: 'yes', dev: 'dev-1' }] })],
    ['an answer over the size bound', json({ results: [], pad: 'x'.repeat(70 * 1024) })],
  ];
  for (const [what, answer] of malformed) {
    it(`answers backend-unavailable (not offline) for ${what}`, async () => {
      const c = await leasedClient();
      handler = (_p, b) => (typeof answer === 'function' ? answer(b) : answer);
      const r = await c.verify(await hello());
      assert.equal(reasonOf(r), 'backend-unavailable');
      assert.equal(c.stats().offlineWelcomes, 0);
      assert.ok(c.stats().errors.response >= 1);
    });
  }

  it('refuses leases that do not verify under pk_S or are for another gateway or device, and does not cache them', async () => {
    const c = client();
    for (const bad of [await lease('dev-1', { signer: impostor }), await lease('dev-1', { gw: 'gw-b' }), await lease('dev-2'), 'not*base64']) {
      handler = (_p, b) => json({ results: [{ id: b.hellos?.[0]?.id, ok: true, dev: 'dev-1', lease: bad }] });
      assert.equal(reasonOf(await c.verify(await hello())), 'backend-unavailable');
    }
    assert.equal(c.stats().errors.lease, 4);
    assert.equal(c.stats().leases, 0);
  });

  it('refuses forged or other-device leases anywhere in an answer, not only in the first result (security finding 5)', async () => {
    const c = client();
    const [d1, d2, d3] = ['dev-1', 'dev-2', 'dev-3'];
    // The attack: one answer for three hellos whose first result is genuine; the second carries
    // a lease signed by an impostor under the backend's kid (right structure, gateway, device
    // and expiry; wrong signature) with a policy of its choosing; the third a genuine lease of
    // another device.
    const wide = { pub: ['#'], sub: ['#'] };
    handler = async (_p, b) =>
      json({ results: [
        { id: b.hellos?.[0]?.id, ok: true, dev: d1, lease: await lease(d1) },
        { id: b.hellos?.[1]?.id, ok: true, dev: d2, lease: await lease(d2, { signer: impostor, policy: wide }) },
        { id: b.hellos?.[2]?.id, ok: true, dev: d3, lease: await lease(d1) },
      ] });
    const online = await Promise.all([c.verify(await hello(d1)), c.verify(await hello(d2, device2)), c.verify(await hello(d3, device3))]);
    assert.equal(c.stats().batches, 1);
    assert.deepEqual(online.map(reasonOf), ['ok', 'backend-unavailable', 'backend-unavailable']);
    assert.equal(c.stats().errors.lease, 2);
    assert.equal(c.stats().leases, 1, 'only the genuine lease is cached');
    // Backend down: only the genuine lease serves the offline rule.
    handler = () => json({ title: 'down' }, 503);
    const offline = await c.verify(await hello(d1));
    assert.ok(offline.ok && offline.offline);
    assert.equal(reasonOf(await c.verify(await hello(d2, device2))), 'backend-unavailable');
    assert.equal(reasonOf(await c.verify(await hello(d3, device3))), 'backend-unavailable');
    assert.equal(c.stats().offlineWelcomes, 1);
  });

  it('answers each hello even when the answer leaves some out, and never accepts an id twice', async () => {
    const c = client();
    handler = async (_p, b) => {
      const first = b.hellos?.[0]?.id;
      return json({ results: [{ id: first, ok: true, dev: 'dev-1', lease: await lease('dev-1') }, { id: first, ok: false, reason: 'revoked' }] });
    };
    const [a, b2] = await Promise.all([c.verify(await hello()), c.verify(await hello())]);
    assert.equal(c.stats().batches, 1);
    assert.ok(a.ok, 'the first result for an id counts');
    assert.equal(reasonOf(b2), 'backend-unavailable');
  });

  it('retries a 5xx with backoff and succeeds', async () => {
    const c = client();
    let calls = 0;
    handler = (_p, b) => (++calls === 1 ? json({ title: 'busy' }, 503) : okAll(b));
    const r = await c.verify(await hello());
    assert.ok(r.ok);
    assert.equal(c.stats().retries, 1);
    assert.equal(c.stats().errors.server, 1);
  });

  it('after bounded retries of 5xx applies the offline rule', async () => {
    const c = await leasedClient({ maxAttempts: 3 });
    handler = () => json({ title: 'down' }, 500);
    const before = hits.length;
    const r = await c.verify(await hello());
    assert.ok(r.ok && r.offline);
    assert.equal(hits.length - before, 3, 'three attempts, no more');
  });

  it('does not follow a redirect and does not go offline for it', async () => {
    const c = await leasedClient();
    handler = () => ({ status: 307, body: '', headers: { location: 'https://elsewhere.example/v1/verify' } });
    const r = await c.verify(await hello());
    assert.equal(reasonOf(r), 'backend-unavailable');
    assert.equal(c.stats().errors.redirect, 1);
    assert.equal(c.stats().offlineWelcomes, 0);
  });

  it('a 4xx problem without a reason answers backend-unavailable; with one, that reason', async () => {
    const c = client();
    handler = () => ({ status: 400, type: 'application/problem+json', body: JSON.stringify({ type: 'urn:x', title: 'no' }) });
    assert.equal(reasonOf(await c.verify(await hello())), 'backend-unavailable');
    handler = () => ({ status: 403, type: 'application/problem+json', body: JSON.stringify({ type: 'urn:x', title: 'no', reason: 'revoked' }) });
    assert.equal(reasonOf(await c.verify(await hello())), 'revoked');
  });

  it('refuses malformed revocation answers and keeps its cursor', async () => {
    const c = client();
    await c.start();
    for (const bad of [{ cursor: -1, devices: [] }, { cursor: 1.5, devices: [] }, { cursor: 3, devices: ['bad id!'] }, { cursor: 3, devices: 'dev-1' }]) {
      handler = () => json(bad);
      assert.equal(await c.pollRevocations(), undefined);
    }
    assert.equal(c.stats().revocationCursor, 0);
    assert.equal(c.stats().errors.response, 4);
    handler = () => json({ cursor: 7, devices: ['dev-1'] });
    assert.deepEqual(await c.pollRevocations(), ['dev-1']);
    assert.equal(c.stats().revocationCursor, 7);
    assert.ok(hits.some((h) => h === `/v1/gateways/${GW}/revocations?since=0`));
  });

  it('starts the revocation feed from 0 when the cursor file is unreadable', async () => {
    const stateDir = join(dir, 'state-corrupt');
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, 'revocations.json'), 'garbage');
    const c = client({ stateDir });
    await c.start();
    assert.equal(c.stats().revocationCursor, 0);
  });

  it('refuses session credentials that are not exactly for this gateway, key and TPM key', async () => {
    const tpmKey = Es256Signer.generate(`tpm:${GW}`);
    const spki = new Uint8Array(tpmKey.publicKey.export({ type: 'spki', format: 'der' }));
    const now = Math.floor(Date.now() / 1000);
    type Cred = { gw: string; spk?: Uint8Array; tpk: Uint8Array; iat: number; exp: number };
    const good: Cred = { gw: GW, tpk: sha256(spki), iat: now, exp: now + 3600 };
    const cases: [string, Partial<Cred> & { signer?: Ed25519Signer; notAfter?: number; status?: number; raw?: string }][] = [
      ['impostor signature', { signer: impostor }],
      ['another gateway', { gw: 'gw-b' }],
      ['another session key', { spk: Ed25519Signer.generate('x').publicKeyRaw }],
      ['another TPM key', { tpk: sha256(new Uint8Array([1])) }],
      ['expired', { iat: now - 7200, exp: now - 10 }],
      ['notAfter not the exp', { notAfter: now + 10 }],
      ['200 instead of 201', { status: 200 }],
      ['not base64url', { raw: '***' }],
    ];
    for (const [what, v] of cases) {
      handler = async (_p, b) => {
        const spk = base64UrlDecode((b as { sessionPublicKey: string }).sessionPublicKey) as Uint8Array;
        const c = { ...good, spk, ...v };
        const bytes = await signGatewayCredential({ type: 'gw-cred', version: 1, gw: c.gw, spk: c.spk, tpk: c.tpk, iat: c.iat, exp: c.exp }, v.signer ?? backend);
        return json({ credential: v.raw ?? Buffer.from(bytes).toString('base64url'), notAfter: v.notAfter ?? c.exp }, v.status ?? 201);
      };
      const agent = createBackendDispatcher({ url: `https://${NAME}:${port}`, ca: pki.ca.certPem, connectAddress: '127.0.0.1' });
      const session = new SessionManager({
        gw: GW, http: new BackendHttp({ url: `https://${NAME}:${port}`, dispatcher: agent }), tpmSigner: tpmKey, tpmPublicKeySpki: spki,
        backendKeys: new Map([[backend.kid, backend.publicKeyRaw]]), stateDir: join(dir, 'session-state'),
      });
      try {
        assert.equal(await session.start(), false, what);
        assert.equal(session.current(), undefined, what);
      } finally {
        session.stop();
        await agent.close();
      }
    }
    // and the good one is accepted by the same code
    handler = async (_p, b) => {
      const spk = base64UrlDecode((b as { sessionPublicKey: string }).sessionPublicKey) as Uint8Array;
      const bytes = await signGatewayCredential({ type: 'gw-cred', version: 1, ...good, spk }, backend);
      return json({ credential: Buffer.from(bytes).toString('base64url'), notAfter: good.exp }, 201);
    };
    const agent = createBackendDispatcher({ url: `https://${NAME}:${port}`, ca: pki.ca.certPem, connectAddress: '127.0.0.1' });
    const session = new SessionManager({
      gw: GW, http: new BackendHttp({ url: `https://${NAME}:${port}`, dispatcher: agent }), tpmSigner: tpmKey, tpmPublicKeySpki: spki,
      backendKeys: new Map([[backend.kid, backend.publicKeyRaw]]), stateDir: join(dir, 'session-state'),
    });
    try {
      assert.equal(await session.start(), true);
    } finally {
      session.stop();
      await agent.close();
    }
  });

  it('without a session answers backend-unavailable and sends nothing', async () => {
    const c = client({ session: { current: () => undefined } });
    handler = (_p, b) => okAll(b);
    assert.equal(reasonOf(await c.verify(await hello())), 'backend-unavailable');
    assert.equal(c.stats().errors['no-session'], 1);
    assert.equal(hits.length, 0);
  });

  it('answers every queued hello when stopped, and answers an aborted caller at once', async () => {
    // Held in the queue: a long batch wait and no send-when-idle.
    const c = client({ maxWaitMs: 10_000, flushWhenIdle: false });
    handler = (_p, b) => okAll(b);
    const pending = c.verify(await hello());
    const ac = new AbortController();
    const aborted = c.verify(await hello(), ac.signal);
    ac.abort();
    assert.equal(reasonOf(await aborted), 'backend-unavailable');
    await c.stop();
    assert.equal(reasonOf(await pending), 'backend-unavailable');
    assert.equal(reasonOf(await c.verify(await hello())), 'backend-unavailable', 'after stop: answered at once');
    assert.equal(hits.length, 0);
  });
});
