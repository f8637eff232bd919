import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import * as ed from '@noble/ed25519';
import {
  checkWelcome,
  decodeCbor,
  decodeChallengeRequest,
  encodeChallenge,
  encodeUnsignedReject,
  helloHash,
  parseHello,
  ProtocolError,
  signReject,
  signWelcome,
  verifySign1,
} from '../../../protocol/index.js';
import { NobleEd25519Signer } from '../../../peripherals/reference/noble-signer.js';
import { ReferencePeripheral } from '../../../peripherals/reference/peripheral.js';
import { countingBytes, FIXTURE_EXP, makeFixture, testSeed, type ProtocolFixture } from '../../../testkit/protocol.js';

/** Reads one CBOR byte-string head by hand (no library code), returning [content, next offset]. */
function bstrAt(b: Uint8Array, i: number): [Uint8Array, number] {
  const ib = b[i] as number;
  assert.equal(ib >> 5, 2, `byte string expected at ${i}`);
  const info = ib & 0x1f;
  let len: number;
  let start: number;
  if (info < 24) [len, start] = [info, i + 1];
  else if (info === 24) [len, start] = [b[i + 1] as number, i + 2];
  else if (info === 25) [len, start] = [((b[i + 1] as number) << 8) | (b[i + 2] as number), i + 3];
  else throw new Error('unexpected length form');
  return [b.subarray(start, start + len), start + len];
}

/** Head of a byte string of `len` bytes, encoded by hand. */
function bstrHead(len: number): Buffer {
  if (len < 24) return Buffer.from([0x40 | len]);
  if (len < 256) return Buffer.from([0x58, len]);
  return Buffer.from([0x59, len >> 8, len & 0xff]);
}

/** Split a protocol-v1 COSE_Sign1 by hand and rebuild its Sig_structure (RFC 9052 §4.4). */
function handSplit(cose: Uint8Array): { tbs: Uint8Array; sig: Uint8Array; payload: Uint8Array } {
  assert.equal(cose[0], 0xd2, 'tag 18');
  assert.equal(cose[1], 0x84, 'array of 4');
  const [protectedBytes, afterProt] = bstrAt(cose, 2);
  assert.equal(cose[afterProt], 0xa0, 'empty unprotected map');
  const [payload, afterPayload] = bstrAt(cose, afterProt + 1);
  const [sig, end] = bstrAt(cose, afterPayload);
  assert.equal(end, cose.length);
  const tbs = Buffer.concat([
    Buffer.from([0x84, 0x6a]),
    Buffer.from('Signature1', 'ascii'),
    bstrHead(protectedBytes.length),
    protectedBytes,
    Buffer.from([0x40]),
    bstrHead(payload.length),
    payload,
  ]);
  return { tbs, sig, payload };
}

/** Verify with node:crypto only, independently of the library's COSE code. */
function independentVerify(cose: Uint8Array, rawPk: Uint8Array): boolean {
  const { tbs, sig } = handSplit(cose);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(rawPk).toString('base64url') }, format: 'jwk' });
  return nodeVerify(null, tbs, key, sig);
}

