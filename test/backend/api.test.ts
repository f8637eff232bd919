import assert from 'node:assert/strict';
import { createHash, createPublicKey } from 'node:crypto';
import {
  Ed25519Signer,
  Es256Signer,
  parseGatewayCredential,
  parseLease,
  randomNonce,
  signHello,
  verifySign1,
} from '../../protocol/index.js';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { base64UrlDecode, base64UrlEncode } from '../../protocol/http-signature.js';
import { startTestBackend, type CallResult, type TestBackend, type TestGateway } from '../../testkit/backend.js';
import { STORE_KINDS, suiteStore } from '../../testkit/stores.js';

const T0 = 1_800_000_000;

/** A clock the tests move by hand. */
function manualClock(startS: number): { now(): number; set(s: number): void } {
  let ms = startS * 1000;
  return { now: () => ms, set: (s) => (ms = s * 1000) };
}

function helloFor(dev: Ed25519Signer): Promise<Uint8Array> {
  return signHello({ type: 'hello', version: 1, dev: dev.kid, pn: randomNonce(), gn: randomNonce() }, dev);
}

function problem(r: CallResult, status: number, slug: string): Record<string, unknown> {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(String(r.headers['content-type']), 'application/problem+json');
  const body = r.body as Record<string, unknown>;
  assert.equal(body['type'], `urn:gatehouse:problem:${slug}`);
  assert.equal(body['status'], status);
  assert.equal(typeof body['title'], 'string');
  return body;
}

