import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  checkWelcome,
  decodeChallenge,
  decodeChallengeRequest,
  decodeDownMessage,
  decodeUpMessage,
  Ed25519Signer,
  parseGatewayCredential,
  parseHello,
  parseLease,
  parseReject,
  parseWelcome,
  ProtocolError,
  verifySign1,
  type Signed,
} from '../../protocol/index.js';
import { generateVectors, renderVectors, VECTORS_PATH, type DecoderName, type VectorFile } from './generate.js';
import { assertValidAndInvalid } from './kit.js';

const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

/** Turn a decoder's result into the vector's `decoded` shape (byte strings as hex) plus the signed part. */
function run(decoder: DecoderName, input: Uint8Array): { decoded: unknown; signed: Signed<unknown> | null } {
  switch (decoder) {
    case 'decodeChallengeRequest':
      return { decoded: decodeChallengeRequest(input), signed: null };
    case 'decodeChallenge':
      return { decoded: decodeChallenge(input), signed: null };
    case 'parseHello':
    case 'parseWelcome':
    case 'parseGatewayCredential':
    case 'parseLease': {
      const fn = { parseHello, parseWelcome, parseGatewayCredential, parseLease }[decoder];
      const s = fn(input) as Signed<unknown>;
      return { decoded: s.payload, signed: s };
    }
    case 'parseReject': {
      const r = parseReject(input);
      return { decoded: { message: r.message }, signed: r.signed };
    }
    case 'decodeUpMessage': {
      const m = decodeUpMessage(input);
      return m.type === 'hello' ? { decoded: { type: m.type, payload: m.signed.payload }, signed: m.signed } : { decoded: m, signed: null };
    }
    case 'decodeDownMessage': {
      const m = decodeDownMessage(input);
      if (m.type === 'welcome') return { decoded: { type: m.type, payload: m.signed.payload }, signed: m.signed };
      if (m.type === 'reject') return { decoded: { type: m.type, message: m.message }, signed: m.signed };
      return { decoded: m, signed: null };
    }
  }
}

function hexView(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(hexView);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, hexView(x)]));
  return v;
}

describe('vectors: protocol-v1.json', () => {
  const file = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as VectorFile;

  it('the committed file is exactly what the generator produces (npm run vectors)', async () => {
    assert.equal(readFileSync(VECTORS_PATH, 'utf8'), await renderVectors());
  });

  it('covers every message type, valid and invalid', async () => {
    const gen = await generateVectors();
    assertValidAndInvalid(gen.messages, ['challenge-request/', 'challenge/', 'hello/', 'welcome/', 'reject/', 'gw-cred/', 'lease/']);
    assert.equal(new Set(gen.messages.map((v) => v.name)).size, gen.messages.length, 'names are unique');
  });

  it('every seed derives the public key stated beside it', () => {
    for (const [name, k] of Object.entries(file.keys)) {
      if (k.seed === null) continue;
      assert.equal(Buffer.from(Ed25519Signer.fromSeed(bytes(k.seed), k.kid).publicKeyRaw).toString('hex'), k.publicKey, name);
    }
  });

  for (const v of file.messages) {
    it(`${v.name}: ${v.verdict}${v.code ? ` (${v.code})` : ''}`, () => {
      const input = bytes(v.hex);
      if (v.verdict === 'invalid') {
        assert.throws(
          () => run(v.decoder, input),
          (e: unknown) => e instanceof ProtocolError && e.code === v.code && e.reason === v.reason,
        );
        return;
      }
      const { decoded, signed } = run(v.decoder, input);
      assert.deepEqual(hexView(decoded), v.decoded);
      if (v.verifyWith !== undefined) {
        const key = file.keys[v.verifyWith];
        assert.ok(key !== undefined && signed !== null);
        assert.equal(verifySign1(signed, bytes(key.publicKey)), v.signature === 'valid');
      }
    });
  }

  for (const w of file.welcomeChecks) {
    it(`welcome check ${w.name}: ${w.expect}`, () => {
      const key = file.keys[w.backendKey];
      assert.ok(key !== undefined);
      const r = checkWelcome(bytes(w.welcome), {
        backendKeys: new Map([[w.backendKid, bytes(key.publicKey)]]),
        dev: w.dev,
        helloBytes: bytes(w.hello),
        ...(w.now === null ? {} : { now: w.now }),
      });
      assert.equal(r.ok ? 'ok' : r.code, w.expect, r.ok ? '' : r.detail);
    });
  }
});
