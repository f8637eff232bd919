/**
 * The backend past one machine: two `serve` replicas on one PostgreSQL database (a private
 * server, testkit/postgres.ts), the schema migrations and `check`, and PostgreSQL restarting
 * under load.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { run } from '../../backend/cli.js';
import { PgStore } from '../../backend/pg-store.js';
import { PG_SCHEMA_VERSION } from '../../backend/pg-migrations.js';
import { startBackend, type RunningBackend } from '../../backend/server.js';
import { Ed25519Signer, base64UrlEncode, randomNonce, signGatehouseRequest, signHello } from '../../protocol/index.js';
import { BACKEND_TEST_NAME, startTestBackend, type CallResult, type TestBackend, type TestGateway } from '../../testkit/backend.js';
import { captureIO } from '../../testkit/cli-io.js';
import { TestPostgres } from '../../testkit/postgres.js';
import { TcpRoundRobin } from '../../testkit/tcp-round-robin.js';

const PROBLEM = 'urn:gatehouse:problem:';
/** What the gateways are configured with: the load balancer's address, the same for every replica. */
const ORIGIN = 'https://backend-lb.gatehouse.test:8443';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureIO({});
  const code = await run(args, io);
  return { code, out: io.out(), err: io.err() };
}

let nonceCounter = 0;

/** A signed POST /v1/verify of one v1 hello from `dev`, as a gateway sends it. */
async function verifyRequest(gw: TestGateway, session: Ed25519Signer, dev: Ed25519Signer): Promise<CallResult['sent']> {
  const hello = await signHello({ type: 'hello', version: 1, dev: dev.kid, pn: randomNonce(), gn: randomNonce() }, dev);
  const body = JSON.stringify({ hellos: [{ id: 'h1', transport: 'mqtt', hello: base64UrlEncode(hello) }] });
  const headers = { 'content-type': 'application/json' };
  const sig = await signGatehouseRequest(
    { method: 'POST', url: `${ORIGIN}/v1/verify`, headers, body: new TextEncoder().encode(body) },
    { keyid: `session:${gw.id}`, alg: 'ed25519', created: Math.floor(Date.now() / 1000), nonce: `replica-${process.pid}-${++nonceCounter}`, sign: (b) => session.sign(b) },
  );
  return { method: 'POST', path: '/v1/verify', headers: { ...headers, ...sig }, body };
}

/** A signed POST /v1/gateways/{gw}/sessions for a fresh session key, signed by the gateway's TPM key. */
async function sessionRequest(gw: TestGateway): Promise<{ session: Ed25519Signer; sent: CallResult['sent'] }> {
  const session = Ed25519Signer.generate(gw.id);
  const path = `/v1/gateways/${gw.id}/sessions`;
  const body = JSON.stringify({ sessionPublicKey: base64UrlEncode(session.publicKeyRaw), notAfter: Math.floor(Date.now() / 1000) + 3600 });
  const headers = { 'content-type': 'application/json' };
  const sig = await signGatehouseRequest(
    { method: 'POST', url: `${ORIGIN}${path}`, headers, body: new TextEncoder().encode(body) },
    { keyid: `tpm:${gw.id}`, alg: 'ecdsa-p256-sha256', created: Math.floor(Date.now() / 1000), nonce: `replica-${process.pid}-${++nonceCounter}`, sign: (b) => gw.tpm.sign(b) },
  );
  return { session, sent: { method: 'POST', path, headers: { ...headers, ...sig }, body } };
}

