import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_POLICY, Ed25519Signer, helloHash, signGatewayCredential, signLease } from '../../../protocol/index.js';
import {
  deriveSessionKeys,
  directionKeys,
  encodeChallengeV2,
  FrameReceiver,
  FrameSender,
  generateX25519KeyPair,
  parseHelloV2,
  signCommand,
  signGrant,
  signWelcomeV2,
  type FramePayload,
} from '../../../protocol/v2/index.js';
import { FileCommandStore, MemoryCommandStore, type CommandStore } from '../../../peripherals/reference/command-store.js';
import { ReferencePeripheralV2, type PeripheralSessionV2, type SessionEvent } from '../../../peripherals/reference/session-v2.js';
import { tempDirEach } from '../../../testkit/temp-dir.js';

const dev = 'sensor-0001';
const gw = 'gw-lab-1';
const seed = (n: number): Uint8Array => new Uint8Array(32).fill(n);
const backend = Ed25519Signer.fromSeed(seed(0xb0), 'backend-1');
const sessionKey = Ed25519Signer.fromSeed(seed(0x5e), gw);
const device = Ed25519Signer.fromSeed(seed(0xde), dev);
const iat = 1_800_000_000;

/** The gateway and backend side, assembled from the protocol library. */
async function exchange(p: ReferencePeripheralV2, kind: 'online' | 'offline' = 'online', life = 3600) {
  const ge = generateX25519KeyPair();
  const hello = await p.hello(encodeChallengeV2({ type: 'challenge', version: 2, dev, gn: seed(1).subarray(0, 16), gw, ge: ge.publicKey }));
  assert.ok(p.holdsEphemeralKey);
  const h = parseHelloV2(hello).payload;
  const hh = helloHash(hello);
  let welcome: Uint8Array;
  if (kind === 'online') {
    const grant = await signGrant({ type: 'grant', version: 2, dev, gw, hh, spk: sessionKey.publicKeyRaw, iat, life: 43_200 }, backend);
    welcome = await signWelcomeV2({ type: 'welcome', version: 2, dev, gw, hh, grant, life }, sessionKey);
  } else {
    const cred = await signGatewayCredential({ type: 'gw-cred', version: 1, gw, spk: sessionKey.publicKeyRaw, tpk: seed(7), iat, exp: iat + 86_400 }, backend);
    const lease = await signLease({ type: 'lease', version: 1, dev, gw, dpk: device.publicKeyRaw, policy: { ...DEFAULT_POLICY }, iat, exp: iat + 7200 }, backend);
    welcome = await signWelcomeV2({ type: 'welcome', version: 2, dev, gw, hh, cred, lease, life }, sessionKey);
  }
  const keys = deriveSessionKeys({ privateKey: ge.privateKey, peerPublic: h.pe, hh, dev, gw });
  return { welcome, hh, up: new FrameReceiver(directionKeys(keys, 'p2g'), 'p2g'), down: new FrameSender(directionKeys(keys, 'g2p')) };
}

function peripheral(over: Partial<ConstructorParameters<typeof ReferencePeripheralV2>[0]> = {}): { p: ReferencePeripheralV2; clock: { ms: number } } {
  const clock = { ms: 0 };
  const p = new ReferencePeripheralV2({ dev, signer: device, devicePublicKey: device.publicKeyRaw, backendKeys: new Map([['backend-1', backend.publicKeyRaw]]), commandStore: new MemoryCommandStore(), monotonic: () => clock.ms, ...over });
  return { p, clock };
}

async function established(p: ReferencePeripheralV2, kind: 'online' | 'offline' = 'online') {
  const g = await exchange(p, kind);
  const ev = p.receive(g.welcome);
  assert.equal(ev.kind, 'established', ev.kind === 'established' ? '' : JSON.stringify(ev));
  assert.ok(ev.kind === 'established');
  assert.equal(p.holdsEphemeralKey, false, 'pe erased once the keys are derived');
  return { ...g, s: ev.session };
}

