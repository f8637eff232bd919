import assert from 'node:assert/strict';
import {
  checkWelcome,
  concatBytes,
  decodeCbor,
  decodeChallenge,
  decodeChallengeRequest,
  decodeDownMessage,
  decodeSign1,
  decodeUpMessage,
  encodeUnsignedReject,
  parseGatewayCredential,
  parseHello,
  parseLease,
  parseReject,
  parseWelcome,
  ProtocolError,
} from '../../protocol/index.js';
import {
  checkCommand,
  checkWelcomeV2,
  decodeChallengeRequestV2,
  decodeChallengeV2,
  decodeDownMessageV2,
  decodeFramePayload,
  decodeUpMessageV2,
  FrameReceiver,
  parseCommand,
  parseGrant,
  parseHelloV2,
  parseRejectV2,
  parseWelcomeV2,
} from '../../protocol/v2/index.js';
import { generateVectorsV2 } from '../vectors/generate-v2.js';
import { makeFixture, type ProtocolFixture } from '../../testkit/protocol.js';
import { Prng, testSeedFromEnv } from '../../testkit/prng.js';

const SEED = testSeedFromEnv(0xf022);
const INPUTS = Number(process.env.GATEHOUSE_FUZZ_INPUTS ?? 100_000);

/** Interesting bytes for CBOR heads: length prefixes, breaks, tags, simple values. */
const MAGIC = [0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x5f, 0x7f, 0x9f, 0xbf, 0xff, 0xd2, 0xd8, 0xf6, 0xf9, 0xfb, 0x9a, 0xba, 0x5b, 0x80, 0xa0, 0x40, 0x60];

function mutate(r: Prng, seedInput: Uint8Array, corpus: Uint8Array[]): Uint8Array {
  let b: Uint8Array = Uint8Array.from(seedInput);
  for (let n = r.range(1, 3); n > 0; n--) {
    const at = b.length === 0 ? 0 : r.int(b.length);
    switch (r.int(8)) {
      case 0: // bit flip
        if (b.length > 0) b[at] = (b[at] as number) ^ (1 << r.int(8));
        break;
      case 1: // random byte
        if (b.length > 0) b[at] = r.u32() & 0xff;
        break;
      case 2: // CBOR-significant byte
        if (b.length > 0) b[at] = r.pick(MAGIC);
        break;
      case 3: // truncate
        b = b.subarray(0, at);
        break;
      case 4: {
        // insert bytes
        const ins = r.bytes(r.range(1, 4));
        b = concatBytes(b.subarray(0, at), ins, b.subarray(at));
        break;
      }
      case 5: // delete a run
        b = concatBytes(b.subarray(0, at), b.subarray(at + r.range(1, 8)));
        break;
      case 6: {
        // splice in a piece of another message
        const other = r.pick(corpus);
        const from = r.int(other.length);
        b = concatBytes(b.subarray(0, at), other.subarray(from, from + r.range(1, 40)));
        break;
      }
      default: // duplicate a chunk (repeated keys, extra items)
        b = concatBytes(b.subarray(0, at), b.subarray(at, at + r.range(1, 16)), b.subarray(at));
    }
  }
  return b;
}

