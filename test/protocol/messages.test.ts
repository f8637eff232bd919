import assert from 'node:assert/strict';
import {
  CborTag,
  decodeCbor,
  decodeChallenge,
  decodeChallengeRequest,
  decodeDownMessage,
  decodeUpMessage,
  Ed25519Signer,
  encodeCbor,
  encodeUnsignedReject,
  expandPolicy,
  isValidId,
  parseGatewayCredential,
  parseHello,
  parseLease,
  parseReject,
  parseWelcome,
  ProtocolError,
  signGatewayCredential,
  signHello,
  signLease,
  signSign1,
  signWelcome,
  verifySign1,
  type CborMap,
  type CborValue,
} from '../../protocol/index.js';
import { makeFixture, testSeed, type ProtocolFixture } from '../../testkit/protocol.js';

function refusal(fn: () => unknown): { code: string; reason: string } {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ProtocolError, `not a ProtocolError: ${String(e)}`);
    return { code: e.code, reason: e.reason };
  }
  assert.fail('did not throw');
}

/** The payload bytes inside a COSE_Sign1. */
function payloadOf(bytes: Uint8Array): Uint8Array {
  return ((decodeCbor(bytes) as CborTag).value as CborValue[])[2] as Uint8Array;
}

/** Re-sign a hello payload after editing its map (to test field checks behind a valid signature). */
async function helloWith(f: ProtocolFixture, edit: (m: CborMap) => void): Promise<Uint8Array> {
  const m = decodeCbor(payloadOf(f.hello)) as CborMap;
  edit(m);
  return signSign1(encodeCbor(m), f.device);
}

