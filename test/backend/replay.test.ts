/**
 * Backend requests are not replayable across deployments and restarts: the origin a request
 * is verified against is configuration (never the Host header), the nonce window survives a
 * restart, and one key filling its nonce quota does not stop another's requests. The attacks
 * are made with a raw node:https client and the test's own RFC 9421 signatures.
 */
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendConfigError } from '../../backend/errors.js';
import { createTestPki, type TestPki } from '../../backend/pki.js';
import { startBackend, type BackendOptions } from '../../backend/server.js';
import { Ed25519Signer, signGatehouseRequest } from '../../protocol/index.js';
import { BACKEND_TEST_NAME, startTestBackend, type TestBackend, type TestGateway } from '../../testkit/backend.js';
import { STORE_KINDS, suiteStore } from '../../testkit/stores.js';

interface RawAnswer {
  status: number;
  type: string | undefined;
}

/** One HTTPS request to 127.0.0.1:`port` with exactly these headers (Host included). */
function raw(port: number, ca: string, o: { method: string; path: string; headers: Record<string, string>; body?: string }): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, method: o.method, path: o.path, headers: o.headers, ca, servername: BACKEND_TEST_NAME, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const type = String(res.headers['content-type'] ?? '').startsWith('application/problem+json') ? (JSON.parse(text) as { type: string }).type : undefined;
          resolve({ status: res.statusCode ?? 0, type });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** A GET of the revocation feed signed by `session` as if the backend were at `origin`. */
async function signedFeedRequest(origin: string, gw: string, session: Ed25519Signer, created: number, host: string) {
  const path = `/v1/gateways/${gw}/revocations?since=0`;
  const headers = await signGatehouseRequest(
    { method: 'GET', url: `${origin}${path}`, headers: {} },
    { keyid: `session:${gw}`, alg: 'ed25519', created, nonce: `raw-${Math.random().toString(36).slice(2)}-nonce`, sign: (b) => session.sign(b) },
  );
  return { method: 'GET', path, headers: { ...headers, host } };
}

const PROBLEM = 'urn:gatehouse:problem:';
const nowS = (): number => Math.floor(Date.now() / 1000);

