import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeChallenge, decodeChallengeRequest, decodeDownMessage, decodeUpMessage, Ed25519Signer, parseHello, parseWelcome, ProtocolError } from '../../protocol/index.js';
import {
  checkCommand,
  checkHelloV2AtGateway,
  checkWelcomeV2,
  decodeChallengeRequestV2,
  decodeChallengeV2,
  decodeDownMessageV2,
  decodeUpMessageV2,
  deriveSessionKeys,
  directionKeys,
  FrameReceiver,
  frameAad,
  parseCommand,
  parseGrant,
  parseHelloV2,
  parseRejectV2,
  parseWelcomeV2,
  x25519KeyPairFromPrivate,
} from '../../protocol/v2/index.js';
import { generateVectorsV2, renderVectorsV2, VECTORS_V2_PATH, type DecoderV2Name, type VectorV2File } from './generate-v2.js';
import { assertValidAndInvalid } from './kit.js';

const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const DECODERS: Record<DecoderV2Name, (b: Uint8Array) => unknown> = {
  decodeChallengeRequestV2,
  decodeChallengeV2,
  parseHelloV2,
  parseGrant,
  parseWelcomeV2,
  parseRejectV2,
  parseCommand,
  decodeUpMessageV2,
  decodeDownMessageV2,
  decodeChallengeRequest,
  decodeChallenge,
  parseHello,
  parseWelcome,
  decodeUpMessage,
  decodeDownMessage,
};

describe('vectors: protocol-v2.json', () => {
  const file = JSON.parse(readFileSync(VECTORS_V2_PATH, 'utf8')) as VectorV2File;
  const key = (name: string): Uint8Array => bytes(file.keys[name]?.publicKey ?? '');
  const backendKeys = new Map([['backend-1', key('backend')]]);
  const { dev, gw } = file.inputs;

  it('the committed file is exactly what the generator produces (npm run vectors)', async () => {
    assert.equal(readFileSync(VECTORS_V2_PATH, 'utf8'), await renderVectorsV2());
  });

  it('covers every v2 message and frame type, valid and invalid; names are unique', async () => {
    const gen = await generateVectorsV2();
    assertValidAndInvalid(gen.messages, ['challenge-request/', 'challenge/', 'hello/', 'grant/', 'welcome/', 'reject/', 'command/']);
    for (const t of ['pub', 'ack', 'ping', 'bye', 'receipt', 'msg', 'cmd']) assert.ok(gen.frames.some((f) => f.expect === 'frame' && f.name.split('/')[1]?.startsWith(t)), t);
    for (const list of [gen.messages, gen.frames, gen.welcomeChecks, gen.commandChecks, gen.gatewayHelloChecks]) {
      assert.equal(new Set(list.map((v) => v.name)).size, list.length);
    }
  });

  it('keys and ephemeral keys derive the stated public keys; the key schedule gives the stated intermediates from both sides', () => {
    for (const [name, k] of Object.entries(file.keys)) assert.equal(hex(Ed25519Signer.fromSeed(bytes(k.seed), k.kid).publicKeyRaw), k.publicKey, name);
    const ge = x25519KeyPairFromPrivate(bytes(file.ephemeral.ge.privateKey));
    const pe = x25519KeyPairFromPrivate(bytes(file.ephemeral.pe.privateKey));
    assert.equal(hex(ge.publicKey), file.ephemeral.ge.publicKey);
    assert.equal(hex(pe.publicKey), file.ephemeral.pe.publicKey);
    const hh = bytes(file.inputs.hh);
    for (const [priv, pub] of [[pe.privateKey, ge.publicKey], [ge.privateKey, pe.publicKey]] as const) {
      const k = deriveSessionKeys({ privateKey: priv, peerPublic: pub, hh, dev, gw });
      assert.deepEqual(
        { z: hex(k.z), prk: hex(k.prk), info: Object.fromEntries(Object.entries(k.info).map(([l, v]) => [l, hex(v)])), kUp: hex(k.kUp), ivUp: hex(k.ivUp), kDn: hex(k.kDn), ivDn: hex(k.ivDn), sid: hex(k.sid), aad: hex(frameAad(k.sid)) },
        file.keySchedule,
      );
    }
  });

  for (const v of file.messages) {
    it(`message ${v.name}: ${v.verdict}${v.code ? ` (${v.code})` : ''}`, () => {
      const run = (): unknown => DECODERS[v.decoder](bytes(v.hex));
      if (v.verdict === 'valid') {
        run();
        return;
      }
      assert.throws(run, (e: unknown) => e instanceof ProtocolError && e.code === v.code && e.reason === v.reason);
    });
  }

  const ks = deriveSessionKeys({ privateKey: x25519KeyPairFromPrivate(bytes(file.ephemeral.pe.privateKey)).privateKey, peerPublic: bytes(file.ephemeral.ge.publicKey), hh: bytes(file.inputs.hh), dev, gw });
  for (const f of file.frames) {
    it(`frame ${f.name}: ${f.expect}${f.code ? ` (${f.code})` : ''}`, () => {
      const rx = new FrameReceiver(directionKeys(ks, f.direction), f.direction);
      for (const s of f.received) rx.settleLost(s);
      const r = rx.open(bytes(f.hex));
      assert.equal(r.kind, f.expect, JSON.stringify(r));
      if (r.kind === 'drop') assert.equal(r.code, f.code);
      if (r.kind === 'denied') assert.equal(r.error.code, f.code);
      if (r.kind !== 'drop') assert.equal(r.seq, f.seq);
    });
  }

  for (const w of file.welcomeChecks) {
    it(`welcome check ${w.name}: ${w.expect}`, () => {
      const r = checkWelcomeV2(bytes(w.welcome), {
        backendKeys,
        dev,
        devicePublicKey: key('device'),
        helloBytes: bytes(file.inputs.helloV2),
        ...(w.now === null ? {} : { now: w.now }),
        ...(w.allowOffline === null ? {} : { allowOffline: w.allowOffline }),
      });
      if (r.ok) {
        assert.equal('ok', w.expect);
        assert.equal(r.mode, w.mode);
        assert.equal(r.lifeSeconds, w.lifeSeconds);
      } else {
        assert.equal(r.code, w.expect, r.detail);
        assert.equal(r.check, w.check);
      }
    });
  }

  for (const c of file.commandChecks) {
    it(`command check ${c.name}: ${c.expect.action}`, () => {
      const r = checkCommand(bytes(c.command), { backendKeys, dev, hh: bytes(c.hh), ...(c.last === null ? {} : { last: c.last }), ...(c.now === null ? {} : { now: c.now }) });
      const got = r.action === 'execute' ? { action: r.action, cid: r.command.cid } : r.action === 'repeat' ? { action: r.action, cid: r.cid, status: r.status } : { action: r.action, cid: r.cid, code: r.code };
      assert.deepEqual(got, c.expect);
    });
  }

  for (const g of file.gatewayHelloChecks) {
    it(`gateway hello check ${g.name}: ${g.expect}`, () => {
      const ge = x25519KeyPairFromPrivate(bytes(file.ephemeral.ge.privateKey));
      const hello = parseHelloV2(bytes(g.hello)).payload;
      const run = (): { z: Uint8Array } => checkHelloV2AtGateway(hello, { gw, issuedGe: bytes(g.issuedGe), gePrivateKey: ge.privateKey });
      if (g.expect === 'ok') {
        assert.equal(hex(run().z), g.z);
        return;
      }
      assert.throws(run, (e: unknown) => e instanceof ProtocolError && e.code === g.expect && e.reason === 'malformed');
    });
  }
});
