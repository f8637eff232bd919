import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_POLICY, Ed25519Signer, encodeCbor, helloHash, signGatewayCredential, signLease, type CborMap } from '../../protocol/index.js';
import {
  checkCommand,
  checkHelloV2AtGateway,
  checkWelcomeV2,
  decodeFramePayload,
  decodePiv,
  deriveSessionKeys,
  directionKeys,
  encodeChallengeRequestV2,
  encodeChallengeV2,
  encodeFramePayload,
  encodePiv,
  FrameReceiver,
  frameAad,
  frameNonce,
  parseHelloV2,
  sealFramePlaintext,
  signCommand,
  signGrant,
  signHelloV2,
  signWelcomeV2,
  x25519KeyPairFromPrivate,
  type FramePayload,
} from '../../protocol/v2/index.js';

// A second implementation of protocol v2, copied with its source note: external/README.md.
const FILE = join(dirname(fileURLToPath(import.meta.url)), 'external', 'v2-independent', 'vectors.json');

interface FrameVector {
  seq: number;
  name: string;
  plaintext: string;
  nonce: string;
  frame: string;
}
interface Independent {
  inputs: Record<string, unknown> & {
    dev: string;
    gw: string;
    kid_S: string;
    iat: number;
    exp: number;
    grant_life: number;
    welcome_life: number;
    gateway_max_life: number;
    seed_labels: Record<string, string>;
    gn: string;
    pn: string;
    pub_topic: string;
    pub_body: string;
    pub_mid: number;
    cid: number;
    cmd_topic: string;
    cmd_body: string;
  };
  derived_public: Record<'dpk' | 'pk_S' | 'spk' | 'ge' | 'pe', string>;
  challenge_request: string;
  challenge: string;
  hello: string;
  hh: string;
  grant: string;
  welcome: string;
  offline: { gw_cred: string; lease: string; welcome: string; tpk_label: string };
  Z: string;
  PRK: string;
  info: Record<string, string>;
  k_up: string;
  iv_up: string;
  k_dn: string;
  iv_dn: string;
  sid: string;
  aad: string;
  command: string;
  frames: { p2g: FrameVector[]; g2p: FrameVector[] };
  receipt_plaintexts: Record<string, string>;
  bye_plaintexts: Record<string, string>;
  invalid_plaintexts_denied_not_dropped: Record<string, string>;
  pub_seq256: { nonce: string; frame: string };
  pub_seq256_noncanonical_piv_must_drop: string;
  piv: Record<string, string>;
  piv_invalid: string[];
}

const V = JSON.parse(readFileSync(FILE, 'utf8')) as Independent;
const I = V.inputs;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
/** The README's rule: every private key is SHA-256 of its UTF-8 label. */
const fromLabel = (name: string): Uint8Array => {
  const label = I.seed_labels[name];
  assert.ok(label !== undefined, name);
  return new Uint8Array(createHash('sha256').update(label, 'utf8').digest());
};