describe('protocol/messages', () => {
  let f: ProtocolFixture;
  before(async () => {
    f = await makeFixture();
  });

  it('isValidId follows protocol-v1 ids', () => {
    for (const ok of ['a', 'A.b_c:d-9', 'x'.repeat(64)]) assert.equal(isValidId(ok), true, ok);
    for (const bad of ['', 'x'.repeat(65), 'a b', 'a/b', 'é', 'a#', 'a+', '{dev}', 7, null]) assert.equal(isValidId(bad), false, String(bad));
  });

  it('round-trips every message type', () => {
    assert.deepEqual(decodeChallengeRequest(f.challengeRequest), { type: 'challenge-request', version: 1, dev: f.dev });
    assert.deepEqual(decodeChallenge(f.challenge), { type: 'challenge', version: 1, dev: f.dev, gn: f.gn, gw: f.gw });
    const hello = parseHello(f.hello);
    assert.deepEqual(hello.payload, { type: 'hello', version: 1, dev: f.dev, pn: f.pn, gn: f.gn });
    assert.equal(hello.kid, f.dev);
    assert.equal(verifySign1(hello, f.device.publicKeyRaw), true);
    const welcome = parseWelcome(f.welcome);
    assert.equal(welcome.payload.gw, f.gw);
    assert.equal(verifySign1(welcome, f.session.publicKeyRaw), true);
    const cred = parseGatewayCredential(f.credential);
    assert.deepEqual(cred.payload, f.credentialPayload);
    assert.equal(verifySign1(cred, f.backend.publicKeyRaw), true);
    const lease = parseLease(f.lease);
    assert.deepEqual(lease.payload, f.leasePayload);
    const reject = parseReject(f.reject);
    assert.equal(reject.message.reason, 'busy');
    assert.equal(reject.message.retry, 30);
    assert.ok(reject.signed !== null && verifySign1(reject.signed, f.session.publicKeyRaw));
    const unsigned = parseReject(encodeUnsignedReject({ type: 'reject', version: 1, dev: f.dev, reason: 'backend-unavailable', retry: 10 }));
    assert.equal(unsigned.signed, null);
    assert.deepEqual(unsigned.message, { type: 'reject', version: 1, dev: f.dev, reason: 'backend-unavailable', retry: 10 });
  });

  it('encodes the challenge-request byte for byte', () => {
    // {1: "challenge-request", 2: 1, 3: "sensor-0001"}
    assert.equal(
      Buffer.from(f.challengeRequest).toString('hex'),
      'a3' + '01' + '71' + Buffer.from('challenge-request').toString('hex') + '0201' + '03' + '6b' + Buffer.from('sensor-0001').toString('hex'),
    );
  });

  it('dispatches up and down messages', () => {
    assert.equal(decodeUpMessage(f.challengeRequest).type, 'challenge-request');
    assert.equal(decodeUpMessage(f.hello).type, 'hello');
    assert.equal(decodeDownMessage(f.challenge).type, 'challenge');
    assert.equal(decodeDownMessage(f.welcome).type, 'welcome');
    const r = decodeDownMessage(f.reject);
    assert.ok(r.type === 'reject' && r.signed !== null);
    assert.equal(refusal(() => decodeUpMessage(f.welcome)).code, 'GH_MSG_WRONG_TYPE');
    assert.equal(refusal(() => decodeUpMessage(f.challenge)).code, 'GH_MSG_WRONG_TYPE');
    assert.equal(refusal(() => decodeDownMessage(f.hello)).code, 'GH_MSG_WRONG_TYPE');
    assert.equal(refusal(() => decodeUpMessage(new Uint8Array([0x01]))).code, 'GH_MSG_NOT_A_MESSAGE');
    assert.equal(refusal(() => decodeUpMessage(new Uint8Array([0xbf, 0x01, 0x01, 0xff]))).code, 'GH_CBOR_INDEFINITE');
    assert.equal(refusal(() => decodeUpMessage(new Uint8Array(1025))).code, 'GH_MSG_TOO_LARGE');
    const unsignedHello = payloadOf(f.hello);
    assert.equal(refusal(() => decodeUpMessage(unsignedHello)).code, 'GH_MSG_NOT_SIGNED');
  });

  it('checks version before anything else in the payload', async () => {
    const v2 = encodeCbor(new Map<number, CborValue>([[1, 'challenge-request'], [2, 2], [3, 'x'], [99, 'new']]));
    assert.deepEqual(refusal(() => decodeChallengeRequest(v2)), { code: 'GH_MSG_UNSUPPORTED_VERSION', reason: 'unsupported-version' });
    const noVersion = encodeCbor(new Map<number, CborValue>([[1, 'challenge-request'], [3, 'x']]));
    assert.deepEqual(refusal(() => decodeChallengeRequest(noVersion)), { code: 'GH_MSG_MISSING_FIELD', reason: 'malformed' });
  });

  it('refuses bad fields with a precise code', async () => {
    const cases: [string, (m: CborMap) => void][] = [
      ['GH_MSG_UNKNOWN_FIELD', (m) => m.set(6, 'gw-1')],
      ['GH_MSG_UNKNOWN_FIELD', (m) => m.set('dev', 'x')],
      ['GH_MSG_MISSING_FIELD', (m) => m.delete(4)],
      ['GH_MSG_FIELD_LENGTH', (m) => m.set(4, new Uint8Array(15))],
      ['GH_MSG_FIELD_LENGTH', (m) => m.set(5, new Uint8Array(17))],
      ['GH_MSG_FIELD_TYPE', (m) => m.set(4, 'nonce')],
      ['GH_MSG_FIELD_TYPE', (m) => m.set(3, new Uint8Array(3))],
      ['GH_MSG_FIELD_TYPE', (m) => m.set(2, -1)],
      ['GH_MSG_UNKNOWN_TYPE', (m) => m.set(1, 'helo')],
      ['GH_MSG_FIELD_TYPE', (m) => m.set(1, 7)],
    ];
    for (const [expected, edit] of cases) {
      const bytes = await helloWith(f, edit);
      assert.equal(refusal(() => parseHello(bytes)).code, expected, edit.toString());
    }
  });

  it('hello kid must be its dev; welcome kid must be its gw', async () => {
    const other = Ed25519Signer.fromSeed(testSeed(3), 'other-dev');
    await assert.rejects(signHello({ type: 'hello', version: 1, dev: f.dev, pn: f.pn, gn: f.gn }, other), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_MSG_KID_MISMATCH');
    const forged = await signSign1(payloadOf(f.hello), other);
    assert.equal(refusal(() => parseHello(forged)).code, 'GH_MSG_KID_MISMATCH');
    const w = parseWelcome(f.welcome).payload;
    await assert.rejects(signWelcome(w, Ed25519Signer.fromSeed(testSeed(4), 'gw-other')), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_MSG_KID_MISMATCH');
  });

  it('validates reasons, policies and validity windows', async () => {
    assert.equal(refusal(() => encodeUnsignedReject({ type: 'reject', version: 1, dev: 'd', reason: 'nope' as 'busy' })).code, 'GH_MSG_BAD_REASON');
    const lease = { ...f.leasePayload };
    const bad = async (policy: unknown): Promise<string> => {
      try {
        await signLease({ ...lease, policy: policy as typeof lease.policy }, f.backend);
      } catch (e) {
        assert.ok(e instanceof ProtocolError);
        return e.code;
      }
      return 'accepted';
    };
    assert.equal(await bad({ pub: ['a/#/b'], sub: [] }), 'GH_MSG_BAD_POLICY');
    assert.equal(await bad({ pub: ['a/b+'], sub: [] }), 'GH_MSG_BAD_POLICY');
    assert.equal(await bad({ pub: [''], sub: [] }), 'GH_MSG_BAD_POLICY');
    assert.equal(await bad({ pub: [] }), 'GH_MSG_BAD_POLICY');
    assert.equal(await bad({ pub: [1], sub: [] }), 'GH_MSG_BAD_POLICY');
    assert.equal(await bad({ pub: ['a/+/b', '#'], sub: ['devices/{dev}/cmd/#'] }), 'accepted');
    await assert.rejects(signLease({ ...lease, exp: lease.iat }, f.backend), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_MSG_BAD_VALIDITY');
    await assert.rejects(
      signGatewayCredential({ ...f.credentialPayload, spk: new Uint8Array(32) }, f.backend),
      (e: unknown) => e instanceof ProtocolError && e.code === 'GH_MSG_BAD_KEY',
    );
  });

  it('expandPolicy substitutes the device id', () => {
    assert.deepEqual(expandPolicy({ pub: ['devices/{dev}/#'], sub: ['devices/{dev}/cmd/#', 'all/{dev}/{dev}'] }, 'd-1'), {
      pub: ['devices/d-1/#'],
      sub: ['devices/d-1/cmd/#', 'all/d-1/d-1'],
    });
    assert.throws(() => expandPolicy({ pub: [], sub: [] }, 'a/#'), ProtocolError);
  });

  it('the largest ids still fit every message in 1024 bytes; oversized output is refused', async () => {
    const big = await makeFixture({ dev: 'd'.repeat(64), gw: 'g'.repeat(64) });
    for (const m of [big.challengeRequest, big.challenge, big.hello, big.welcome, big.reject, big.credential, big.lease]) {
      assert.ok(m.length <= 1024, `${m.length} bytes`);
    }
    assert.ok(big.welcome.length < 700, `welcome of ${big.welcome.length} bytes`);
    const policy = { pub: Array.from({ length: 8 }, (_, i) => `${'t'.repeat(200)}/${i}`), sub: [] };
    await assert.rejects(signLease({ ...big.leasePayload, policy }, big.backend), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_MSG_TOO_LARGE');
  });
});
