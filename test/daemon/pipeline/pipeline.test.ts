import assert from 'node:assert/strict';
import {
  checkWelcome,
  decodeChallenge,
  encodeCbor,
  helloHash,
  parseReject,
  randomNonce,
  signHello,
  signSign1,
  verifySign1,
  Ed25519Signer,
} from '../../../protocol/index.js';
import { Pipeline, type PipelineOptions } from '../../../daemon/pipeline/pipeline.js';
import type { DecisionEvent, GatewaySession, HelloVerifier, IngressConnection } from '../../../daemon/pipeline/types.js';
import { FakeSessionProvider, FakeVerifier } from '../../fakes/FakeVerifier.js';

const GW = 'gw-test';

class ManualClock {
  t = 1_700_000_000_000;
  now(): number {
    return this.t;
  }
}

function conn(id: string): IngressConnection {
  return { id, transport: 'mqtt', remote: '127.0.0.1:1' };
}

async function hello(signer: Ed25519Signer, dev: string, gn: Uint8Array): Promise<Uint8Array> {
  return signHello({ type: 'hello', version: 1, dev, pn: randomNonce(16), gn }, signer);
}

describe('daemon/pipeline Pipeline', () => {
  let backend: FakeVerifier;
  let session: GatewaySession;
  let sessions: FakeSessionProvider;
  let clock: ManualClock;
  let devA: Ed25519Signer;
  let devB: Ed25519Signer;

  before(async () => {
    backend = new FakeVerifier(GW);
    devA = await backend.addDevice('dev-a');
    devB = await backend.addDevice('dev-b', { pub: ['x/{dev}'], sub: ['y/{dev}/#'] });
    session = await backend.makeSession();
  });

  beforeEach(() => {
    clock = new ManualClock();
    sessions = new FakeSessionProvider(session);
    backend.forced = undefined;
    backend.hang = false;
  });

  function make(extra: Partial<PipelineOptions> = {}): Pipeline {
    return new Pipeline({ gw: GW, verifier: backend, sessions, clock, ...extra });
  }

  async function gnFor(p: Pipeline, c: IngressConnection, dev: string): Promise<Uint8Array> {
    const bytes = await p.challenge(c, dev);
    const ch = decodeChallenge(bytes);
    assert.equal(ch.dev, dev);
    assert.equal(ch.gw, GW);
    return ch.gn;
  }

  function rejectOf(bytes: Uint8Array): { reason: string; retry?: number; hh?: Uint8Array; signed: boolean } {
    const r = parseReject(bytes);
    if (r.signed !== null) {
      assert.ok(verifySign1(r.signed, (session.signer as Ed25519Signer).publicKeyRaw), 'reject signed by the session key');
      assert.equal(r.signed.kid, GW);
    }
    return { reason: r.message.reason, retry: r.message.retry, hh: r.message.hh, signed: r.signed !== null };
  }

  it('welcomes a registered device: welcome signed by the session key, kid=gw, hh over the hello as received, cred relayed', async () => {
    const p = make();
    const c = conn('mqtt:1');
    const gn = await gnFor(p, c, 'dev-a');
    assert.equal(gn.length, 16);
    const h = await hello(devA, 'dev-a', gn);
    const out = await p.hello(c, h, 'dev-a');
    assert.ok(out.welcomed, 'welcomed');
    assert.equal(out.welcomed.dev, 'dev-a');
    assert.deepEqual(out.welcomed.policy, { pub: ['devices/{dev}/#'], sub: ['devices/{dev}/cmd/#'] });
    assert.equal(out.welcomed.offline, false);
    const check = checkWelcome(out.reply, { backendKeys: backend.backendKeys(), dev: 'dev-a', helloBytes: h });
    assert.ok(check.ok, check.ok ? '' : check.detail);
    assert.equal(check.signed.kid, GW);
    assert.deepEqual(check.welcome.hh, helloHash(h));
    assert.deepEqual(check.welcome.cred, session.credential);
    assert.equal(backend.requests.at(-1)?.transport, 'mqtt');
    assert.deepEqual(backend.requests.at(-1)?.hello, h);
  });

  it('passes the lease policy through', async () => {
    const p = make();
    const c = conn('mqtt:2');
    const out = await p.hello(c, await hello(devB, 'dev-b', await gnFor(p, c, 'dev-b')), 'dev-b');
    assert.deepEqual(out.welcomed?.policy, { pub: ['x/{dev}'], sub: ['y/{dev}/#'] });
  });

  it('consumes gn on first use whatever the outcome: a second hello with it is stale-challenge', async () => {
    const p = make();
    const c = conn('mqtt:3');
    const gn = await gnFor(p, c, 'dev-a');
    backend.forced = { ok: false, reason: 'bad-signature' };
    const first = await p.hello(c, await hello(devA, 'dev-a', gn), 'dev-a');
    assert.equal(first.rejected?.reason, 'bad-signature');
    backend.forced = undefined;
    const h2 = await hello(devA, 'dev-a', gn);
    const second = await p.hello(c, h2, 'dev-a');
    assert.equal(second.rejected?.reason, 'stale-challenge');
    const r = rejectOf(second.reply);
    assert.equal(r.reason, 'stale-challenge');
    assert.ok(r.signed);
    assert.deepEqual(r.hh, helloHash(h2));
  });

  it('binds gn to the connection: another connection cannot use it (nor burn it)', async () => {
    const p = make();
    const c1 = conn('mqtt:4');
    const c2 = conn('mqtt:5');
    const gn = await gnFor(p, c1, 'dev-a');
    const h = await hello(devA, 'dev-a', gn);
    assert.equal((await p.hello(c2, h, 'dev-a')).rejected?.reason, 'stale-challenge');
    assert.ok((await p.hello(c1, h, 'dev-a')).welcomed);
    // Replayed after use, on either connection.
    assert.equal((await p.hello(c2, h, 'dev-a')).rejected?.reason, 'stale-challenge');
    assert.equal((await p.hello(c1, h, 'dev-a')).rejected?.reason, 'stale-challenge');
  });

  it('binds gn to dev: a hello of another device with it is stale-challenge', async () => {
    const p = make();
    const c = conn('mqtt:6');
    const gn = await gnFor(p, c, 'dev-a');
    assert.equal((await p.hello(c, await hello(devB, 'dev-b', gn))).rejected?.reason, 'stale-challenge');
    assert.equal(p.stats().outstandingChallenges, 0, 'consumed');
  });

  it('expires gn after the TTL (30 s by default, configurable)', async () => {
    const p = make();
    const c = conn('mqtt:7');
    const gn1 = await gnFor(p, c, 'dev-a');
    clock.t += 29_999;
    assert.ok((await p.hello(c, await hello(devA, 'dev-a', gn1), 'dev-a')).welcomed);
    const gn2 = await gnFor(p, c, 'dev-a');
    clock.t += 30_000;
    assert.equal((await p.hello(c, await hello(devA, 'dev-a', gn2), 'dev-a')).rejected?.reason, 'stale-challenge');

    const short = make({ challengeTtlMs: 1000 });
    const gn3 = await gnFor(short, c, 'dev-a');
    clock.t += 1000;
    assert.equal((await short.hello(c, await hello(devA, 'dev-a', gn3), 'dev-a')).rejected?.reason, 'stale-challenge');
  });

  it('expires gn on elapsed time: a wall-clock step back of 1 h does not stretch it', async () => {
    const wall = { t: 1_800_000_000_000, now(): number { return this.t; } };
    const p = make({ clock: wall, elapsedClock: clock });
    const c = conn('mqtt:8');
    const gn = await gnFor(p, c, 'dev-a');
    wall.t -= 3_600_000;
    clock.t += 30_000;
    assert.equal((await p.hello(c, await hello(devA, 'dev-a', gn), 'dev-a')).rejected?.reason, 'stale-challenge');
    // Event timestamps come from the wall clock.
    assert.equal(p.events.recent().at(-1)?.at, wall.t);
  });

  it('refuses a hello whose dev does not match the topic (expectedDev), before touching gn', async () => {
    const p = make();
    const c = conn('mqtt:8');
    const gn = await gnFor(p, c, 'dev-a');
    const h = await hello(devA, 'dev-a', gn);
    const out = await p.hello(c, h, 'dev-b');
    assert.equal(out.rejected?.reason, 'malformed');
    assert.equal(out.rejected?.dev, 'dev-b');
    assert.ok((await p.hello(c, h, 'dev-a')).welcomed, 'gn still outstanding');
  });

  it('refuses oversized, garbage, unsigned and wrong-version hellos with the right reason', async () => {
    const p = make();
    const c = conn('mqtt:9');
    assert.equal((await p.hello(c, new Uint8Array(1025), 'dev-a')).rejected?.reason, 'malformed');
    assert.equal((await p.hello(c, new Uint8Array([0xff, 0x00, 0x13]), 'dev-a')).rejected?.reason, 'malformed');
    assert.equal((await p.hello(c, new Uint8Array(0), 'dev-a')).rejected?.reason, 'malformed');
    const gn = await gnFor(p, c, 'dev-a');
    const v2 = encodeCbor(
      new Map<number, string | number | Uint8Array>([
        [1, 'hello'],
        [2, 2],
        [3, 'dev-a'],
        [4, randomNonce(16)],
        [5, gn],
      ]),
    );
    const signedV2 = await signSign1(v2, devA);
    assert.equal((await p.hello(c, signedV2, 'dev-a')).rejected?.reason, 'unsupported-version');
    assert.equal(backend.requests.filter((r) => r.hello === signedV2).length, 0, 'never sent to the backend');
  });

  it('rate-limits per connection (before parsing, unsigned), per verified device and globally, with retry, and recovers as tokens refill', async () => {
    const p = make({ rateLimits: { perConnectionPerMin: 3, perDevicePerMin: 2, globalPerMin: 9 } });
    const c = conn('mqtt:10');
    for (let i = 0; i < 3; i++) await gnFor(p, c, 'dev-a');
    const limited = rejectOf(await p.challenge(c, 'dev-a'));
    assert.equal(limited.reason, 'rate-limited');
    assert.equal(limited.signed, false, 'over the connection limit: no session-key signature');
    assert.ok((limited.retry ?? 0) >= 1);
    // Garbage costs the connection a token too, and is answered unsigned.
    const c1 = conn('mqtt:9');
    const garbage = rejectOf((await p.hello(c1, new Uint8Array([0x01]), 'dev-a')).reply);
    assert.deepEqual([garbage.reason, garbage.signed], ['malformed', false]);
    await p.hello(c1, new Uint8Array([0x01]), 'dev-a');
    await p.hello(c1, new Uint8Array([0x01]), 'dev-a');
    assert.equal(rejectOf((await p.hello(c1, new Uint8Array([0x01]), 'dev-a')).reply).reason, 'rate-limited');
    // Per device: challenges for dev-a never spend its allowance; verified hellos do (2).
    const c2 = conn('mqtt:11');
    assert.ok((await p.hello(c2, await hello(devA, 'dev-a', await gnFor(p, c2, 'dev-a')), 'dev-a')).welcomed);
    const c4 = conn('mqtt:14');
    assert.ok((await p.hello(c4, await hello(devA, 'dev-a', await gnFor(p, c4, 'dev-a')), 'dev-a')).welcomed);
    const c5 = conn('mqtt:15');
    const third = await p.hello(c5, await hello(devA, 'dev-a', await gnFor(p, c5, 'dev-a')), 'dev-a');
    assert.equal(third.rejected?.reason, 'rate-limited');
    // Globally (9): 3 + 2 + 2 + 2 challenges and hellos used above; everyone is limited now.
    assert.equal(rejectOf(await p.challenge(conn('mqtt:13'), 'dev-c')).reason, 'rate-limited');
    clock.t += 60_000;
    await gnFor(p, c, 'dev-a');
  });

  it('a peer claiming a device id cannot spend that device\'s allowance: unverified hellos and challenges do not charge it', async () => {
    const p = make({ rateLimits: { perConnectionPerMin: 100, perDevicePerMin: 1, globalPerMin: 1000 } });
    const mallory = Ed25519Signer.generate('dev-a');
    for (let i = 0; i < 5; i++) {
      const m = conn(`mqtt:m${i}`);
      const out = await p.hello(m, await hello(mallory, 'dev-a', await gnFor(p, m, 'dev-a')), 'dev-a');
      assert.equal(out.rejected?.reason, 'bad-signature');
    }
    const c = conn('mqtt:owner');
    assert.ok((await p.hello(c, await hello(devA, 'dev-a', await gnFor(p, c, 'dev-a')), 'dev-a')).welcomed, 'the device still gets in');
  });

  it('applies new rate limits at once (SIGHUP): buckets are capped at the new burst', async () => {
    const p = make({ rateLimits: { perConnectionPerMin: 10, perDevicePerMin: 10, globalPerMin: 100 } });
    const c = conn('mqtt:20');
    await gnFor(p, c, 'dev-a');
    p.setRateLimits({ perConnectionPerMin: 1, perDevicePerMin: 10, globalPerMin: 100 });
    await gnFor(p, c, 'dev-a');
    assert.equal(rejectOf(await p.challenge(c, 'dev-a')).reason, 'rate-limited');
    p.setRateLimits({ perConnectionPerMin: 10, perDevicePerMin: 10, globalPerMin: 100 });
    clock.t += 6_000;
    await gnFor(p, c, 'dev-a');
  });

  it('bounds outstanding challenges per connection (oldest dropped) and in total (busy)', async () => {
    const p = make({ maxChallengesPerConnection: 2, maxOutstandingChallenges: 3 });
    const c = conn('mqtt:14');
    const first = await gnFor(p, c, 'dev-a');
    await gnFor(p, c, 'dev-a');
    const third = await gnFor(p, c, 'dev-a');
    assert.equal(p.stats().outstandingChallenges, 2);
    assert.equal((await p.hello(c, await hello(devA, 'dev-a', first), 'dev-a')).rejected?.reason, 'stale-challenge');
    assert.ok((await p.hello(c, await hello(devA, 'dev-a', third), 'dev-a')).welcomed);
    await gnFor(p, conn('mqtt:15'), 'dev-b');
    await gnFor(p, conn('mqtt:16'), 'dev-b');
    const full = rejectOf(await p.challenge(conn('mqtt:17'), 'dev-b'));
    assert.equal(full.reason, 'busy');
    assert.ok((full.retry ?? 0) >= 1);
    // Expired entries make room again.
    clock.t += 30_000;
    await gnFor(p, conn('mqtt:17'), 'dev-b');
  });

  it('forgets a closed connection: its challenges are gone', async () => {
    const p = make();
    const c = conn('mqtt:18');
    const gn = await gnFor(p, c, 'dev-a');
    p.connectionClosed(c);
    assert.equal(p.stats().outstandingChallenges, 0);
    assert.equal((await p.hello(c, await hello(devA, 'dev-a', gn), 'dev-a')).rejected?.reason, 'stale-challenge');
  });

  it('answers busy when the in-flight bound is reached, and backend-unavailable when the verifier misses its deadline', async () => {
    const p = make({ maxPendingHellos: 1, verifyTimeoutMs: 200 });
    backend.hang = true;
    const c = conn('mqtt:19');
    const c2 = conn('mqtt:20');
    const pending = p.hello(c, await hello(devA, 'dev-a', await gnFor(p, c, 'dev-a')), 'dev-a');
    const busy = await p.hello(c2, await hello(devB, 'dev-b', await gnFor(p, c2, 'dev-b')), 'dev-b');
    assert.equal(busy.rejected?.reason, 'busy');
    assert.ok((busy.rejected?.retry ?? 0) >= 1);
    const timedOut = await pending;
    assert.equal(timedOut.rejected?.reason, 'backend-unavailable');
    assert.equal(rejectOf(timedOut.reply).retry, 30);
    assert.equal(p.stats().pendingHellos, 0);
  });

  it('aborts the verifier call at its deadline, and on close(); after close() requests are busy', async () => {
    backend.hang = true;
    const seen: AbortSignal[] = [];
    const spy: HelloVerifier = {
      verify: (request, signal) => {
        if (signal !== undefined) seen.push(signal);
        return backend.verify(request, signal);
      },
    };
    const q = new Pipeline({ gw: GW, verifier: spy, sessions, clock, verifyTimeoutMs: 100 });
    const c = conn('mqtt:30');
    const first = await q.hello(c, await hello(devA, 'dev-a', await gnFor(q, c, 'dev-a')), 'dev-a');
    assert.equal(first.rejected?.reason, 'backend-unavailable');
    assert.equal(seen[0]?.aborted, true, 'the verifier saw its signal abort at the deadline');
    const q2 = new Pipeline({ gw: GW, verifier: spy, sessions, clock, verifyTimeoutMs: 60_000 });
    const pending = q2.hello(c, await hello(devA, 'dev-a', await gnFor(q2, c, 'dev-a')), 'dev-a');
    await new Promise((resolve) => setImmediate(resolve));
    q2.close();
    assert.equal((await pending).rejected?.reason, 'backend-unavailable');
    assert.equal(seen[1]?.aborted, true);
    assert.equal(rejectOf(await q2.challenge(c, 'dev-a')).reason, 'busy');
  });

  it('passes the backend reasons through, with retry for backend-unavailable', async () => {
    const p = make();
    const c = conn('mqtt:21');
    for (const reason of ['unknown-device', 'revoked', 'not-allowed-here', 'bad-signature'] as const) {
      backend.forced = { ok: false, reason };
      const out = await p.hello(c, await hello(devA, 'dev-a', await gnFor(p, c, 'dev-a')), 'dev-a');
      assert.equal(out.rejected?.reason, reason);
      assert.equal(rejectOf(out.reply).retry, undefined);
      clock.t += 10_000;
    }
    backend.forced = { ok: false, reason: 'backend-unavailable', retry: 7 };
    const out = await p.hello(c, await hello(devA, 'dev-a', await gnFor(p, c, 'dev-a')), 'dev-a');
    assert.equal(rejectOf(out.reply).retry, 7);
  });

  it('really checks signatures through the verifier: a hello signed by another key is bad-signature', async () => {
    const p = make();
    const c = conn('mqtt:22');
    const gn = await gnFor(p, c, 'dev-a');
    const { Ed25519Signer } = await import('../../../protocol/index.js');
    const impostor = Ed25519Signer.generate('dev-a');
    assert.equal((await p.hello(c, await hello(impostor, 'dev-a', gn), 'dev-a')).rejected?.reason, 'bad-signature');
  });

  it('sends rejects unsigned only while there is no session, and then never asks the backend', async () => {
    const p = make();
    const c = conn('mqtt:23');
    sessions.session = undefined;
    const gn = await gnFor(p, c, 'dev-a');
    const before = backend.requests.length;
    const out = await p.hello(c, await hello(devA, 'dev-a', gn), 'dev-a');
    assert.equal(out.rejected?.reason, 'backend-unavailable');
    const r = parseReject(out.reply);
    assert.equal(r.signed, null);
    assert.equal(r.message.retry, 30);
    assert.equal(backend.requests.length, before);
  });

  it('supports BLE connection challenges: gn bound to the connection alone, dev from the hello', async () => {
    const p = make();
    const c: IngressConnection = { id: 'ble:1', transport: 'ble', remote: 'aa:bb' };
    const ch = decodeChallenge(await p.connectionChallenge(c));
    assert.equal(ch.dev, 'ble:1');
    const out = await p.hello(c, await hello(devB, 'dev-b', ch.gn));
    assert.equal(out.welcomed?.dev, 'dev-b');
    assert.equal(backend.requests.at(-1)?.transport, 'ble');
  });

  it('refuses a challenge-request with an invalid dev as malformed', async () => {
    const p = make();
    const r = rejectOf(await p.challenge(conn('mqtt:24'), '#'));
    assert.equal(r.reason, 'malformed');
  });

  it('emits one event per decision to subscribers, keeps a bounded ring, counts by transport/outcome/reason', async () => {
    const p = make({ eventRingSize: 3 });
    const seen: DecisionEvent[] = [];
    const off = p.events.subscribe((e) => seen.push(e));
    const c = conn('mqtt:25');
    const gn = await gnFor(p, c, 'dev-a');
    clock.t += 5;
    await p.hello(c, await hello(devA, 'dev-a', gn), 'dev-a');
    await p.hello(c, new Uint8Array([1, 2, 3]), 'dev-a');
    await p.hello(c, new Uint8Array([1, 2, 3]), 'dev-a');
    off();
    await p.hello(c, new Uint8Array([1, 2, 3]), 'dev-a');
    assert.deepEqual(
      seen.map((e) => [e.seq, e.outcome, e.reason, e.dev]),
      [
        [1, 'challenge', undefined, 'dev-a'],
        [2, 'welcome', undefined, 'dev-a'],
        [3, 'reject', 'malformed', 'dev-a'],
        [4, 'reject', 'malformed', 'dev-a'],
      ],
    );
    assert.equal(seen[1]?.latencyMs, 0, 'latency from the injected clock');
    assert.deepEqual(p.events.recent().map((e) => e.seq), [3, 4, 5]);
    assert.deepEqual(p.events.recent(4).map((e) => e.seq), [5]);
    const counts = p.events.counts();
    const malformed = counts.find((r) => r.outcome === 'reject' && r.reason === 'malformed');
    assert.equal(malformed?.count, 3);
    assert.equal(malformed?.transport, 'mqtt');
    assert.equal(counts.find((r) => r.outcome === 'welcome')?.count, 1);
    const lat = p.events.latency().find((l) => l.outcome === 'reject');
    assert.equal(lat?.count, 3);
  });

  it('draws gn from the injected random source, 16 bytes at a time', async () => {
    let n = 0;
    const p = make({ random: (len) => new Uint8Array(len).fill(++n) });
    const c = conn('mqtt:26');
    assert.deepEqual(await gnFor(p, c, 'dev-a'), new Uint8Array(16).fill(1));
    assert.deepEqual(await gnFor(p, c, 'dev-a'), new Uint8Array(16).fill(2));
  });

  it('validates its options, naming each bad one', () => {
    assert.throws(
      () => make({ challengeTtlMs: 0, maxPendingHellos: -1 }),
      (e: Error & { code?: string }) => e.code === 'GH_PIPELINE_BAD_OPTION' && /challengeTtlMs/.test(e.message) && /maxPendingHellos/.test(e.message),
    );
    assert.throws(() => new Pipeline({ gw: 'bad gw', verifier: backend, sessions }), /gw/);
  });
});