describe('peripherals/reference: ReferencePeripheral', () => {
  let f: ProtocolFixture;
  let signer: NobleEd25519Signer;
  let peripheral: ReferencePeripheral;
  let now: number;

  beforeEach(async () => {
    f = await makeFixture();
    // Same seed as the fixture's device key, but signing through @noble/ed25519.
    signer = await NobleEd25519Signer.fromSeed(testSeed(0xde), f.dev);
    now = FIXTURE_EXP - 100;
    peripheral = new ReferencePeripheral({ dev: f.dev, signer, backendKeys: f.backendKeys, clock: () => now, random: (n) => countingBytes(n, 0x40) });
  });

  it('noble and node:crypto derive the same key and the same deterministic signature', async () => {
    assert.deepEqual(signer.publicKeyRaw, f.device.publicKeyRaw);
    const msg = new TextEncoder().encode('m');
    assert.deepEqual(await signer.sign(msg), await f.device.sign(msg));
  });

  it('builds a challenge-request', () => {
    assert.deepEqual(decodeChallengeRequest(peripheral.challengeRequest()), { type: 'challenge-request', version: 1, dev: f.dev });
  });

  it('its hello verifies with node:crypto independently of the library', async () => {
    const hello = await peripheral.hello(f.challenge);
    assert.deepEqual(hello, f.hello, 'same seed, same pn, deterministic Ed25519: same bytes as the fixture');
    assert.equal(independentVerify(hello, signer.publicKeyRaw), true);
    assert.equal(verifySign1(parseHello(hello), signer.publicKeyRaw), true);
    assert.deepEqual(peripheral.lastHello, hello);
  });

  it('a second Ed25519 implementation (noble, strict RFC 8032) verifies the library-made welcome and credential', async () => {
    const { tbs, sig } = handSplit(f.welcome);
    assert.equal(await ed.verifyAsync(sig, tbs, f.session.publicKeyRaw, { zip215: false }), true);
    const cred = handSplit(f.credential);
    assert.equal(await ed.verifyAsync(cred.sig, cred.tbs, f.backend.publicKeyRaw, { zip215: false }), true);
    assert.equal(independentVerify(f.credential, f.backend.publicKeyRaw), true);
  });

  it('uses a fresh pn for every hello', async () => {
    const p = new ReferencePeripheral({ dev: f.dev, signer, backendKeys: f.backendKeys });
    const a = parseHello(await p.hello(f.challenge)).payload.pn;
    const b = parseHello(await p.hello(f.challenge)).payload.pn;
    assert.equal(a.length, 16);
    assert.notDeepEqual(a, b);
  });

  it('flipping any byte of the hello makes it fail', async () => {
    const hello = await peripheral.hello(f.challenge);
    for (let i = 0; i < hello.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = new Uint8Array(hello);
        bad[i] = (bad[i] as number) ^ mask;
        let accepted: boolean;
        try {
          accepted = verifySign1(parseHello(bad), signer.publicKeyRaw);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `byte ${i}: ${String(e)}`);
          accepted = false;
        }
        assert.equal(accepted, false, `byte ${i} ^ ${mask} accepted`);
      }
    }
  });

  it('authenticates the gateway from a library-built welcome, and flipping any byte of it fails', async () => {
    const hello = await peripheral.hello(f.challenge);
    const welcome = await signWelcome({ type: 'welcome', version: 1, dev: f.dev, gw: f.gw, hh: helloHash(hello), cred: f.credential }, f.session);
    assert.ok(peripheral.verifyWelcome(welcome).ok);
    for (let i = 0; i < welcome.length; i++) {
      for (const mask of [0x01, 0xff]) {
        const bad = new Uint8Array(welcome);
        bad[i] = (bad[i] as number) ^ mask;
        const r = checkWelcome(bad, { backendKeys: f.backendKeys, dev: f.dev, helloBytes: hello, now });
        assert.equal(r.ok, false, `welcome byte ${i} ^ ${mask} accepted`);
      }
    }
    const ev = peripheral.receive(welcome);
    assert.equal(ev.kind, 'authenticated');
    assert.ok(ev.kind === 'authenticated' && ev.credential.gw === f.gw);
  });

  it('remembers the credential it verified: the same one is accepted again, any other is verified afresh', async () => {
    const welcomeFor = async (hello: Uint8Array, cred: Uint8Array): Promise<Uint8Array> =>
      signWelcome({ type: 'welcome', version: 1, dev: f.dev, gw: f.gw, hh: helloHash(hello), cred }, f.session);
    assert.ok(peripheral.verifyWelcome(await welcomeFor(await peripheral.hello(f.challenge), f.credential)).ok);
    assert.ok(peripheral.verifyWelcome(await welcomeFor(await peripheral.hello(f.challenge), f.credential)).ok);
    // Same payload and kid, another signature: a credential this peripheral has not verified.
    const forged = new Uint8Array(f.credential);
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 0x01;
    const r = peripheral.verifyWelcome(await welcomeFor(await peripheral.hello(f.challenge), forged));
    assert.equal(r.ok ? 'ok' : r.code, 'GH_WELCOME_CRED_SIGNATURE');
    // The other checks still run: a welcome for some other hello is refused.
    await peripheral.hello(f.challenge);
    const r2 = peripheral.verifyWelcome(await welcomeFor(new Uint8Array([0xa0]), f.credential));
    assert.equal(r2.ok ? 'ok' : r2.code, 'GH_WELCOME_HELLO_HASH');
  });

  it('refuses an expired credential when it has a clock', async () => {
    await peripheral.hello(f.challenge);
    now = FIXTURE_EXP;
    const ev = peripheral.receive(f.welcome);
    assert.deepEqual(ev.kind === 'welcome-refused' && ev.code, 'GH_WELCOME_EXPIRED');
  });

  it('refuses a welcome when no hello was sent', () => {
    const ev = peripheral.receive(f.welcome);
    assert.equal(ev.kind, 'welcome-refused');
  });

  it('treats rejects as advisory, signed or not', async () => {
    await peripheral.hello(f.challenge);
    assert.deepEqual(peripheral.receive(f.reject), { kind: 'rejected', reason: 'busy', retryAfterSeconds: 30, signed: true });
    const unsigned = encodeUnsignedReject({ type: 'reject', version: 1, dev: f.dev, reason: 'backend-unavailable' });
    assert.deepEqual(peripheral.receive(unsigned), { kind: 'rejected', reason: 'backend-unavailable', retryAfterSeconds: 30, signed: false });
    const other = await signReject({ type: 'reject', version: 1, dev: 'someone-else', reason: 'revoked' }, f.session);
    assert.equal(peripheral.receive(other).kind, 'ignored');
    assert.equal(peripheral.receive(new Uint8Array([0xff])).kind, 'ignored');
    assert.deepEqual(peripheral.receive(f.challenge), { kind: 'challenge', gw: f.gw });
  });

  it('refuses a challenge for another device', async () => {
    const other = encodeChallenge({ type: 'challenge', version: 1, dev: 'other', gn: f.gn, gw: f.gw });
    await assert.rejects(peripheral.hello(other), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_PERIPHERAL_WRONG_DEV');
    assert.ok(decodeCbor(other));
  });

  it('in BLE mode answers a challenge whose dev is the connection label, under its own dev and gn', async () => {
    const bleChallenge = encodeChallenge({ type: 'challenge', version: 1, dev: 'ble:7', gn: f.gn, gw: f.gw });
    assert.deepEqual(peripheral.receive(bleChallenge, { transport: 'ble' }), { kind: 'challenge', gw: f.gw });
    assert.equal(peripheral.receive(bleChallenge).kind, 'ignored', 'MQTT mode still binds the challenge to dev');
    const hello = await peripheral.hello(bleChallenge, { transport: 'ble' });
    assert.deepEqual(hello, f.hello, 'the same hello as for a challenge naming the device itself');
    const refused = encodeUnsignedReject({ type: 'reject', version: 1, dev: 'ble:7', reason: 'busy' });
    assert.equal(peripheral.receive(refused, { transport: 'ble' }).kind, 'rejected');
    await assert.rejects(peripheral.hello(new Uint8Array([0xff]), { transport: 'ble' }), (e: unknown) => e instanceof ProtocolError);
  });
});
