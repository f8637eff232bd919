import assert from 'node:assert/strict';
import {
  decodeCbor,
  decodeChallenge,
  decodeChallengeRequest,
  decodeDownMessage,
  decodeUpMessage,
  Ed25519Signer,
  encodeCbor,
  encodeChallenge,
  encodeChallengeRequest,
  encodeUnsignedReject,
  parseGatewayCredential,
  parseHello,
  parseLease,
  parseReject,
  parseWelcome,
  REASON_CODES,
  signGatewayCredential,
  signHello,
  signLease,
  signReject,
  signWelcome,
  verifySign1,
  type CborValue,
  type Policy,
  type Reject,
} from '../../protocol/index.js';
import { Prng, testSeedFromEnv } from '../../testkit/prng.js';

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-';
const SEED = testSeedFromEnv(0x6a7e);
const ROUNDS = 60;

function id(r: Prng): string {
  // Bias towards the edges: 1 and 64 characters.
  const len = r.pick([1, 64, r.range(1, 64), r.range(1, 16)]);
  return r.string(len, ID_CHARS);
}

function uint(r: Prng): number {
  return r.pick([0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER - 1, r.int(2 ** 32)]);
}

function filter(r: Prng): string {
  const levels = r.range(1, 4);
  const parts: string[] = [];
  for (let i = 0; i < levels; i++) {
    const last = i === levels - 1;
    parts.push(last && r.int(4) === 0 ? '#' : r.int(5) === 0 ? '+' : r.int(3) === 0 ? '{dev}' : r.string(r.range(1, 8), 'abcxyz019é_'));
  }
  return parts.join('/');
}

function policy(r: Prng): Policy {
  return { pub: Array.from({ length: r.int(4) }, () => filter(r)), sub: Array.from({ length: r.int(4) }, () => filter(r)) };
}

/** Any CBOR value in our data model, for encode→decode identity of the codec itself. */
function value(r: Prng, depth: number): CborValue {
  switch (depth > 3 ? r.int(3) : r.int(6)) {
    case 0:
      return r.bool() ? uint(r) : -1 - uint(r);
    case 1:
      return Array.from({ length: r.int(20) }, () => r.pick(['a', 'b', '€', '😀', '\u0000', '\ufeff', 'z'])).join('');
    case 2:
      return r.bytes(r.int(40));
    case 3:
      return Array.from({ length: r.int(4) }, () => value(r, depth + 1));
    default: {
      const m = new Map<number | string, CborValue>();
      for (let i = r.int(5); i > 0; i--) m.set(r.bool() ? r.range(-30, 300) : r.string(r.int(4), 'abc'), value(r, depth + 1));
      return m;
    }
  }
}

describe(`protocol: encode→decode identity (seed ${SEED}; GATEHOUSE_TEST_SEED replays)`, () => {
  it('CBOR values of the data model', () => {
    const r = new Prng(SEED);
    for (let i = 0; i < 500; i++) {
      const v = value(r, 0);
      const bytes = encodeCbor(v);
      const back = decodeCbor(bytes, { maxBytes: 1 << 20 });
      assert.deepEqual(back, v);
      assert.deepEqual(encodeCbor(back), bytes, 'deterministic: re-encoding gives the same bytes');
    }
  });

  it('every message type', async () => {
    const r = new Prng(SEED + 1);
    for (let i = 0; i < ROUNDS; i++) {
      const dev = id(r);
      const gw = id(r);
      const devKey = Ed25519Signer.fromSeed(r.bytes(32), dev);
      const session = Ed25519Signer.fromSeed(r.bytes(32), gw);
      const backend = Ed25519Signer.fromSeed(r.bytes(32), id(r));

      const cr = { type: 'challenge-request', version: 1, dev } as const;
      assert.deepEqual(decodeChallengeRequest(encodeChallengeRequest(cr)), cr);
      assert.deepEqual(decodeUpMessage(encodeChallengeRequest(cr)), { type: 'challenge-request', message: cr });

      const ch = { type: 'challenge', version: 1, dev, gn: r.bytes(16), gw } as const;
      assert.deepEqual(decodeChallenge(encodeChallenge(ch)), ch);
      assert.deepEqual(decodeDownMessage(encodeChallenge(ch)), { type: 'challenge', message: ch });

      const hello = { type: 'hello', version: 1, dev, pn: r.bytes(16), gn: ch.gn } as const;
      const helloBytes = await signHello(hello, devKey);
      const ph = parseHello(helloBytes);
      assert.deepEqual(ph.payload, hello);
      assert.deepEqual(ph.bytes, helloBytes);
      assert.ok(verifySign1(ph, devKey.publicKeyRaw));

      const iat = r.int(2 ** 32);
      const exp = iat + 1 + r.int(2 ** 31);
      const cred = { type: 'gw-cred', version: 1, gw, spk: session.publicKeyRaw, tpk: r.bytes(32), iat, exp } as const;
      const credBytes = await signGatewayCredential(cred, backend);
      assert.deepEqual(parseGatewayCredential(credBytes).payload, cred);

      const welcome = { type: 'welcome', version: 1, dev, gw, hh: r.bytes(32), cred: credBytes } as const;
      const welcomeBytes = await signWelcome(welcome, session);
      assert.deepEqual(parseWelcome(welcomeBytes).payload, welcome);
      const down = decodeDownMessage(welcomeBytes);
      assert.ok(down.type === 'welcome' && verifySign1(down.signed, session.publicKeyRaw));

      const reject: Reject = { type: 'reject', version: 1, dev, reason: r.pick(REASON_CODES) };
      if (r.bool()) reject.hh = r.bytes(32);
      if (r.bool()) reject.retry = uint(r);
      assert.deepEqual(parseReject(await signReject(reject, session)).message, reject);
      assert.deepEqual(parseReject(encodeUnsignedReject(reject)), { message: reject, signed: null });

      const lease = { type: 'lease', version: 1, dev, gw, dpk: devKey.publicKeyRaw, policy: policy(r), iat, exp } as const;
      assert.deepEqual(parseLease(await signLease(lease, backend)).payload, lease);
    }
  });
});
