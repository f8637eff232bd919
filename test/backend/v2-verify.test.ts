/**
 * protocol-v2 in `POST /v1/verify`, over real HTTPS: v2 hellos (alone or beside v1 ones) get a
 * grant beside the lease, bound to the exact hello bytes, the forwarding gateway and the
 * session key that signed the request; a hello naming another gateway is `not-allowed-here`;
 * and once a device has been verified on v2, its v1 hellos are `unsupported-version`, also
 * after a restart (No downgrade).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  Ed25519Signer,
  encodeCbor,
  generateX25519KeyPair,
  parseGrant,
  parseLease,
  randomNonce,
  signHello,
  signHelloV2,
  signSign1,
  verifySign1,
  type CborMap,
} from '../../protocol/index.js';
import { base64UrlDecode, base64UrlEncode } from '../../protocol/http-signature.js';
import { startTestBackend, type TestBackend, type TestGateway } from '../../testkit/backend.js';
import { STORE_KINDS, suiteStore } from '../../testkit/stores.js';

const T0 = 1_800_000_000;

type Result = { id: string; ok: true; dev: string; lease: string; grant?: string } | { id: string; ok: false; reason: string };

function helloV1(dev: Ed25519Signer): Promise<Uint8Array> {
  return signHello({ type: 'hello', version: 1, dev: dev.kid, pn: randomNonce(), gn: randomNonce() }, dev);
}

function helloV2(dev: Ed25519Signer, gw: string): Promise<Uint8Array> {
  return signHelloV2(
    { type: 'hello', version: 2, dev: dev.kid, pn: randomNonce(), gn: randomNonce(), gw, ge: generateX25519KeyPair().publicKey, pe: generateX25519KeyPair().publicKey },
    dev,
  );
}

/** A correctly signed hello of a version no one speaks (built by hand: the library refuses to). */
function helloV3(dev: Ed25519Signer): Promise<Uint8Array> {
  const m: CborMap = new Map<number, unknown>([
    [1, 'hello'],
    [2, 3],
    [3, dev.kid],
    [4, randomNonce()],
    [5, randomNonce()],
  ]) as CborMap;
  return signSign1(encodeCbor(m), dev);
}