describe('vectors: v2-independent (a second implementation of protocol v2)', () => {
  const device = Ed25519Signer.fromSeed(fromLabel('sk_P_seed'), I.dev);
  const backend = Ed25519Signer.fromSeed(fromLabel('sk_S_seed'), I.kid_S);
  const session = Ed25519Signer.fromSeed(fromLabel('session_key_seed'), I.gw);
  const ge = x25519KeyPairFromPrivate(fromLabel('ge_priv'));
  const pe = x25519KeyPairFromPrivate(fromLabel('pe_priv'));
  const backendKeys = new Map([[I.kid_S, backend.publicKeyRaw]]);
  const dev = I.dev;
  const gw = I.gw;
  const keysP = deriveSessionKeys({ privateKey: pe.privateKey, peerPublic: ge.publicKey, hh: bytes(V.hh), dev, gw });

  it('every input key is SHA-256 of its label, and the public keys derive from them', () => {
    for (const name of Object.keys(I.seed_labels).filter((n) => n !== 'rule')) assert.equal(hex(fromLabel(name)), I[name], name);
    assert.equal(hex(device.publicKeyRaw), V.derived_public.dpk);
    assert.equal(hex(backend.publicKeyRaw), V.derived_public.pk_S);
    assert.equal(hex(session.publicKeyRaw), V.derived_public.spk);
    assert.equal(hex(ge.publicKey), V.derived_public.ge);
    assert.equal(hex(pe.publicKey), V.derived_public.pe);
  });

  it('reproduces the challenge-request, challenge, hello and hh', async () => {
    assert.equal(hex(encodeChallengeRequestV2({ type: 'challenge-request', version: 2, dev })), V.challenge_request);
    assert.equal(hex(encodeChallengeV2({ type: 'challenge', version: 2, dev, gn: bytes(I.gn as string), gw, ge: ge.publicKey })), V.challenge);
    const hello = await signHelloV2({ type: 'hello', version: 2, dev, pn: bytes(I.pn as string), gn: bytes(I.gn as string), gw, ge: ge.publicKey, pe: pe.publicKey }, device);
    assert.equal(hex(hello), V.hello);
    assert.equal(hex(helloHash(hello)), V.hh);
  });

  it('reproduces the grant and the online welcome, and the peripheral accepts it', async () => {
    const grant = await signGrant({ type: 'grant', version: 2, dev, gw, hh: bytes(V.hh), spk: session.publicKeyRaw, iat: I.iat, life: I.grant_life }, backend);
    assert.equal(hex(grant), V.grant);
    const life = Math.min(I.gateway_max_life, I.grant_life);
    assert.equal(life, I.welcome_life);
    const welcome = await signWelcomeV2({ type: 'welcome', version: 2, dev, gw, hh: bytes(V.hh), grant, life }, session);
    assert.equal(hex(welcome), V.welcome);
    const r = checkWelcomeV2(welcome, { backendKeys, dev, devicePublicKey: device.publicKeyRaw, helloBytes: bytes(V.hello) });
    assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.detail}`);
    assert.equal(r.mode, 'online');
    assert.equal(r.lifeSeconds, 43_200);
  });

  it('reproduces the offline welcome (gw-cred and lease in v1 format), accepted with a clock, refused without', async () => {
    const tpk = new Uint8Array(createHash('sha256').update(V.offline.tpk_label, 'utf8').digest());
    const cred = await signGatewayCredential({ type: 'gw-cred', version: 1, gw, spk: session.publicKeyRaw, tpk, iat: I.iat, exp: I.iat + I.gateway_max_life }, backend);
    assert.equal(hex(cred), V.offline.gw_cred);
    const lease = await signLease({ type: 'lease', version: 1, dev, gw, dpk: device.publicKeyRaw, policy: { ...DEFAULT_POLICY }, iat: I.iat, exp: I.exp }, backend);
    assert.equal(hex(lease), V.offline.lease);
    // life = min(gateway maximum, lease.exp − now) at now = iat.
    const life = Math.min(I.gateway_max_life, I.exp - I.iat);
    const welcome = await signWelcomeV2({ type: 'welcome', version: 2, dev, gw, hh: bytes(V.hh), cred, lease, life }, session);
    assert.equal(hex(welcome), V.offline.welcome);
    const base = { backendKeys, dev, devicePublicKey: device.publicKeyRaw, helloBytes: bytes(V.hello) };
    const withClock = checkWelcomeV2(welcome, { ...base, now: I.iat });
    assert.ok(withClock.ok && withClock.mode === 'offline' && withClock.lifeSeconds === 3600);
    const noClock = checkWelcomeV2(welcome, base);
    assert.ok(!noClock.ok && noClock.code === 'GH_WELCOME_OFFLINE_REFUSED' && noClock.check === 3);
  });

  it('reproduces Z, PRK, every info string, k_up, iv_up, k_dn, iv_dn, sid and the AAD, from either side', () => {
    const keysG = deriveSessionKeys({ privateKey: ge.privateKey, peerPublic: pe.publicKey, hh: bytes(V.hh), dev, gw });
    for (const k of [keysP, keysG]) {
      assert.equal(hex(k.z), V.Z);
      assert.equal(hex(k.prk), V.PRK);
      for (const [label, info] of Object.entries(V.info)) assert.equal(hex(k.info[label as keyof typeof k.info]), info, label);
      assert.equal(hex(k.kUp), V.k_up);
      assert.equal(hex(k.ivUp), V.iv_up);
      assert.equal(hex(k.kDn), V.k_dn);
      assert.equal(hex(k.ivDn), V.iv_dn);
      assert.equal(hex(k.sid), V.sid);
    }
    assert.equal(hex(frameAad(keysP.sid)), V.aad);
    // The gateway's v2 hello checks give the same Z.
    const { z } = checkHelloV2AtGateway(parseHelloV2(bytes(V.hello)).payload, { gw, issuedGe: ge.publicKey, gePrivateKey: ge.privateKey });
    assert.equal(hex(z), V.Z);
  });

  it('reproduces the command, and the peripheral acts on it in this session', async () => {
    const command = await signCommand(
      { type: 'command', version: 2, dev, hh: bytes(V.hh), cid: I.cid, topic: I.cmd_topic, body: utf8(I.cmd_body), iat: I.iat, exp: I.exp },
      backend,
    );
    assert.equal(hex(command), V.command);
    const r = checkCommand(command, { backendKeys, dev, hh: bytes(V.hh), now: I.iat });
    assert.equal(r.action, 'execute');
  });

  const payloads: Record<string, FramePayload> = {
    pub: { type: 'pub', topic: I.pub_topic, body: utf8(I.pub_body) },
    ping: { type: 'ping' },
    pub_mid: { type: 'pub', topic: I.pub_topic, body: utf8(I.pub_body), mid: I.pub_mid },
    ack: { type: 'ack', cid: I.cid, status: 'done' },
    bye: { type: 'bye' },
    receipt: { type: 'receipt', upto: 0 },
    cmd: { type: 'cmd', cmd: bytes(V.command) },
    receipt_busy_lost: { type: 'receipt', upto: 3, busy: [2], retry: 5, lost: [1] },
    bye_reason: { type: 'bye', reason: 'revoked' },
  };

  for (const dir of ['p2g', 'g2p'] as const) {
    it(`reproduces every ${dir} frame (plaintext, nonce, frame) and opens them in order`, () => {
      const k = directionKeys(keysP, dir);
      const rx = new FrameReceiver(k, dir);
      for (const f of V.frames[dir]) {
        const p = payloads[f.name];
        assert.ok(p !== undefined, f.name);
        assert.equal(hex(encodeFramePayload(p)), f.plaintext, f.name);
        assert.equal(hex(frameNonce(k.iv, f.seq)), f.nonce, f.name);
        assert.equal(hex(sealFramePlaintext(k, f.seq, bytes(f.plaintext))), f.frame, f.name);
        const r = rx.open(bytes(f.frame));
        assert.ok(r.kind === 'frame' && r.seq === f.seq, `${f.name}: ${JSON.stringify(r)}`);
        assert.deepEqual(r.payload, decodeFramePayload(bytes(f.plaintext)));
      }
    });
  }

  it('reproduces the receipt plaintexts', () => {
    const r: Record<string, FramePayload> = {
      upto_only: { type: 'receipt', upto: 7 },
      denied: { type: 'receipt', upto: 7, denied: [5] },
      busy_retry: { type: 'receipt', upto: 7, busy: [6, 7], retry: 30 },
      lost: { type: 'receipt', upto: 7, lost: [4] },
      denied_busy_lost: { type: 'receipt', upto: 7, denied: [5], busy: [6, 7], retry: 30, lost: [4] },
    };
    assert.deepEqual(Object.keys(r).sort(), Object.keys(V.receipt_plaintexts).sort());
    for (const [name, p] of Object.entries(r)) {
      assert.equal(hex(encodeFramePayload(p)), V.receipt_plaintexts[name], name);
      assert.deepEqual(decodeFramePayload(bytes(V.receipt_plaintexts[name] as string), 'g2p'), p, name);
    }
  });

  it('reproduces the bye plaintexts, each reason accepted', () => {
    for (const [name, h] of Object.entries(V.bye_plaintexts)) {
      const p: FramePayload = name === 'plain' ? { type: 'bye' } : { type: 'bye', reason: name as 'expired' };
      assert.equal(hex(encodeFramePayload(p)), h, name);
      assert.deepEqual(decodeFramePayload(bytes(h), 'p2g'), p);
    }
  });

  it('plaintexts that are not valid frame payloads decrypt, consume their seq and are denied, not dropped', () => {
    const k = directionKeys(keysP, 'p2g');
    const rx = new FrameReceiver(k, 'p2g');
    const cases = { ...V.invalid_plaintexts_denied_not_dropped };
    // The file elides pub_body_1025 ("…"): we build it (body of 1,025 bytes) and check the prefix it shows.
    const elided = cases.pub_body_1025 as string;
    assert.ok(elided.endsWith('...'));
    const m: CborMap = new Map<number, Uint8Array | string>([[1, 'pub'], [21, I.pub_topic], [22, new Uint8Array(1025).fill(0x78)]]);
    const body1025 = hex(encodeCbor(m));
    assert.ok(body1025.startsWith(elided.slice(0, -3)));
    cases.pub_body_1025 = body1025;
    let seq = 0;
    for (const [name, pt] of Object.entries(cases)) {
      const r = rx.open(sealFramePlaintext(k, seq, bytes(pt)));
      assert.equal(r.kind, 'denied', name);
      assert.equal(rx.drops, seq, 'a denied frame is not a drop');
      assert.equal(rx.open(sealFramePlaintext(k, seq, bytes(pt))).kind, 'drop', `${name}: its seq is consumed`);
      seq++;
    }
  });

  it('reproduces the pub at seq 256 (piv h\'0100\') and drops its copy with the non-canonical piv h\'000100\'', () => {
    const k = directionKeys(keysP, 'p2g');
    assert.equal(hex(frameNonce(k.iv, 256)), V.pub_seq256.nonce);
    assert.equal(hex(sealFramePlaintext(k, 256, encodeFramePayload(payloads.pub as FramePayload))), V.pub_seq256.frame);
    const rx = new FrameReceiver(k, 'p2g');
    const bad = rx.open(bytes(V.pub_seq256_noncanonical_piv_must_drop));
    assert.ok(bad.kind === 'drop' && bad.code === 'GH_FRAME_PIV');
    const good = rx.open(bytes(V.pub_seq256.frame));
    assert.ok(good.kind === 'frame' && good.seq === 256);
  });

  it('reproduces every piv and refuses every invalid one', () => {
    for (const [seq, piv] of Object.entries(V.piv)) {
      assert.equal(hex(encodePiv(Number(seq))), piv, seq);
      assert.equal(decodePiv(bytes(piv)), Number(seq));
    }
    for (const piv of V.piv_invalid) assert.throws(() => decodePiv(bytes(piv)), (e: unknown) => (e as { code?: string }).code === 'GH_FRAME_PIV', piv);
  });
});
