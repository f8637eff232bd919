/**
 * The data plane over real HTTPS against both stores (protocol-v2 "Backend HTTP API (v2
 * additions)", "Commands", "What S trusts G for"): telemetry exactly once per (dev, sid, seq)
 * and per (dev, mid); 403 for devices not granted at the gateway, outside their lease, or a
 * topic outside their policy; the size limits; commands queued for the newest grant's gateway,
 * re-signed on a newer grant; the long poll; expiry; acks keeping the first done/failed.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startBackend, type RunningBackend } from '../../backend/server.js';
import { CommandError } from '../../backend/errors.js';
import { Ed25519Signer, generateX25519KeyPair, parseCommand, randomNonce, signHello, signHelloV2, verifySign1 } from '../../protocol/index.js';
import { base64UrlDecode, base64UrlEncode } from '../../protocol/http-signature.js';
import { startTestBackend, type CallResult, type TestBackend, type TestGateway } from '../../testkit/backend.js';
import { STORE_KINDS, suiteStore } from '../../testkit/stores.js';

const T0 = 1_800_000_000;

/** Resolve once `cond()` holds, polling each event-loop turn; reject after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
const LEASE = 3600;

interface Rec {
  dev: string;
  sid: string;
  seq: number;
  topic: string;
  body: string;
  receivedAt: number;
  mid?: number;
}

for (const kind of STORE_KINDS) describe(`backend: the data plane [${kind}]`, function () {
  this.timeout(30_000);
  const store = suiteStore(kind);
  let tb: TestBackend;
  let gw: TestGateway;
  let gw2: TestGateway;
  let s1: Ed25519Signer;
  let s2: Ed25519Signer;
  let nowMs = T0 * 1000;
  const clock = { now: () => nowMs };

  const signed = (g: TestGateway, s: Ed25519Signer) => ({ keyid: `session:${g.id}`, alg: 'ed25519' as const, sign: (b: Uint8Array) => s.sign(b) });
  const telemetry = (records: unknown[], g = gw, s = s1): Promise<CallResult> => tb.call('POST', `/v1/gateways/${g.id}/telemetry`, { json: { records }, ...signed(g, s) });
  const acks = (list: unknown[], g = gw, s = s1): Promise<CallResult> => tb.call('POST', `/v1/gateways/${g.id}/acks`, { json: { acks: list }, ...signed(g, s) });
  const poll = (since: number, wait = 0, g = gw, s = s1): Promise<CallResult> => tb.call('GET', `/v1/gateways/${g.id}/commands?since=${since}&wait=${wait}`, signed(g, s));
  type Polled = { cursor: number; commands: { dev: string; cid: number; command: string }[] };

  const verifyAt = async (dev: Ed25519Signer, g: TestGateway, s: Ed25519Signer, v: 1 | 2 = 2): Promise<Uint8Array> => {
    const hello =
      v === 1
        ? await signHello({ type: 'hello', version: 1, dev: dev.kid, pn: randomNonce(), gn: randomNonce() }, dev)
        : await signHelloV2(
            { type: 'hello', version: 2, dev: dev.kid, pn: randomNonce(), gn: randomNonce(), gw: g.id, ge: generateX25519KeyPair().publicKey, pe: generateX25519KeyPair().publicKey },
            dev,
          );
    const r = await tb.call('POST', '/v1/verify', { json: { hellos: [{ id: 'h', transport: 'mqtt', hello: base64UrlEncode(hello) }] }, ...signed(g, s) });
    assert.equal(r.status, 200);
    assert.equal((r.body as { results: { ok: boolean }[] }).results[0]?.ok, true, JSON.stringify(r.body));
    return new Uint8Array(createHash('sha256').update(hello).digest());
  };
  const rec = (dev: string, seq: number, extra: Partial<Rec> = {}): Rec => ({
    dev,
    sid: base64UrlEncode(new Uint8Array(8).fill(7)),
    seq,
    topic: `devices/${dev}/temp`,
    body: base64UrlEncode(new TextEncoder().encode(`v${seq}`)),
    receivedAt: nowMs,
    ...extra,
  });

  before(async () => {
    tb = await startTestBackend({ clock, leaseSeconds: LEASE, store: await store.fresh() });
    gw = await tb.addGateway('gw-dp');
    gw2 = await tb.addGateway('gw-dp-2');
    ({ session: s1 } = await tb.openSession(gw));
    ({ session: s2 } = await tb.openSession(gw2));
  });
  after(async () => tb.close());
  beforeEach(() => {
    nowMs += 10_000;
  });

  describe('telemetry', () => {
    it('stores each record once per (dev, sid, seq): a retried upload and a repeat within one upload count as duplicates', async () => {
      const dev = await tb.addDevice('tm-once');
      await verifyAt(dev, gw, s1, 1);
      const first = await telemetry([rec('tm-once', 0), rec('tm-once', 1), rec('tm-once', 1)]);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(first.body, { accepted: 2, duplicates: 1 });
      const retried = await telemetry([rec('tm-once', 0), rec('tm-once', 1), rec('tm-once', 2)]);
      assert.deepEqual(retried.body, { accepted: 1, duplicates: 2 });
      const other = await telemetry([rec('tm-once', 0, { sid: base64UrlEncode(new Uint8Array(8).fill(8)) })]);
      assert.deepEqual(other.body, { accepted: 1, duplicates: 0 }, 'another session, same seq: another frame');
      const stored = await tb.backend.store.telemetryLast(10, 'tm-once');
      assert.deepEqual(stored.map((r) => [r.seq, new TextDecoder().decode(r.body), r.gw]), [
        [0, 'v0', 'gw-dp'],
        [1, 'v1', 'gw-dp'],
        [2, 'v2', 'gw-dp'],
        [0, 'v0', 'gw-dp'],
      ]);
    });

    it('stores resent content once per (dev, mid), in a new frame or a new session', async () => {
      const dev = await tb.addDevice('tm-mid');
      await verifyAt(dev, gw, s1, 1);
      assert.deepEqual((await telemetry([rec('tm-mid', 0, { mid: 41 }), rec('tm-mid', 1, { mid: 42 })])).body, { accepted: 2, duplicates: 0 });
      const resent = await telemetry([rec('tm-mid', 2, { mid: 42 }), rec('tm-mid', 0, { mid: 43, sid: base64UrlEncode(randomBytes(8)) }), rec('tm-mid', 1, { mid: 43, sid: base64UrlEncode(randomBytes(8)) })]);
      assert.deepEqual(resent.body, { accepted: 1, duplicates: 2 });
      assert.deepEqual((await tb.backend.store.telemetryLast(10, 'tm-mid')).map((r) => r.mid), [41, 42, 43]);
    });

    it('refuses, 403 and nothing stored, a device without an ok verdict at this gateway', async () => {
      const dev = await tb.addDevice('tm-elsewhere');
      await verifyAt(dev, gw2, s2, 1);
      await tb.addDevice('tm-never');
      const r = await telemetry([rec('tm-elsewhere', 0), rec('tm-never', 0)]);
      assert.equal(r.status, 403);
      const body = r.body as { type: string; refused: { index: number; dev: string; why: string }[] };
      assert.equal(body.type, 'urn:gatehouse:problem:not-granted');
      assert.deepEqual(body.refused.map((x) => [x.index, x.dev]), [[0, 'tm-elsewhere'], [1, 'tm-never']]);
      const ok = await telemetry([rec('tm-elsewhere', 0)], gw2, s2);
      assert.deepEqual(ok.body, { accepted: 1, duplicates: 0 });
    });

    it('refuses, 403, a record received outside the lifetime of its lease at this gateway, and a mixed upload whole', async () => {
      const dev = await tb.addDevice('tm-lease');
      await verifyAt(dev, gw, s1, 1);
      const verdictMs = nowMs;
      const late = await telemetry([rec('tm-lease', 0), rec('tm-lease', 1, { receivedAt: verdictMs + LEASE * 1000 })]);
      assert.equal(late.status, 403);
      assert.deepEqual((late.body as { refused: { index: number }[] }).refused.map((x) => x.index), [1]);
      const early = await telemetry([rec('tm-lease', 2, { receivedAt: verdictMs - 3600_000 })]);
      assert.equal(early.status, 403);
      assert.deepEqual(await tb.backend.store.telemetryLast(10, 'tm-lease'), []);
      nowMs = verdictMs + LEASE * 1000 + 60_000;
      assert.deepEqual((await telemetry([rec('tm-lease', 0, { receivedAt: verdictMs + LEASE * 1000 - 1 })])).body, { accepted: 1, duplicates: 0 });
    });

    it('believes a gateway only until the exp of the lease its newest verdict carried, also when that lease was reused', async () => {
      const dev = await tb.addDevice('tm-reused');
      await verifyAt(dev, gw, s1, 1);
      const firstMs = nowMs;
      // Half the lease later the backend answers the same lease (backend/issued-leases.ts): its exp
      // is still first + LEASE, not the second verdict's time + LEASE.
      nowMs = firstMs + (LEASE / 2) * 1000;
      await verifyAt(dev, gw, s1, 1);
      nowMs = firstMs + LEASE * 1000 + 60_000;
      const after = await telemetry([rec('tm-reused', 0, { receivedAt: firstMs + LEASE * 1000 })]);
      assert.equal(after.status, 403, JSON.stringify(after.body));
      assert.deepEqual((await telemetry([rec('tm-reused', 1, { receivedAt: firstMs + LEASE * 1000 - 1 })])).body, { accepted: 1, duplicates: 0 });
    });

    it('refuses, 403, a topic its policy does not grant ({dev} expanded, MQTT filter matching)', async () => {
      const dev = await tb.addDevice('tm-topic', { policy: { pub: ['devices/{dev}/+/state', 'shared/#'], sub: [] } });
      await verifyAt(dev, gw, s1, 1);
      assert.deepEqual((await telemetry([rec('tm-topic', 0, { topic: 'devices/tm-topic/a/state' }), rec('tm-topic', 1, { topic: 'shared' })])).body, { accepted: 2, duplicates: 0 });
      for (const topic of ['devices/tm-topic/state', 'devices/other/a/state', 'devices/tm-topic/a/b/state']) {
        const r = await telemetry([rec('tm-topic', 9, { topic })]);
        assert.equal(r.status, 403, topic);
        assert.match((r.body as { detail: string }).detail, /topic outside the policy/);
      }
    });

    it('answers 400 for 257 records and for malformed ones, storing nothing', async () => {
      const dev = await tb.addDevice('tm-limits');
      await verifyAt(dev, gw, s1, 1);
      const many = Array.from({ length: 257 }, (_, i) => rec('tm-limits', i));
      const r = await telemetry(many);
      assert.equal(r.status, 400);
      assert.equal((r.body as { type: string }).type, 'urn:gatehouse:problem:too-many-records');
      assert.deepEqual((await telemetry(many.slice(0, 256))).body, { accepted: 256, duplicates: 0 });
      const bad: [string, Partial<Rec> | Record<string, unknown>][] = [
        ['padded body', { body: 'AA==' }],
        ['long body', { body: base64UrlEncode(new Uint8Array(1025)) }],
        ['short sid', { sid: base64UrlEncode(new Uint8Array(7)) }],
        ['wildcard topic', { topic: 'devices/tm-limits/#' }],
        ['negative seq', { seq: -1 }],
        ['unknown field', { extra: 1 }],
      ];
      for (const [what, patch] of bad) {
        const x = await telemetry([{ ...rec('tm-limits', 999), ...patch }]);
        assert.equal(x.status, 400, what);
      }
    });

    it('refuses an upload signed by another gateway than the path names, and one signed with the TPM key', async () => {
      const r = await tb.call('POST', `/v1/gateways/${gw.id}/telemetry`, { json: { records: [rec('tm-once', 50)] }, ...signed(gw2, s2) });
      assert.equal(r.status, 403);
      const t = await tb.call('POST', `/v1/gateways/${gw.id}/telemetry`, { json: { records: [rec('tm-once', 50)] }, keyid: `tpm:${gw.id}`, alg: 'ecdsa-p256-sha256', sign: (b) => gw.tpm.sign(b) });
      assert.equal(t.status, 403);
    });
  });

  describe('commands', () => {
    it('signs a command with the newest grant hh and serves it to that gateway, device offline; never to another gateway', async () => {
      const dev = await tb.addDevice('cmd-offline');
      const hh = await verifyAt(dev, gw, s1);
      const before = (await poll(0)).body as Polled;
      const c = await tb.backend.issueCommand({ dev: 'cmd-offline', topic: 'devices/cmd-offline/cmd/reboot', body: new TextEncoder().encode('now'), ttlSeconds: 600 });
      const r = (await poll(before.cursor)).body as Polled;
      const mine = r.commands.filter((x) => x.dev === 'cmd-offline');
      assert.deepEqual(mine.map((x) => x.cid), [c.cid]);
      assert.ok(r.cursor > before.cursor);
      const bytes = base64UrlDecode(mine[0]?.command ?? '') as Uint8Array;
      const parsed = parseCommand(bytes);
      assert.equal(parsed.kid, tb.backend.kid);
      assert.equal(verifySign1(parsed, tb.backend.publicKeyRaw), true);
      assert.deepEqual(parsed.payload, { type: 'command', version: 2, dev: 'cmd-offline', hh, cid: c.cid, topic: 'devices/cmd-offline/cmd/reboot', body: new TextEncoder().encode('now'), iat: c.iat, exp: c.iat + 600 });
      assert.deepEqual(((await poll(r.cursor)).body as Polled).commands, [], 'served after the cursor only');
      assert.deepEqual(((await poll(0, 0, gw2, s2)).body as Polled).commands.filter((x) => x.dev === 'cmd-offline'), []);
    });

    it('numbers commands strictly increasing per device and refuses what cannot be issued', async () => {
      const dev = await tb.addDevice('cmd-cids');
      await verifyAt(dev, gw, s1);
      const a = await tb.backend.issueCommand({ dev: 'cmd-cids', topic: 't/a', body: new Uint8Array(0) });
      const b = await tb.backend.issueCommand({ dev: 'cmd-cids', topic: 't/b', body: new Uint8Array(800) });
      assert.ok(b.cid > a.cid && a.cid >= 1);
      await tb.addDevice('cmd-v1-only');
      const refusals: [Parameters<RunningBackend['issueCommand']>[0], string][] = [
        [{ dev: 'cmd-cids', topic: 't', body: new Uint8Array(801) }, 'GH_COMMAND_TOO_LARGE'],
        [{ dev: 'cmd-cids', topic: 't/#', body: new Uint8Array(1) }, 'GH_COMMAND_BAD_TOPIC'],
        [{ dev: 'cmd-cids', topic: 't', body: new Uint8Array(1), ttlSeconds: 0 }, 'GH_COMMAND_BAD_TTL'],
        [{ dev: 'cmd-v1-only', topic: 't', body: new Uint8Array(1) }, 'GH_COMMAND_NO_GRANT'],
        [{ dev: 'cmd-nobody', topic: 't', body: new Uint8Array(1) }, 'GH_COMMAND_NO_DEVICE'],
      ];
      for (const [c, code] of refusals) await assert.rejects(tb.backend.issueCommand(c), (e: unknown) => e instanceof CommandError && e.code === code);
      const c = await tb.backend.issueCommand({ dev: 'cmd-cids', topic: 't/c', body: new Uint8Array(0) });
      assert.equal(c.cid, b.cid + 1, 'a refused command takes no cid');
    });

    it('re-signs open commands on a newer grant: same cid, new hh, new cursor, moved to the new gateway; acked ones stay', async () => {
      const dev = await tb.addDevice('cmd-moves');
      await verifyAt(dev, gw, s1);
      const open = await tb.backend.issueCommand({ dev: 'cmd-moves', topic: 't/open', body: new Uint8Array([1]) });
      const acked = await tb.backend.issueCommand({ dev: 'cmd-moves', topic: 't/acked', body: new Uint8Array([2]) });
      assert.deepEqual((await acks([{ dev: 'cmd-moves', cid: acked.cid, status: 'done', at: nowMs }])).body, { accepted: 1 });
      const c2 = ((await poll(0, 0, gw2, s2)).body as Polled).cursor;
      const hh2 = await verifyAt(dev, gw2, s2);
      const moved = ((await poll(c2, 0, gw2, s2)).body as Polled).commands.filter((x) => x.dev === 'cmd-moves');
      assert.deepEqual(moved.map((x) => x.cid), [open.cid]);
      const p = parseCommand(base64UrlDecode(moved[0]?.command ?? '') as Uint8Array).payload;
      assert.deepEqual([p.cid, p.hh, p.exp, p.topic], [open.cid, hh2, open.exp, 't/open']);
      const [row] = (await tb.backend.store.listCommands('cmd-moves')).filter((x) => x.cid === open.cid);
      assert.ok(row !== undefined && row.cursor > open.cursor && row.gw === 'gw-dp-2');
      assert.deepEqual(((await poll(0)).body as Polled).commands.filter((x) => x.dev === 'cmd-moves'), [], 'gone from the old gateway');
    });

    it('never serves an expired command', async () => {
      const dev = await tb.addDevice('cmd-expiry');
      await verifyAt(dev, gw, s1);
      const since = ((await poll(0)).body as Polled).cursor;
      await tb.backend.issueCommand({ dev: 'cmd-expiry', topic: 't', body: new Uint8Array(1), ttlSeconds: 60 });
      nowMs += 60_000;
      assert.deepEqual(((await poll(since)).body as Polled).commands.filter((x) => x.dev === 'cmd-expiry'), []);
      assert.deepEqual(((await poll(0)).body as Polled).commands.filter((x) => x.dev === 'cmd-expiry'), []);
    });

    it('keeps the first done/failed of a cid; refused is recorded without closing it; acks of ungranted devices are refused', async () => {
      const dev = await tb.addDevice('cmd-acks');
      await verifyAt(dev, gw, s1);
      const c = await tb.backend.issueCommand({ dev: 'cmd-acks', topic: 't', body: new Uint8Array(1) });
      assert.deepEqual((await acks([{ dev: 'cmd-acks', cid: c.cid, status: 'refused', at: nowMs }])).body, { accepted: 1 });
      let [row] = await tb.backend.store.listCommands('cmd-acks');
      assert.deepEqual([row?.status, row?.refusedCount], [undefined, 1]);
      assert.ok(((await poll(0)).body as Polled).commands.some((x) => x.dev === 'cmd-acks'), 'still open after refused');
      const r = await acks([
        { dev: 'cmd-acks', cid: c.cid, status: 'failed', at: nowMs },
        { dev: 'cmd-acks', cid: c.cid, status: 'done', at: nowMs + 1 },
        { dev: 'cmd-acks', cid: 9999, status: 'done', at: nowMs },
      ]);
      assert.deepEqual(r.body, { accepted: 2 });
      [row] = await tb.backend.store.listCommands('cmd-acks');
      assert.deepEqual([row?.status, row?.ackedBy], ['failed', 'gw-dp']);
      assert.ok(!((await poll(0)).body as Polled).commands.some((x) => x.dev === 'cmd-acks'), 'closed');
      const foreign = await acks([{ dev: 'cmd-acks', cid: c.cid, status: 'done', at: nowMs }], gw2, s2);
      assert.equal(foreign.status, 403);
      assert.equal((await acks(Array.from({ length: 257 }, () => ({ dev: 'cmd-acks', cid: 1, status: 'done', at: nowMs })))).status, 400);
    });

    it('wakes a long poll when a command is queued for its gateway, and answers an empty list at the end of wait', async () => {
      const dev = await tb.addDevice('cmd-wake');
      await verifyAt(dev, gw, s1);
      const since = ((await poll(0)).body as Polled).cursor;
      const started = Date.now();
      const empty = await poll(since, 1);
      assert.ok(Date.now() - started >= 900, 'waited');
      assert.deepEqual((empty.body as Polled).commands, []);
      const waiting = poll(since, 8);
      // Issued only once the poll waits, so only a wake-up can answer it early.
      await until(() => tb.backend.waitingPolls === 1, 5000, 'the poll to wait');
      const t = Date.now();
      const c = await tb.backend.issueCommand({ dev: 'cmd-wake', topic: 't', body: new Uint8Array(1) });
      const r = (await waiting).body as Polled;
      assert.deepEqual(r.commands.map((x) => [x.dev, x.cid]), [['cmd-wake', c.cid]]);
      assert.ok(Date.now() - t < 6000, 'woken, not timed out');
      assert.equal((await poll(since, 31)).status, 400, 'wait above 30 s');
    });
  });
});

describe('backend: command long poll across two PostgreSQL replicas', function () {
  this.timeout(60_000);
  const store = suiteStore('postgres');
  let a: TestBackend;
  let b: RunningBackend;

  before(async () => {
    const url = await store.fresh();
    a = await startTestBackend({ store: url });
    b = await startBackend({ dataDir: `${a.dir}/data`, store: url, tls: { certPem: a.pki.server.certPem, keyPem: a.pki.server.keyPem }, publicOrigin: (p) => `https://127.0.0.1:${p}` });
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  it('wakes a poll waiting at one replica when another queues a command (LISTEN/NOTIFY), well before its wait ends', async () => {
    const gw = await a.addGateway('gw-rep');
    const { session } = await a.openSession(gw);
    const dev = await a.addDevice('rep-dev');
    const hello = await signHelloV2(
      { type: 'hello', version: 2, dev: 'rep-dev', pn: randomNonce(), gn: randomNonce(), gw: 'gw-rep', ge: generateX25519KeyPair().publicKey, pe: generateX25519KeyPair().publicKey },
      dev,
    );
    const signedBy = { keyid: 'session:gw-rep', alg: 'ed25519' as const, sign: (x: Uint8Array) => session.sign(x) };
    assert.equal((await a.call('POST', '/v1/verify', { json: { hellos: [{ id: 'h', transport: 'mqtt', hello: base64UrlEncode(hello) }] }, ...signedBy })).status, 200);
    const since = ((await a.call('GET', '/v1/gateways/gw-rep/commands?since=0', signedBy)).body as { cursor: number }).cursor;
    const waiting = a.call('GET', `/v1/gateways/gw-rep/commands?since=${since}&wait=9`, signedBy);
    await until(() => a.backend.waitingPolls === 1, 5000, 'the poll to wait at replica a');
    const t = Date.now();
    const c = await b.issueCommand({ dev: 'rep-dev', topic: 't', body: new Uint8Array(1) });
    const r = (await waiting).body as { commands: { dev: string; cid: number }[] };
    assert.deepEqual(r.commands.map((x) => [x.dev, x.cid]), [['rep-dev', c.cid]]);
    assert.ok(Date.now() - t < 5000, `woken after ${Date.now() - t} ms`);
  });
});