for (const kind of STORE_KINDS) describe(`backend: protocol v2 hellos in POST /v1/verify [${kind}]`, () => {
  const store = suiteStore(kind);
  let tb: TestBackend;
  let gw: TestGateway;
  let session: Ed25519Signer;
  const clock = { now: () => T0 * 1000 };

  const verify = async (hellos: [string, Uint8Array][], signer: Ed25519Signer = session, gwId = gw.id): Promise<Result[]> => {
    const r = await tb.call('POST', '/v1/verify', {
      json: { hellos: hellos.map(([id, h]) => ({ id, transport: 'mqtt', hello: base64UrlEncode(h) })) },
      keyid: `session:${gwId}`,
      alg: 'ed25519',
      sign: (b) => signer.sign(b),
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return (r.body as { results: Result[] }).results;
  };
  const verdicts = (rs: Result[]) => rs.map((r) => [r.id, r.ok ? (r.grant !== undefined ? 'ok+grant' : 'ok') : r.reason]);

  before(async () => {
    tb = await startTestBackend({ clock, leaseSeconds: 3600, grantLifeSeconds: 900, store: await store.fresh() });
    gw = await tb.addGateway('gw-v2');
    ({ session } = await tb.openSession(gw));
  });
  after(async () => tb.close());

  it('answers an ok v2 hello with a lease and a grant over the exact hello bytes, the gateway and the signing session key', async () => {
    const dev = await tb.addDevice('v2-ok', { gateways: ['gw-v2'] });
    const hello = await helloV2(dev, gw.id);
    const [res] = await verify([['h1', hello]]);
    assert.ok(res?.ok);
    assert.deepEqual(Object.keys(res).sort(), ['dev', 'grant', 'id', 'lease', 'ok']);
    const grantBytes = base64UrlDecode(res.grant ?? '');
    assert.ok(grantBytes);
    const grant = parseGrant(grantBytes);
    assert.equal(grant.kid, tb.backend.kid);
    assert.equal(verifySign1(grant, tb.backend.publicKeyRaw), true);
    const hh = new Uint8Array(createHash('sha256').update(hello).digest());
    assert.deepEqual(grant.payload, { type: 'grant', version: 2, dev: 'v2-ok', gw: 'gw-v2', hh, spk: session.publicKeyRaw, iat: T0, life: 900 });
    const leaseBytes = base64UrlDecode(res.lease);
    assert.ok(leaseBytes);
    const lease = parseLease(leaseBytes);
    assert.equal(verifySign1(lease, tb.backend.publicKeyRaw), true);
    assert.equal(lease.payload.version, 1);
    assert.equal(lease.payload.exp, T0 + 3600);
    const kept = await tb.backend.store.newestGrant('v2-ok');
    assert.deepEqual(kept && { gw: kept.gw, hh: kept.hh, iat: kept.iat }, { gw: 'gw-v2', hh, iat: T0 });
  });

  it("puts the key that signed the request in spk, during a rotation the older one too", async () => {
    const g = await tb.addGateway('gw-v2-rot');
    const first = await tb.openSession(g);
    const second = await tb.openSession(g);
    const dev = await tb.addDevice('v2-rot');
    for (const s of [first.session, second.session]) {
      const [res] = await verify([['x', await helloV2(dev, g.id)]], s, g.id);
      assert.ok(res?.ok && res.grant !== undefined);
      assert.deepEqual(parseGrant(base64UrlDecode(res.grant) as Uint8Array).payload.spk, s.publicKeyRaw);
    }
  });

  it('refuses, not-allowed-here, a v2 hello naming another gateway than the one whose key signed the request', async () => {
    await tb.addGateway('gw-v2-elsewhere');
    const dev = await tb.addDevice('v2-relayed', { gateways: ['*'] });
    const rs = await verify([['relay', await helloV2(dev, 'gw-v2-elsewhere')]]);
    assert.deepEqual(verdicts(rs), [['relay', 'not-allowed-here']]);
    assert.equal(await tb.backend.store.newestGrant('v2-relayed'), undefined);
  });

  it('answers v1 and v2 hellos sharing a batch, each by its version', async () => {
    const a = await tb.addDevice('mix-v1');
    const b = await tb.addDevice('mix-v2');
    const c = await tb.addDevice('mix-v2-not-here', { gateways: ['gw-nowhere'] });
    const rs = await verify([
      ['a', await helloV1(a)],
      ['b', await helloV2(b, gw.id)],
      ['c', await helloV2(c, gw.id)],
      ['d', await helloV3(a)],
    ]);
    assert.deepEqual(verdicts(rs), [
      ['a', 'ok'],
      ['b', 'ok+grant'],
      ['c', 'not-allowed-here'],
      ['d', 'unsupported-version'],
    ]);
  });

  it('refuses a malformed (untagged) or forged v2 hello, and a forged one does not mark the device as v2', async () => {
    const dev = await tb.addDevice('v2-forged');
    const tagged = await helloV2(dev, gw.id);
    assert.equal(tagged[0], 0xd2);
    const forged = await helloV2(Ed25519Signer.generate('v2-forged'), gw.id);
    const rs = await verify([
      ['untagged', tagged.subarray(1)],
      ['forged', forged],
      ['v1', await helloV1(dev)],
    ]);
    assert.deepEqual(verdicts(rs), [
      ['untagged', 'malformed'],
      ['forged', 'bad-signature'],
      ['v1', 'ok'],
    ]);
  });

  it('refuses v1 hellos of a device once a v2 hello of it verified (No downgrade), in the same batch and after a restart', async () => {
    const dev = await tb.addDevice('v2-nodown');
    assert.deepEqual(verdicts(await verify([['before', await helloV1(dev)]])), [['before', 'ok']]);
    const rs = await verify([
      ['v2', await helloV2(dev, gw.id)],
      ['v1', await helloV1(dev)],
    ]);
    assert.deepEqual(verdicts(rs), [
      ['v2', 'ok+grant'],
      ['v1', 'unsupported-version'],
    ]);
    await tb.restart();
    assert.deepEqual(verdicts(await verify([['later', await helloV1(dev)]])), [['later', 'unsupported-version']]);
    assert.deepEqual(verdicts(await verify([['still-v2', await helloV2(dev, gw.id)]])), [['still-v2', 'ok+grant']]);
  });

  it('keeps the newest grant per device: another gateway verifying it replaces gw and hh', async () => {
    const dev = await tb.addDevice('v2-moves');
    const g2 = await tb.addGateway('gw-v2-second');
    const s2 = await tb.openSession(g2);
    await verify([['one', await helloV2(dev, gw.id)]]);
    const hello = await helloV2(dev, g2.id);
    const [res] = await verify([['two', hello]], s2.session, g2.id);
    assert.ok(res?.ok);
    const kept = await tb.backend.store.newestGrant('v2-moves');
    assert.equal(kept?.gw, 'gw-v2-second');
    assert.deepEqual(kept?.hh, new Uint8Array(createHash('sha256').update(hello).digest()));
    assert.deepEqual(kept?.spk, s2.session.publicKeyRaw);
  });
});

describe('backend: grant life default', () => {
  let tb: TestBackend;
  before(async () => {
    tb = await startTestBackend();
  });
  after(async () => tb.close());

  it('issues grants with life 86400 s unless configured', async () => {
    const gw = await tb.addGateway('gw-d');
    const { session } = await tb.openSession(gw);
    const dev = await tb.addDevice('d-life');
    const r = await tb.call('POST', '/v1/verify', {
      json: { hellos: [{ id: 'x', transport: 'ble', hello: base64UrlEncode(await helloV2(dev, gw.id)) }] },
      keyid: 'session:gw-d',
      alg: 'ed25519',
      sign: (b) => session.sign(b),
    });
    const [res] = (r.body as { results: Result[] }).results;
    assert.ok(res?.ok && res.grant !== undefined);
    assert.equal(parseGrant(base64UrlDecode(res.grant) as Uint8Array).payload.life, 86_400);
  });
});