describe(`protocol: ${INPUTS} random and mutated inputs against every decoder (seed ${SEED})`, function () {
  // CPU-bound: give a loaded machine room (it takes seconds on an idle one).
  this.timeout(180_000);
  let f: ProtocolFixture;
  let v2: Awaited<ReturnType<typeof generateVectorsV2>>;
  let stackTraceLimit: number;
  before(async () => {
    f = await makeFixture();
    v2 = await generateVectorsV2();
    // Capturing (and source-mapping) a stack for each of ~10^6 refusals would dominate the run;
    // the decoders are what is under test.
    stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
  });
  after(() => {
    Error.stackTraceLimit = stackTraceLimit;
  });

  it('every decoder either decodes or throws a ProtocolError; checkWelcome never throws', () => {
    const corpus = [
      f.challengeRequest,
      f.challenge,
      f.hello,
      f.welcome,
      f.reject,
      f.credential,
      f.lease,
      encodeUnsignedReject({ type: 'reject', version: 1, dev: f.dev, reason: 'busy', retry: 5 }),
      // protocol-v2: every valid message and frame of the v2 vectors.
      ...v2.messages.filter((m) => m.verdict === 'valid').map((m) => new Uint8Array(Buffer.from(m.hex, 'hex'))),
      ...v2.frames.filter((m) => m.expect === 'frame').map((m) => new Uint8Array(Buffer.from(m.hex, 'hex'))),
      ...v2.frames.filter((m) => m.plaintext !== null).map((m) => new Uint8Array(Buffer.from(m.plaintext ?? '', 'hex'))),
    ];
    const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
    const v2BackendKeys = new Map([['backend-1', hex(v2.keys.backend?.publicKey ?? '')]]);
    const v2Keys = { key: hex(v2.keySchedule.kUp as string), iv: hex(v2.keySchedule.ivUp as string), sid: hex(v2.keySchedule.sid as string) };
    const decoders: [string, (b: Uint8Array) => unknown][] = [
      ['decodeCbor', (b) => decodeCbor(b)],
      ['decodeSign1', (b) => decodeSign1(b)],
      ['decodeSign1/generic', (b) => decodeSign1(b, { profile: 'generic', algFromUnprotected: true })],
      ['decodeChallengeRequest', decodeChallengeRequest],
      ['decodeChallenge', decodeChallenge],
      ['parseHello', parseHello],
      ['parseWelcome', parseWelcome],
      ['parseReject', parseReject],
      ['parseGatewayCredential', parseGatewayCredential],
      ['parseLease', parseLease],
      ['decodeUpMessage', decodeUpMessage],
      ['decodeDownMessage', decodeDownMessage],
      ['decodeChallengeRequestV2', decodeChallengeRequestV2],
      ['decodeChallengeV2', decodeChallengeV2],
      ['parseHelloV2', parseHelloV2],
      ['parseGrant', parseGrant],
      ['parseWelcomeV2', parseWelcomeV2],
      ['parseRejectV2', parseRejectV2],
      ['parseCommand', parseCommand],
      ['decodeUpMessageV2', decodeUpMessageV2],
      ['decodeDownMessageV2', decodeDownMessageV2],
      ['decodeFramePayload', (b) => decodeFramePayload(b)],
      // A frame receiver never throws: every input is a frame, a denial or a drop.
      ['FrameReceiver.open', (b) => new FrameReceiver(v2Keys, 'p2g').open(b)],
      ['checkCommand', (b) => checkCommand(b, { backendKeys: v2BackendKeys, dev: v2.inputs.dev, hh: hex(v2.inputs.hh) })],
    ];
    const r = new Prng(SEED);
    const accepted = new Map<string, number>();
    // The only welcomes that may pass are the original, tagged or untagged (RFC 9052 allows both).
    const welcomeHex = Buffer.from(f.welcome).toString('hex');
    const acceptable = new Set([welcomeHex, welcomeHex.slice(2)]);
    for (let i = 0; i < INPUTS; i++) {
      const input = r.int(10) < 3 ? r.bytes(r.pick([r.int(16), r.int(200), r.range(1020, 1030)])) : mutate(r, r.pick(corpus), corpus);
      for (const [name, decode] of decoders) {
        try {
          decode(input);
          accepted.set(name, (accepted.get(name) ?? 0) + 1);
        } catch (e) {
          if (!(e instanceof ProtocolError)) {
            assert.fail(`${name} threw ${String(e)} for ${Buffer.from(input).toString('hex')} (seed ${SEED}, input ${i})`);
          }
          assert.match(e.code, /^GH_[A-Z0-9_]+$/);
        }
      }
      // checkWelcome verifies up to two signatures per well-formed input: run it on every
      // fourth input to keep the suite fast (the exhaustive byte-flip test covers it too).
      if (i % 4 !== 0) continue;
      const res2 = checkWelcomeV2(input, { backendKeys: v2BackendKeys, dev: v2.inputs.dev, devicePublicKey: hex(v2.keys.device?.publicKey ?? ''), helloBytes: hex(v2.inputs.helloV2), allowOffline: true });
      if (res2.ok) {
        const h = Buffer.from(input).toString('hex');
        assert.ok(v2.messages.some((m) => m.hex === h), `a mutated v2 welcome passed the peripheral checks: ${h} (seed ${SEED}, input ${i})`);
      }
      const res = checkWelcome(input, { backendKeys: f.backendKeys, dev: f.dev, helloBytes: f.hello });
      if (res.ok) {
        const h = Buffer.from(input).toString('hex');
        assert.ok(acceptable.has(h), `a mutated welcome passed the peripheral checks: ${h} (seed ${SEED}, input ${i})`);
      }
    }
    // The mutations must not be so destructive that nothing parses (the test would be vacuous).
    assert.ok((accepted.get('decodeCbor') ?? 0) > INPUTS / 20, `only ${accepted.get('decodeCbor')} inputs decoded`);
    assert.ok((accepted.get('parseHello') ?? 0) > INPUTS / 2000, `only ${accepted.get('parseHello')} hellos parsed`);
  });
});