for (const kind of STORE_KINDS) describe(`backend API over HTTPS [${kind}]`, () => {
  const store = suiteStore(kind);
  let tb: TestBackend;
  let gw: TestGateway;
  let session: Ed25519Signer;
  const clock = manualClock(T0);

  const verify = (hellos: unknown[], signer: Ed25519Signer = session, keyid = `session:${gw.id}`) =>
    tb.call('POST', '/v1/verify', { json: { hellos }, keyid, alg: 'ed25519', sign: (b) => signer.sign(b) });

  before(async () => {
    tb = await startTestBackend({ clock, leaseSeconds: 3600, maxSessionSeconds: 2 * 86_400, store: await store.fresh() });
    gw = await tb.addGateway('gw-1', { groups: ['plant-a'] });
    ({ session } = await tb.openSession(gw));
  });
  after(async () => tb.close());
  afterEach(() => clock.set(T0));

  describe('POST /v1/gateways/{gw}/sessions', () => {
    // Its own gateway: opening sessions here must not rotate gw-1's session key away.
    let gw: TestGateway;
    let session: Ed25519Signer;
    before(async () => {
      gw = await tb.addGateway('gw-s');
      ({ session } = await tb.openSession(gw));
    });

    it('answers 201 with a gw-cred for the session key, tpk = SHA-256 of the TPM SPKI', async () => {
      const s = Ed25519Signer.generate(gw.id);
      const r = await tb.call('POST', `/v1/gateways/${gw.id}/sessions`, {
        json: { sessionPublicKey: base64UrlEncode(s.publicKeyRaw), notAfter: T0 + 3600 },
        keyid: `tpm:${gw.id}`,
        alg: 'ecdsa-p256-sha256',
        sign: (b) => gw.tpm.sign(b),
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(String(r.headers['content-type']), 'application/json');
      const body = r.body as { credential: string; notAfter: number };
      assert.deepEqual(Object.keys(body).sort(), ['credential', 'notAfter']);
      assert.equal(body.notAfter, T0 + 3600);
      const bytes = base64UrlDecode(body.credential);
      assert.ok(bytes);
      const cred = parseGatewayCredential(bytes);
      assert.equal(cred.kid, tb.backend.kid);
      assert.equal(verifySign1(cred, tb.backend.publicKeyRaw), true);
      const spki = createPublicKey(gw.tpmPublicKeyPem).export({ format: 'der', type: 'spki' });
      assert.deepEqual(cred.payload, {
        type: 'gw-cred',
        version: 1,
        gw: gw.id,
        spk: s.publicKeyRaw,
        tpk: new Uint8Array(createHash('sha256').update(spki).digest()),
        iat: T0,
        exp: T0 + 3600,
      });
    });

    it('caps notAfter to the maximum session lifetime', async () => {
      const r = await tb.openSession(gw, T0 + 30 * 86_400);
      assert.equal(r.notAfter, T0 + 2 * 86_400);
      assert.equal(parseGatewayCredential(r.credential).payload.exp, T0 + 2 * 86_400);
    });

    it('refuses a request signed by another P-256 key', async () => {
      const impostor = Es256Signer.generate('x');
      const r = await tb.call('POST', `/v1/gateways/${gw.id}/sessions`, {
        json: { sessionPublicKey: base64UrlEncode(Ed25519Signer.generate('s').publicKeyRaw), notAfter: T0 + 60 },
        keyid: `tpm:${gw.id}`,
        alg: 'ecdsa-p256-sha256',
        sign: (b) => impostor.sign(b),
      });
      assert.equal(problem(r, 401, 'bad-signature')['reason'], 'bad-signature');
    });

    it('refuses a session key signing for the TPM, and a path naming another gateway', async () => {
      const json = { sessionPublicKey: base64UrlEncode(Ed25519Signer.generate('s').publicKeyRaw), notAfter: T0 + 60 };
      problem(await tb.call('POST', `/v1/gateways/${gw.id}/sessions`, { json, keyid: `session:${gw.id}`, alg: 'ed25519', sign: (b) => session.sign(b) }), 403, 'wrong-key-for-call');
      await tb.addGateway('gw-other');
      problem(
        await tb.call('POST', '/v1/gateways/gw-other/sessions', { json, keyid: `tpm:${gw.id}`, alg: 'ecdsa-p256-sha256', sign: (b) => gw.tpm.sign(b) }),
        403,
        'wrong-key-for-call',
      );
    });

    it('refuses a bad session key or notAfter', async () => {
      const sign = (b: Uint8Array) => gw.tpm.sign(b);
      const opts = { keyid: `tpm:${gw.id}`, alg: 'ecdsa-p256-sha256' as const, sign };
      const good = base64UrlEncode(Ed25519Signer.generate('s').publicKeyRaw);
      const bodies = [
        { sessionPublicKey: base64UrlEncode(new Uint8Array(31)), notAfter: T0 + 60 },
        { sessionPublicKey: base64UrlEncode(new Uint8Array(32)), notAfter: T0 + 60 }, // small-order point
        { sessionPublicKey: good, notAfter: T0 - 1 },
        { sessionPublicKey: good, notAfter: '1' },
        { sessionPublicKey: good, notAfter: T0 + 60, extra: 1 },
        { sessionPublicKey: `${good}=`, notAfter: T0 + 60 },
      ];
      for (const json of bodies) {
        const body = problem(await tb.call('POST', `/v1/gateways/${gw.id}/sessions`, { json, ...opts }), 400, 'malformed-request');
        assert.equal(body['reason'], 'malformed');
      }
    });
  });

  describe('POST /v1/verify', () => {
    it('answers ok with a lease for a registered device allowed here', async () => {
      const dev = await tb.addDevice('dev-ok', { gateways: ['gw-1'] });
      const hello = await helloFor(dev);
      const r = await verify([{ id: 'h1', transport: 'mqtt', hello: base64UrlEncode(hello) }]);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const [res] = (r.body as { results: { id: string; ok: boolean; dev: string; lease: string }[] }).results;
      assert.ok(res);
      assert.deepEqual(Object.keys(res).sort(), ['dev', 'id', 'lease', 'ok']);
      assert.equal(res.id, 'h1');
      assert.equal(res.ok, true);
      assert.equal(res.dev, 'dev-ok');
      const leaseBytes = base64UrlDecode(res.lease);
      assert.ok(leaseBytes);
      const lease = parseLease(leaseBytes);
      assert.equal(verifySign1(lease, tb.backend.publicKeyRaw), true);
      assert.deepEqual(lease.payload, {
        type: 'lease',
        version: 1,
        dev: 'dev-ok',
        gw: 'gw-1',
        dpk: dev.publicKeyRaw,
        policy: { pub: ['devices/{dev}/#'], sub: ['devices/{dev}/cmd/#'] },
        iat: T0,
        exp: T0 + 3600,
      });
    });

    it('reuses a device lease while it has half its life left, then signs a new one (backend/issued-leases.ts)', async () => {
      const dev = await tb.addDevice('dev-reuse', { gateways: ['gw-1'] });
      const leaseOf = async (): Promise<string> => {
        const r = await verify([{ id: 'h1', transport: 'mqtt', hello: base64UrlEncode(await helloFor(dev)) }]);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return (r.body as { results: { lease: string }[] }).results[0]?.lease ?? '';
      };
      const first = await leaseOf();
      clock.set(T0 + 1800);
      assert.equal(await leaseOf(), first);
      clock.set(T0 + 1801);
      const renewed = await leaseOf();
      assert.notEqual(renewed, first);
      const bytes = base64UrlDecode(renewed);
      assert.ok(bytes);
      assert.deepEqual([parseLease(bytes).payload.iat, parseLease(bytes).payload.exp], [T0 + 1801, T0 + 1801 + 3600]);
    });

    it('gives each hello its own verdict and reason, in order', async () => {
      const okAny = await tb.addDevice('dev-any', { gateways: ['*'], policy: { pub: ['x/{dev}'], sub: [] } });
      const okGroup = await tb.addDevice('dev-group', { gateways: ['group:plant-a'] });
      const elsewhere = await tb.addDevice('dev-elsewhere', { gateways: ['gw-9', 'group:plant-b'] });
      const revoked = await tb.addDevice('dev-revoked');
      await tb.backend.store.revokeDevice('dev-revoked');
      await tb.addDevice('dev-forged');
      const forger = Ed25519Signer.generate('dev-forged');
      const unknown = Ed25519Signer.generate('dev-unknown');
      const items = [
        ['a', await helloFor(okAny)],
        ['b', await helloFor(okGroup)],
        ['c', await helloFor(elsewhere)],
        ['d', await helloFor(revoked)],
        ['e', await helloFor(forger)],
        ['f', await helloFor(unknown)],
        ['g', new Uint8Array([0xd2, 0x84, 0x40])],
      ] as const;
      const r = await verify(items.map(([id, h]) => ({ id, transport: 'ble', hello: base64UrlEncode(h) })));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const results = (r.body as { results: { id: string; ok: boolean; reason?: string; dev?: string }[] }).results;
      assert.deepEqual(
        results.map((x) => [x.id, x.ok, x.ok ? x.dev : x.reason]),
        [
          ['a', true, 'dev-any'],
          ['b', true, 'dev-group'],
          ['c', false, 'not-allowed-here'],
          ['d', false, 'revoked'],
          ['e', false, 'bad-signature'],
          ['f', false, 'unknown-device'],
          ['g', false, 'malformed'],
        ],
      );
      for (const x of results.filter((y) => !y.ok)) assert.deepEqual(Object.keys(x).sort(), ['id', 'ok', 'reason']);
    });

    it('accepts the two newest session keys and refuses an older one', async () => {
      const dev = await tb.addDevice('dev-rot');
      const g = await tb.addGateway('gw-rot');
      const first = await tb.openSession(g);
      const second = await tb.openSession(g);
      const item = async () => [{ id: 'x', transport: 'mqtt', hello: base64UrlEncode(await helloFor(dev)) }];
      assert.equal((await verify(await item(), first.session, 'session:gw-rot')).status, 200);
      assert.equal((await verify(await item(), second.session, 'session:gw-rot')).status, 200);
      await tb.openSession(g);
      problem(await verify(await item(), first.session, 'session:gw-rot'), 401, 'bad-signature');
      assert.equal((await verify(await item(), second.session, 'session:gw-rot')).status, 200);
    });

    it('refuses a session key whose credential has expired', async () => {
      const dev = await tb.addDevice('dev-exp');
      const g = await tb.addGateway('gw-exp');
      const s = await tb.openSession(g, T0 + 600);
      clock.set(T0 + 601);
      const r = await verify([{ id: 'x', transport: 'mqtt', hello: base64UrlEncode(await helloFor(dev)) }], s.session, 'session:gw-exp');
      problem(r, 401, 'unknown-key');
    });

    it('refuses a request signed by a key that was never certified (wrong key)', async () => {
      const stranger = Ed25519Signer.generate(gw.id);
      problem(await verify([], stranger), 401, 'bad-signature');
    });

    it('refuses more than 256 hellos', async () => {
      const dev = await tb.addDevice('dev-many');
      const h = base64UrlEncode(await helloFor(dev));
      const ok = await verify(Array.from({ length: 256 }, (_, i) => ({ id: `h${i}`, transport: 'mqtt', hello: h })));
      assert.equal(ok.status, 200);
      assert.equal((ok.body as { results: unknown[] }).results.length, 256);
      const r = await verify(Array.from({ length: 257 }, (_, i) => ({ id: `h${i}`, transport: 'mqtt', hello: h })));
      problem(r, 400, 'too-many-hellos');
    });

    it('takes 256 hellos of the maximum size within the body limit', async () => {
      const big = base64UrlEncode(new Uint8Array(1024).fill(0xa5));
      const r = await verify(Array.from({ length: 256 }, (_, i) => ({ id: `big-${i}`, transport: 'ble', hello: big })));
      assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 200));
      const results = (r.body as { results: { ok: boolean; reason?: string }[] }).results;
      assert.equal(results.length, 256);
      assert.ok(results.every((x) => !x.ok && x.reason === 'malformed'));
    });

    it('refuses malformed JSON and malformed items', async () => {
      const opts = { keyid: `session:${gw.id}`, alg: 'ed25519' as const, sign: (b: Uint8Array) => session.sign(b) };
      problem(await tb.call('POST', '/v1/verify', { rawBody: '{"hellos": [', ...opts }), 400, 'malformed-request');
      problem(await tb.call('POST', '/v1/verify', { rawBody: Buffer.from([0x7b, 0xff, 0x7d]), ...opts }), 400, 'malformed-request');
      const h = 'AAAA';
      for (const hellos of [
        [],
        [{ id: 'a', transport: 'usb', hello: h }],
        [{ id: '', transport: 'mqtt', hello: h }],
        [{ id: 'a', transport: 'mqtt', hello: h }, { id: 'a', transport: 'mqtt', hello: h }],
        [{ id: 'a', transport: 'mqtt', hello: 'AA==' }],
        [{ id: 'a', transport: 'mqtt', hello: base64UrlEncode(new Uint8Array(1025)) }],
        [{ id: 'a', transport: 'mqtt' }],
      ]) {
        problem(await verify(hellos), 400, 'malformed-request');
      }
    });

    it('refuses a body over the limit with 413', async () => {
      const r = await verify([{ id: 'a', transport: 'mqtt', hello: 'A'.repeat(600 * 1024) }]);
      problem(r, 413, 'body-too-large');
    });

    it('refuses a request that is not application/json', async () => {
      const r = await tb.call('POST', '/v1/verify', {
        rawBody: '{"hellos":[]}',
        headers: { 'content-type': 'text/plain' },
        keyid: `session:${gw.id}`,
        alg: 'ed25519',
        sign: (b) => session.sign(b),
      });
      problem(r, 415, 'unsupported-media-type');
    });
  });

  describe('GET /v1/gateways/{gw}/revocations', () => {
    const get = (query: string, signer: Ed25519Signer = session, g = 'gw-1') =>
      tb.call('GET', `/v1/gateways/${g}/revocations${query}`, { keyid: `session:${g}`, alg: 'ed25519', sign: (b) => signer.sign(b) });

    it('returns revoked devices after a cursor, and the new cursor', async () => {
      const before = await get('?since=0');
      assert.equal(before.status, 200);
      const start = (before.body as { cursor: number }).cursor;
      const r1 = await tb.addDevice('dev-r1');
      const r2 = await tb.addDevice('dev-r2');
      const r = await verify([
        { id: 'r1', transport: 'mqtt', hello: base64UrlEncode(await helloFor(r1)) },
        { id: 'r2', transport: 'mqtt', hello: base64UrlEncode(await helloFor(r2)) },
      ]);
      assert.equal(r.status, 200);
      await tb.backend.store.revokeDevice('dev-r1');
      await tb.backend.store.revokeDevice('dev-r2');
      const page = await get(`?since=${start}`);
      assert.equal(page.status, 200);
      assert.deepEqual(page.body, { cursor: start + 2, devices: ['dev-r1', 'dev-r2'] });
      assert.deepEqual((await get(`?since=${start + 2}`)).body, { cursor: start + 2, devices: [] });
      assert.deepEqual((await get(`?since=${start + 1}`)).body, { cursor: start + 2, devices: ['dev-r2'] });
    });

    it("does not tell a gateway about devices that were never verified at it", async () => {
      const start = ((await get('?since=0')).body as { cursor: number }).cursor;
      const g2 = await tb.addGateway('gw-feed-2');
      const s2 = await tb.openSession(g2);
      const mine = await tb.addDevice('dev-feed-mine');
      const theirs = await tb.addDevice('dev-feed-theirs');
      assert.equal((await verify([{ id: 'm', transport: 'mqtt', hello: base64UrlEncode(await helloFor(mine)) }])).status, 200);
      const other = await verify([{ id: 't', transport: 'mqtt', hello: base64UrlEncode(await helloFor(theirs)) }], s2.session, 'session:gw-feed-2');
      assert.equal(other.status, 200);
      await tb.backend.store.revokeDevice('dev-feed-theirs');
      await tb.backend.store.revokeDevice('dev-feed-mine');
      await tb.addDevice('dev-feed-never');
      await tb.backend.store.revokeDevice('dev-feed-never');
      assert.deepEqual((await get(`?since=${start}`)).body, { cursor: start + 3, devices: ['dev-feed-mine'] });
      assert.deepEqual((await get(`?since=${start}`, s2.session, 'gw-feed-2')).body, { cursor: start + 3, devices: ['dev-feed-theirs'] });
    });

    it('refuses a bad cursor and another gateway\'s feed', async () => {
      problem(await get('?since=-1'), 400, 'malformed-request');
      problem(await get('?since=1&x=2'), 400, 'malformed-request');
      await tb.addGateway('gw-feed-other');
      const other = await tb.call('GET', '/v1/gateways/gw-feed-other/revocations?since=0', {
        keyid: 'session:gw-1',
        alg: 'ed25519',
        sign: (b) => session.sign(b),
      });
      problem(other, 403, 'wrong-key-for-call');
    });
  });

  describe('request signature checks', () => {
    it('refuses a replayed request (same nonce) within the window', async () => {
      const first = await tb.call('GET', '/v1/gateways/gw-1/revocations?since=0', { keyid: 'session:gw-1', alg: 'ed25519', sign: (b) => session.sign(b) });
      assert.equal(first.status, 200);
      const again = await tb.send(first.sent);
      assert.equal(problem(again, 401, 'replayed-nonce')['reason'], 'bad-signature');
    });

    it('refuses created more than 300 s off', async () => {
      for (const created of [T0 - 301, T0 + 301]) {
        const r = await tb.call('GET', '/v1/gateways/gw-1/revocations', { created, keyid: 'session:gw-1', alg: 'ed25519', sign: (b) => session.sign(b) });
        problem(r, 401, 'signature-stale');
      }
      const edge = await tb.call('GET', '/v1/gateways/gw-1/revocations', { created: T0 - 300, keyid: 'session:gw-1', alg: 'ed25519', sign: (b) => session.sign(b) });
      assert.equal(edge.status, 200);
    });

    it('refuses an unknown gateway', async () => {
      const s = Ed25519Signer.generate('gw-nobody');
      problem(await verify([], s, 'session:gw-nobody'), 401, 'unknown-gateway');
    });

    it('refuses a revoked gateway, even with a session key it held', async () => {
      const g = await tb.addGateway('gw-revoked');
      const s = await tb.openSession(g);
      await tb.backend.store.revokeGateway('gw-revoked');
      const r = await verify([], s.session, 'session:gw-revoked');
      assert.equal(problem(r, 403, 'gateway-revoked')['reason'], 'revoked');
      const json = { sessionPublicKey: base64UrlEncode(Ed25519Signer.generate('s').publicKeyRaw), notAfter: T0 + 60 };
      problem(
        await tb.call('POST', '/v1/gateways/gw-revoked/sessions', { json, keyid: 'tpm:gw-revoked', alg: 'ecdsa-p256-sha256', sign: (b) => g.tpm.sign(b) }),
        403,
        'gateway-revoked',
      );
    });

    it('refuses a body changed after signing (Content-Digest)', async () => {
      const r = await tb.call('POST', '/v1/verify', {
        json: { hellos: [] },
        tamperBody: '{"hellos":[ ]}',
        keyid: 'session:gw-1',
        alg: 'ed25519',
        sign: (b) => session.sign(b),
      });
      problem(r, 400, 'bad-content-digest');
    });

    it('refuses an unsigned request and a signature under the wrong alg', async () => {
      problem(await tb.send({ method: 'GET', path: '/v1/gateways/gw-1/revocations', headers: {} }), 401, 'signature-invalid');
      const r = await tb.call('GET', '/v1/gateways/gw-1/revocations', { keyid: 'session:gw-1', alg: 'ecdsa-p256-sha256', sign: (b) => session.sign(b) });
      problem(r, 401, 'signature-invalid');
    });

    it('answers unknown paths and methods with problems', async () => {
      problem(await tb.send({ method: 'GET', path: '/v1/nothing', headers: {} }), 404, 'not-found');
      const r = await tb.send({ method: 'GET', path: '/v1/verify', headers: {} });
      problem(r, 405, 'method-not-allowed');
      assert.equal(r.headers['allow'], 'POST');
    });
  });
});