describe('backend: requests are bound to one deployment and one use', () => {
  describe('origin', () => {
    let tb: TestBackend;
    let gw: TestGateway;
    let session: Ed25519Signer;
    const originB = (port: number): string => `https://backend-b.gatehouse.test:${port}`;

    before(async () => {
      tb = await startTestBackend({ publicOrigin: originB });
      gw = await tb.addGateway('gw-o');
      ({ session } = await tb.openSession(gw));
    });
    after(async () => tb.close());

    it('refuses a request signed for origin A at a backend configured as origin B, even with a Host header of A', async () => {
      const port = tb.backend.port;
      const hostA = `backend-a.gatehouse.test:${port}`;
      const forA = await signedFeedRequest(`https://${hostA}`, gw.id, session, nowS(), hostA);
      const r = await raw(port, tb.caPem, forA);
      assert.equal(r.status, 401);
      assert.equal(r.type, `${PROBLEM}bad-signature`);
      // Nor does the address it listens on stand in for the origin.
      const forAddress = await signedFeedRequest(`https://127.0.0.1:${port}`, gw.id, session, nowS(), `127.0.0.1:${port}`);
      assert.equal((await raw(port, tb.caPem, forAddress)).type, `${PROBLEM}bad-signature`);
    });

    it('verifies a request signed for its own origin whatever the Host header says', async () => {
      const port = tb.backend.port;
      assert.equal(tb.backend.origin, originB(port));
      const forB = await signedFeedRequest(originB(port), gw.id, session, nowS(), `backend-a.gatehouse.test:${port}`);
      const r = await raw(port, tb.caPem, forB);
      assert.equal(r.status, 200);
    });
  });

  for (const kind of STORE_KINDS) describe(`restart [${kind}]`, () => {
    const store = suiteStore(kind);
    let tb: TestBackend;
    let gw: TestGateway;
    let session: Ed25519Signer;

    before(async () => {
      tb = await startTestBackend({ store: await store.fresh() });
      gw = await tb.addGateway('gw-r');
      ({ session } = await tb.openSession(gw));
    });
    after(async () => tb.close());

    it('refuses a request replayed after the backend restarted', async () => {
      const port = tb.backend.port;
      const req = await signedFeedRequest(tb.backend.origin, gw.id, session, nowS(), `127.0.0.1:${port}`);
      assert.equal((await raw(port, tb.caPem, req)).status, 200);
      await tb.restart();
      assert.equal(tb.backend.port, port);
      const again = await raw(port, tb.caPem, req);
      assert.equal(again.status, 401);
      assert.equal(again.type, `${PROBLEM}replayed-nonce`);
      // The backend itself works after the restart: a fresh request goes through.
      const fresh = await signedFeedRequest(tb.backend.origin, gw.id, session, nowS(), `127.0.0.1:${port}`);
      assert.equal((await raw(port, tb.caPem, fresh)).status, 200);
    });
  });

  for (const kind of STORE_KINDS) describe(`nonce quota per key [${kind}]`, () => {
    const store = suiteStore(kind);
    let tb: TestBackend;

    before(async () => {
      tb = await startTestBackend({ noncesPerKeyid: 4, store: await store.fresh() });
    });
    after(async () => tb.close());

    it("one gateway over its quota gets 503 busy while another gateway's requests go through", async () => {
      const greedy = await tb.addGateway('gw-greedy');
      const modest = await tb.addGateway('gw-modest');
      const g = await tb.openSession(greedy);
      const m = await tb.openSession(modest);
      const port = tb.backend.port;
      const send = async (gw: string, s: Ed25519Signer) => raw(port, tb.caPem, await signedFeedRequest(tb.backend.origin, gw, s, nowS(), `127.0.0.1:${port}`));
      for (let i = 0; i < 4; i++) assert.equal((await send(greedy.id, g.session)).status, 200);
      const refused = await send(greedy.id, g.session);
      assert.equal(refused.status, 503);
      assert.equal(refused.type, `${PROBLEM}busy`);
      for (let i = 0; i < 4; i++) assert.equal((await send(modest.id, m.session)).status, 200, `modest request ${i}`);
      // The quota is per keyid: the greedy gateway's TPM key (a separate keyid) can still renew its session.
      await tb.openSession(greedy);
    });
  });

  describe('the origin is required configuration', () => {
    let dir: string;
    let pki: TestPki;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'gh-origin-'));
      pki = await createTestPki(join(dir, 'pki'), { dnsNames: [BACKEND_TEST_NAME] });
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('refuses to start without a public origin or with one that is not https://host[:port]; fixes the data directory mode on start', async () => {
      const base = { dataDir: join(dir, 'data'), tls: { certPem: pki.server.certPem, keyPem: pki.server.keyPem }, port: 0 };
      const bad: unknown[] = [undefined, 'http://backend.example', 'https://backend.example/api', 'https://backend.example/', 'https://u:p@backend.example', 'backend.example', () => 'ftp://x'];
      for (const publicOrigin of bad) {
        await assert.rejects(
          startBackend({ ...base, publicOrigin } as unknown as BackendOptions),
          (e: unknown) => e instanceof BackendConfigError && e.code === 'GH_BACKEND_ORIGIN',
          String(publicOrigin),
        );
      }
      // A data directory left loose is fixed on start.
      mkdirSync(base.dataDir, { recursive: true, mode: 0o755 });
      chmodSync(base.dataDir, 0o755);
      const ok = await startBackend({ ...base, publicOrigin: 'https://Backend.Example:443' });
      assert.equal(ok.origin, 'https://backend.example');
      assert.equal(statSync(base.dataDir).mode & 0o777, 0o700);
      await ok.close();
    });
  });
});
