import assert from 'node:assert/strict';
import {
  checkWelcome,
  Ed25519Signer,
  encodeCbor,
  helloHash,
  parseWelcome,
  signGatewayCredential,
  signLease,
  signSign1,
  signWelcome,
  type CborValue,
  type Welcome,
} from '../../protocol/index.js';
import { FIXTURE_EXP, makeFixture, testSeed, type ProtocolFixture } from '../../testkit/protocol.js';

describe('protocol/peripheral-checks: checkWelcome', () => {
  let f: ProtocolFixture;
  let w: Welcome;
  before(async () => {
    f = await makeFixture();
    w = parseWelcome(f.welcome).payload;
  });

  const check = (welcome: Uint8Array, over: Partial<Parameters<typeof checkWelcome>[1]> = {}): ReturnType<typeof checkWelcome> =>
    checkWelcome(welcome, { backendKeys: f.backendKeys, dev: f.dev, helloBytes: f.hello, ...over });

  function refusedWith(r: ReturnType<typeof checkWelcome>, code: string): void {
    assert.equal(r.ok, false, 'expected a refusal');
    if (!r.ok) {
      assert.equal(r.code, code, r.detail);
      assert.ok(r.detail.length > 0);
    }
  }

  it('accepts the welcome of a valid exchange, with or without a clock', () => {
    const r = check(f.welcome, { now: FIXTURE_EXP - 1 });
    assert.ok(r.ok);
    assert.equal(r.credential.gw, f.gw);
    assert.deepEqual(r.welcome.hh, helloHash(f.hello));
    assert.ok(check(f.welcome).ok);
  });

  it('GH_WELCOME_MALFORMED: not a welcome', () => {
    refusedWith(check(f.hello), 'GH_WELCOME_MALFORMED');
    refusedWith(check(new Uint8Array([0xff])), 'GH_WELCOME_MALFORMED');
  });

  it('GH_WELCOME_CRED_UNKNOWN_KID and GH_WELCOME_CRED_SIGNATURE: cred not under a pinned key', async () => {
    const rogue = Ed25519Signer.fromSeed(testSeed(0x66), 'backend-1');
    const cred = await signGatewayCredential(f.credentialPayload, rogue);
    refusedWith(check(await signWelcome({ ...w, cred }, f.session)), 'GH_WELCOME_CRED_SIGNATURE');
    const otherKid = await signGatewayCredential(f.credentialPayload, Ed25519Signer.fromSeed(testSeed(0x66), 'backend-9'));
    refusedWith(check(await signWelcome({ ...w, cred: otherKid }, f.session)), 'GH_WELCOME_CRED_UNKNOWN_KID');
  });

  it('verifiedCredential: the same bytes skip only the credential signature; other bytes and every other check still count', async () => {
    const rogue = Ed25519Signer.fromSeed(testSeed(0x66), 'backend-1');
    const forged = await signGatewayCredential(f.credentialPayload, rogue);
    // The forged credential is what a peripheral would wrongly have remembered: identical bytes pass
    // check 1 without a verification, which shows the verification is what is skipped ...
    assert.ok(check(await signWelcome({ ...w, cred: forged }, f.session), { verifiedCredential: forged }).ok);
    // ... and a credential other than the remembered one is verified as always.
    refusedWith(check(await signWelcome({ ...w, cred: forged }, f.session), { verifiedCredential: w.cred }), 'GH_WELCOME_CRED_SIGNATURE');
    assert.ok(check(f.welcome, { verifiedCredential: w.cred }).ok);
    // The kid must still be pinned, and the later checks still run.
    refusedWith(check(f.welcome, { verifiedCredential: w.cred, backendKeys: new Map() }), 'GH_WELCOME_CRED_UNKNOWN_KID');
    refusedWith(check(f.welcome, { verifiedCredential: w.cred, now: FIXTURE_EXP }), 'GH_WELCOME_EXPIRED');
    refusedWith(check(f.welcome, { verifiedCredential: w.cred, dev: 'someone-else' }), 'GH_WELCOME_DEV_MISMATCH');
    refusedWith(check(await signWelcome(w, Ed25519Signer.fromSeed(testSeed(0x67), f.gw)), { verifiedCredential: w.cred }), 'GH_WELCOME_SIGNATURE');
  });

  it('GH_WELCOME_CRED_TYPE: a lease (or anything else backend-signed) is not a credential', async () => {
    refusedWith(check(await signWelcome({ ...w, cred: f.lease }, f.session)), 'GH_WELCOME_CRED_TYPE');
    const lease = await signLease({ ...f.leasePayload, gw: f.gw }, f.backend);
    refusedWith(check(await signWelcome({ ...w, cred: lease }, f.session)), 'GH_WELCOME_CRED_TYPE');
  });

  it('GH_WELCOME_CRED_MALFORMED: cred bytes are not a COSE_Sign1', async () => {
    refusedWith(check(await signWelcome({ ...w, cred: new Uint8Array([1, 2, 3]) }, f.session)), 'GH_WELCOME_CRED_MALFORMED');
    // A backend-signed gw-cred whose fields are wrong.
    const payload = encodeCbor(new Map<number, CborValue>([[1, 'gw-cred'], [2, 1], [6, f.gw]]));
    const cred = await signSign1(payload, f.backend);
    refusedWith(check(await signWelcome({ ...w, cred }, f.session)), 'GH_WELCOME_CRED_MALFORMED');
  });

  it('GH_WELCOME_GW_MISMATCH: credential issued to another gateway', async () => {
    const cred = await signGatewayCredential({ ...f.credentialPayload, gw: 'gw-other' }, f.backend);
    refusedWith(check(await signWelcome({ ...w, cred }, f.session)), 'GH_WELCOME_GW_MISMATCH');
  });

  it('GH_WELCOME_EXPIRED: only when the peripheral has a clock', () => {
    refusedWith(check(f.welcome, { now: FIXTURE_EXP }), 'GH_WELCOME_EXPIRED');
    assert.ok(check(f.welcome, { now: undefined }).ok);
  });

  it('GH_WELCOME_SIGNATURE: welcome not signed by the credential\'s session key', async () => {
    const impostor = Ed25519Signer.fromSeed(testSeed(0x77), f.gw);
    refusedWith(check(await signWelcome(w, impostor)), 'GH_WELCOME_SIGNATURE');
  });

  it('GH_WELCOME_DEV_MISMATCH and GH_WELCOME_HELLO_HASH', async () => {
    refusedWith(check(await signWelcome({ ...w, dev: 'sensor-0002' }, f.session)), 'GH_WELCOME_DEV_MISMATCH');
    refusedWith(check(f.welcome, { dev: 'sensor-0002' }), 'GH_WELCOME_DEV_MISMATCH');
    refusedWith(check(await signWelcome({ ...w, hh: new Uint8Array(32) }, f.session)), 'GH_WELCOME_HELLO_HASH');
    const otherHello = new Uint8Array(f.hello);
    otherHello[otherHello.length - 1] = (otherHello[otherHello.length - 1] as number) ^ 1;
    refusedWith(check(f.welcome, { helloBytes: otherHello }), 'GH_WELCOME_HELLO_HASH');
  });
});