for (const kind of STORE_KINDS) describe(`backend HTTP limits [${kind}]`, () => {
  const store = suiteStore(kind);
  let tb: TestBackend;
  let gw: TestGateway;
  let session: Ed25519Signer;

  before(async () => {
    tb = await startTestBackend({ noncesPerKeyid: 3, store: await store.fresh() });
    gw = await tb.addGateway('gw-lim');
    ({ session } = await tb.openSession(gw));
  });
  after(async () => tb.close());

  it('refuses a streamed (chunked) body over the limit with 413', async () => {
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 64; i++) yield Buffer.alloc(16 * 1024, 0x41);
    }
    const res = await request(`${tb.backend.url}/v1/verify`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(chunks()),
      dispatcher: tb.dispatcher,
    });
    assert.equal(res.statusCode, 413);
    assert.equal(((await res.body.json()) as { type: string }).type, 'urn:gatehouse:problem:body-too-large');
  });

  it('refuses oversized headers with 431', async () => {
    const res = await request(`${tb.backend.url}/v1/verify`, { method: 'POST', headers: { 'x-big': 'a'.repeat(20_000) }, dispatcher: tb.dispatcher });
    await res.body.dump();
    assert.equal(res.statusCode, 431);
  });

  it("answers 503 busy with Retry-After to a key over its nonce quota, and serves another gateway's key meanwhile", async () => {
    const other = await tb.addGateway('gw-lim-2');
    const { session: otherSession } = await tb.openSession(other);
    const get = (g: string, s: Ed25519Signer) => tb.call('GET', `/v1/gateways/${g}/revocations`, { keyid: `session:${g}`, alg: 'ed25519', sign: (b) => s.sign(b) });
    for (let i = 0; i < 3; i++) assert.equal((await get('gw-lim', session)).status, 200);
    const r = await get('gw-lim', session);
    problem(r, 503, 'busy');
    assert.equal(r.headers['retry-after'], '5');
    assert.equal((await get('gw-lim-2', otherSession)).status, 200);
    problem(await get('gw-lim', session), 503, 'busy');
  });
});