const downFrame = (g: { down: FrameSender }, payload: FramePayload): Uint8Array => g.down.seal(payload).bytes;
const kind = <K extends SessionEvent['kind']>(e: SessionEvent, k: K): Extract<SessionEvent, { kind: K }> => {
  assert.equal(e.kind, k, e.kind === k ? '' : `${e.kind}: ${'code' in e ? String(e.code) : ''}`);
  return e as Extract<SessionEvent, { kind: K }>;
};

describe('reference peripheral v2 session', () => {
  const tmp = tempDirEach('gh-session-v2-');

  it('online: welcome accepted without a clock; frames both ways under the derived keys', async () => {
    const { p } = peripheral();
    const g = await established(p);
    const s: PeripheralSessionV2 = g.s;
    assert.equal(s.mode, 'online');
    assert.equal(s.lifeSeconds, 3600);
    const pub = g.up.open(s.sealPub(`devices/${dev}/t`, Uint8Array.of(1), 4));
    assert.ok(pub.kind === 'frame' && pub.payload.type === 'pub' && pub.payload.mid === 4);
    const msg = kind(await s.open(downFrame(g, { type: 'msg', topic: 'a/b', body: Uint8Array.of(2) })), 'msg');
    assert.equal(msg.topic, 'a/b');
  });

  it('a refused welcome names its check and erases pe', async () => {
    const { p } = peripheral();
    const g = await exchange(p);
    const tampered = Uint8Array.from(g.welcome, (b, i) => (i === g.welcome.length - 1 ? b ^ 1 : b));
    const ev = p.receive(tampered);
    assert.ok(ev.kind === 'welcome-refused' && ev.code === 'GH_WELCOME_SIGNATURE' && ev.check === 2);
    assert.equal(p.holdsEphemeralKey, false);
    assert.equal(p.receive(g.welcome).kind, 'ignored', 'the exchange is over');
  });

  it('offline welcomes: refused without a clock by default, accepted with one or when told', async () => {
    const a = peripheral().p;
    const ev = a.receive((await exchange(a, 'offline')).welcome);
    assert.ok(ev.kind === 'welcome-refused' && ev.code === 'GH_WELCOME_OFFLINE_REFUSED');
    const b = peripheral({ clock: () => iat + 100 }).p;
    const s = (await established(b, 'offline')).s;
    assert.equal(s.lifeSeconds, 3600);
    const c = peripheral({ allowOffline: true }).p;
    assert.equal((await established(c, 'offline')).s.mode, 'offline');
  });

  it('receipts: settled, denied, lost (resend), busy (resend after retry, no pub before)', async () => {
    const { p, clock } = peripheral();
    const g = await established(p);
    const s = g.s;
    for (let i = 0; i < 5; i++) g.up.open(s.sealPub(`devices/${dev}/t`, Uint8Array.of(i)));
    const r = kind(await s.open(downFrame(g, { type: 'receipt', upto: 4, denied: [1], busy: [3], retry: 10, lost: [2] })), 'receipt');
    assert.deepEqual(r.settled, [0, 4]);
    assert.deepEqual(r.denied, [1]);
    assert.deepEqual(r.resend.map((c) => (c.type === 'pub' ? c.body[0] : -1)), [2, 3]);
    assert.throws(() => s.sealPub('t', Uint8Array.of(9)), (e: unknown) => (e as { code?: string }).code === 'GH_SESSION_BUSY');
    s.sealPing();
    clock.ms += 10_000;
    s.sealPub('t', Uint8Array.of(9));
    // A receipt naming seqs at or below the previous upto is refused.
    kind(await s.open(downFrame(g, { type: 'receipt', upto: 6, lost: [4] })), 'receipt-refused');
    assert.deepEqual(s.unsettled, [5, 6]);
  });

  it('commands: executed once, the outcome persisted in a file; the same cid after a restart gets the stored status', async () => {
    const store: CommandStore = new FileCommandStore(join(tmp.path, 'last-command.json'));
    const a = peripheral({ commandStore: store }).p;
    const g = await established(a);
    const cmd = await signCommand({ type: 'command', version: 2, dev, hh: g.hh, cid: 5, topic: `devices/${dev}/cmd/x`, body: Uint8Array.of(1), iat, exp: iat + 60 }, backend);
    const ev = kind(await g.s.open(downFrame(g, { type: 'cmd', cmd })), 'command');
    const ack = g.up.open(await ev.answer('done'));
    assert.ok(ack.kind === 'frame' && ack.payload.type === 'ack' && ack.payload.cid === 5 && ack.payload.status === 'done');
    assert.deepEqual(JSON.parse(await readFile(join(tmp.path, 'last-command.json'), 'utf8')), { format: 'gatehouse-last-command', cid: 5, status: 'done' });
    // Restart: a new peripheral on the same file, a new session; S re-signs nothing, G resends the old command.
    const b = peripheral({ commandStore: new FileCommandStore(join(tmp.path, 'last-command.json')) }).p;
    const g2 = await established(b);
    const again = kind(await g2.s.open(downFrame(g2, { type: 'cmd', cmd })), 'command-answered');
    assert.equal(again.status, 'done');
    const forged = await signCommand({ type: 'command', version: 2, dev, hh: g2.hh, cid: 6, topic: 't', body: Uint8Array.of(1), iat, exp: iat + 60 }, sessionKey);
    const refused = kind(await g2.s.open(downFrame(g2, { type: 'cmd', cmd: forged })), 'command-answered');
    assert.ok(refused.status === 'refused' && refused.cid === 6 && refused.code === 'GH_COMMAND_UNKNOWN_KID');
  });

  it('a msg is never a command: a msg frame carrying a backend-signed command is delivered as a message, not acted on nor answered', async () => {
    const store = new MemoryCommandStore();
    const { p } = peripheral({ commandStore: store });
    const g = await established(p);
    const cmd = await signCommand({ type: 'command', version: 2, dev, hh: g.hh, cid: 7, topic: `devices/${dev}/cmd/x`, body: Uint8Array.of(1), iat, exp: iat + 60 }, backend);
    const ev = kind(await g.s.open(downFrame(g, { type: 'msg', topic: `devices/${dev}/cmd/x`, body: cmd })), 'msg');
    assert.deepEqual(ev.body, cmd);
    assert.equal(await store.load(), undefined, 'nothing recorded as a command');
    assert.deepEqual(g.s.unsettled, [], 'no ack sealed');
  });

  it('16 dropped frames end the session with bye malformed; a denied frame is not a drop', async () => {
    const { p } = peripheral();
    const g = await established(p);
    kind(await g.s.open(downFrame(g, { type: 'pub', topic: 't', body: Uint8Array.of(1) } as FramePayload)), 'denied');
    for (let i = 0; i < 15; i++) kind(await g.s.open(Uint8Array.of(0xd0, 0x80)), 'drop');
    const end = kind(await g.s.open(Uint8Array.of(0xd0, 0x80)), 'ended');
    assert.equal(end.reason, 'malformed');
    const bye = g.up.open(end.bye as Uint8Array);
    assert.ok(bye.kind === 'frame' && bye.payload.type === 'bye' && bye.payload.reason === 'malformed');
    assert.ok(g.s.ended);
    assert.throws(() => g.s.sealPing(), (e: unknown) => (e as { code?: string }).code === 'GH_SESSION_ENDED');
  });

  it('ends the session with bye expired when its life is over (monotonic timer)', async () => {
    const { p, clock } = peripheral({ maxLifeSeconds: 600 });
    const g = await established(p);
    assert.equal(g.s.lifeSeconds, 600);
    clock.ms += 599_000;
    assert.equal(g.s.checkLife(), undefined);
    clock.ms += 1000;
    const bye = g.up.open(g.s.checkLife() as Uint8Array);
    assert.ok(bye.kind === 'frame' && bye.payload.type === 'bye' && bye.payload.reason === 'expired');
    assert.ok(g.s.ended);
  });

  it("the gateway's bye ends the session", async () => {
    const { p } = peripheral();
    const g = await established(p);
    const end = kind(await g.s.open(downFrame(g, { type: 'bye', reason: 'replaced' })), 'ended');
    assert.equal(end.reason, 'replaced');
    assert.equal(p.session, undefined);
  });
});