describe('backend replicas on one PostgreSQL', function () {
  this.timeout(60_000);
  let pgs: TestPostgres;

  before(async () => {
    pgs = await TestPostgres.start();
  });
  after(async () => pgs?.stop());

  describe('migrate and check', () => {
    it('migrates once (a second run changes nothing), checks, and refuses a newer schema', async () => {
      const url = await pgs.createDatabase('mig');
      const before = await cli(['check', '--store', url]);
      assert.equal(before.code, 1);
      assert.match(before.err, new RegExp(`schema: 0 \\(this backend: ${PG_SCHEMA_VERSION}\\)`));
      assert.match(before.err, /GH_STORE_SCHEMA_OLDER/);
      await assert.rejects(PgStore.open(url), (e: unknown) => (e as { code?: string }).code === 'GH_STORE_SCHEMA_OLDER');

      const first = await cli(['migrate', '--store', url]);
      assert.equal(first.code, 0, first.err);
      assert.match(first.out, /schema 0 -> 2: applied 1, 2/);
      const again = await cli(['migrate', '--store', url, '--json']);
      assert.deepEqual(JSON.parse(again.out), { store: url, from: PG_SCHEMA_VERSION, to: PG_SCHEMA_VERSION, applied: [] });
      const ok = await cli(['check', '--store', url, '--json']);
      assert.equal(ok.code, 0);
      assert.deepEqual(JSON.parse(ok.out), { store: url, ok: true, reachable: true, schemaVersion: PG_SCHEMA_VERSION, latestSchemaVersion: PG_SCHEMA_VERSION });

      // The admin commands work on the store too.
      assert.equal((await cli(['device', 'add', '--store', url, '--dev', 'd1', '--public-key', 'ab'.repeat(16) + 'cd'.repeat(16), '--gateways', '*'])).code, 0);
      assert.match((await cli(['device', 'list', '--store', url])).out, /^d1\tactive/);

      // A newer backend migrated this database: this one refuses to migrate or serve it.
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query("INSERT INTO gatehouse_schema (version, what) VALUES (99, 'from the future')");
      await c.end();
      const newer = await cli(['migrate', '--store', url]);
      assert.equal(newer.code, 1);
      assert.match(newer.err, /GH_STORE_SCHEMA_NEWER/);
      await assert.rejects(PgStore.open(url), (e: unknown) => (e as { code?: string }).code === 'GH_STORE_SCHEMA_NEWER');
      assert.equal((await cli(['check', '--store', url])).code, 1);
    });

    it('reports an unreachable store', async () => {
      const r = await cli(['check', '--store', `postgres://gatehouse@127.0.0.1:${pgs.port}/no_such_db`]);
      assert.equal(r.code, 1);
      assert.match(r.err, /reachable: no/);
      assert.match(r.err, /GH_STORE_UNAVAILABLE/);
    });
  });

  describe('two replicas', () => {
    let tb: TestBackend;
    let b: RunningBackend;
    let gw: TestGateway;
    let dev: Ed25519Signer;
    let lb: TcpRoundRobin;

    /** Send on a new TLS connection (so the balancer picks the next replica). */
    const sendTo = async (url: string, sent: CallResult['sent']): Promise<{ status: number; type?: string; retryAfter?: string; body: unknown }> => {
      const agent = new Agent({ connect: { ca: tb.caPem, servername: BACKEND_TEST_NAME, timeout: 5000 }, headersTimeout: 10_000, bodyTimeout: 10_000 });
      let res;
      let body: Record<string, unknown>;
      try {
        res = await request(`${url}${sent.path}`, {
          method: sent.method,
          headers: sent.headers,
          ...(sent.body !== undefined ? { body: typeof sent.body === 'string' ? sent.body : Buffer.from(sent.body) } : {}),
          dispatcher: agent,
        });
        body = (await res.body.json()) as Record<string, unknown>;
      } finally {
        await agent.close();
      }
      const ra = res.headers['retry-after'];
      return { status: res.statusCode, body, ...(typeof body['type'] === 'string' ? { type: body['type'] } : {}), ...(typeof ra === 'string' ? { retryAfter: ra } : {}) };
    };

    before(async () => {
      const store = await pgs.createDatabase('rep');
      await PgStore.migrate(store);
      // Replica A (with the test helpers), then replica B: same store, same signing key, same origin.
      tb = await startTestBackend({ store, publicOrigin: ORIGIN });
      b = await startBackend({
        dataDir: join(tb.dir, 'data'),
        store,
        tls: { certPem: tb.pki.server.certPem, keyPem: tb.pki.server.keyPem },
        publicOrigin: ORIGIN,
      });
      assert.equal(b.kid, tb.backend.kid);
      lb = await TcpRoundRobin.start([tb.backend.port, b.port]);
      gw = await tb.addGateway('gw-rep');
      dev = await tb.addDevice('dev-rep', { gateways: ['gw-rep'] });
    });
    after(async () => {
      await lb?.close();
      await b?.close();
      await tb?.close();
    });

    it('verifies at replica B with a session created at replica A', async () => {
      const { session } = await tb.openSession(gw);
      const r = await sendTo(b.url, await verifyRequest(gw, session, dev));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual((r.body as { results: { ok: boolean; dev: string }[] }).results.map((x) => [x.ok, x.dev]), [[true, 'dev-rep']]);
    });

    it('refuses at replica B a request already used at replica A, and the other way round', async () => {
      const { session } = await tb.openSession(gw);
      const one = await verifyRequest(gw, session, dev);
      assert.equal((await sendTo(tb.backend.url, one)).status, 200);
      const replayed = await sendTo(b.url, one);
      assert.equal(replayed.status, 401);
      assert.equal(replayed.type, `${PROBLEM}replayed-nonce`);
      const two = await verifyRequest(gw, session, dev);
      assert.equal((await sendTo(b.url, two)).status, 200);
      assert.equal((await sendTo(tb.backend.url, two)).type, `${PROBLEM}replayed-nonce`);
    });

    it('serves a gateway behind one address (a TCP round-robin balancer): sessions and verifies alternate between replicas', async () => {
      const lbUrl = `https://127.0.0.1:${lb.port}`;
      const before = [...lb.served];
      // Each request on a new connection, so the balancer alternates replicas; the session is
      // created at whichever replica the balancer picks, and used at both.
      const created = await sessionRequest(gw);
      assert.equal((await sendTo(lbUrl, created.sent)).status, 201);
      for (let i = 0; i < 6; i++) {
        const r = await sendTo(lbUrl, await verifyRequest(gw, created.session, dev));
        assert.equal(r.status, 200, `request ${i}: ${JSON.stringify(r.body)}`);
      }
      const served = lb.served.map((n, i) => n - (before[i] ?? 0));
      assert.ok(served.every((n) => n >= 3), `connections per replica: ${served.join(', ')}`);
    });

    it('answers 503 store-unavailable with Retry-After while PostgreSQL restarts under a stream of requests, and verifies again after', async () => {
      const lbUrl = `https://127.0.0.1:${lb.port}`;
      const { session } = await tb.openSession(gw);
      const seen: { status: number; type?: string; retryAfter?: string; phase: string }[] = [];
      let phase = 'up';
      let stop = false;
      let waiters: (() => void)[] = [];
      const flow = (async () => {
        while (!stop) {
          const r = await sendTo(lbUrl, await verifyRequest(gw, session, dev)).catch((err: unknown) => ({ status: 0, body: String(err) }));
          seen.push({ ...r, phase });
          const w = waiters;
          waiters = [];
          for (const f of w) f();
        }
      })();
      /** Wait (bounded) until a response matching `pred` has been seen in `p`. */
      const until = async (what: string, pred: (x: (typeof seen)[number]) => boolean, ms = 20_000): Promise<void> => {
        const deadline = Date.now() + ms;
        while (!seen.some(pred)) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; seen ${JSON.stringify(seen.map((x) => [x.phase, x.status]))}`);
          // The next answer, or the deadline (the flow may have failed).
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, Math.max(0, deadline - Date.now()) + 1);
            waiters.push(() => {
              clearTimeout(t);
              resolve();
            });
          });
        }
      };
      try {
        await until('two answers before the restart', () => seen.filter((x) => x.phase === 'up' && x.status === 200).length >= 2);
        phase = 'down';
        await pgs.stopServer();
        await until('a 503 while PostgreSQL is down', (x) => x.phase === 'down' && x.status === 503);
        await until('503s from both replicas', () => seen.filter((x) => x.phase === 'down' && x.status === 503).length >= 2);
        await pgs.startServer();
        phase = 'back';
        await until('a verify after PostgreSQL is back', (x) => x.phase === 'back' && x.status === 200);
        await until('verifies at both replicas after', () => seen.filter((x) => x.phase === 'back' && x.status === 200).length >= 2);
      } finally {
        stop = true;
        await flow;
        if (!pgs.running) await pgs.startServer();
      }
      // Every answer was a verdict or a retryable 503 (never a 500 or a refusal).
      for (const x of seen) {
        if (x.status === 200) continue;
        assert.equal(x.status, 503, JSON.stringify(x));
        assert.equal(x.type, `${PROBLEM}store-unavailable`);
        assert.equal(x.retryAfter, '1');
        assert.notEqual(x.phase, 'up');
      }
    });
  });
});
