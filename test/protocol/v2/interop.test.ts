import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import {
  deriveSessionKeys,
  directionKeys,
  FrameReceiver,
  sealFrame,
  x25519KeyPairFromPrivate,
} from '../../../protocol/v2/index.js';

// The test's own assembly of node:crypto calls, written from the protocol-v2 page and RFC 9052,
// without the library's CBOR, HKDF or COSE code: the library must agree with it byte for byte.
const h = (s: string): Buffer => Buffer.from(s, 'hex');
const tstr = (s: string): Buffer => {
  const b = Buffer.from(s, 'utf8');
  assert.ok(b.length < 24);
  return Buffer.concat([Buffer.of(0x60 | b.length), b]);
};
const bstr = (b: Buffer): Buffer => {
  assert.ok(b.length < 24);
  return Buffer.concat([Buffer.of(0x40 | b.length), b]);
};

describe('protocol v2: interoperability with a hand-assembled node:crypto implementation', () => {
  const dev = 'sensor-0001';
  const gw = 'gw-lab-1';
  const hh = createHash('sha256').update('a hello').digest();
  const gePriv = Buffer.alloc(32, 0x11);
  const pePriv = Buffer.alloc(32, 0x22);
  const pkcs8 = (d: Buffer) => createPrivateKey({ key: Buffer.concat([h('302e020100300506032b656e04220420'), d]), format: 'der', type: 'pkcs8' });
  const rawPub = (d: Buffer): Buffer => createPublicKey(pkcs8(d)).export({ format: 'der', type: 'spki' }).subarray(12);
  const spki = (raw: Buffer) => createPublicKey({ key: Buffer.concat([h('302a300506032b656e032100'), raw]), format: 'der', type: 'spki' });

  const z = diffieHellman({ privateKey: pkcs8(gePriv), publicKey: spki(rawPub(pePriv)) });
  const prk = createHmac('sha256', hh).update(z).digest();
  // info = [ "gatehouse v2", label, dev, gw ]: 0x84 then four short text strings.
  const info = (label: string): Buffer => Buffer.concat([Buffer.of(0x84), tstr('gatehouse v2'), tstr(label), tstr(dev), tstr(gw)]);
  const okm = (label: string, n: number): Buffer => Buffer.from(hkdfSync('sha256', z, hh, info(label), n));
  const mine = {
    kUp: okm('p2g key', 16),
    ivUp: okm('p2g iv', 13),
    kDn: okm('g2p key', 16),
    ivDn: okm('g2p iv', 13),
    sid: okm('sid', 8),
  };

  const lib = deriveSessionKeys({ privateKey: x25519KeyPairFromPrivate(new Uint8Array(pePriv)).privateKey, peerPublic: new Uint8Array(rawPub(gePriv)), hh: new Uint8Array(hh), dev, gw });

  it('the key schedule: Z, PRK (HKDF-Extract), info and every key, IV and sid', () => {
    assert.equal(Buffer.from(lib.z).toString('hex'), z.toString('hex'));
    assert.equal(Buffer.from(lib.prk).toString('hex'), prk.toString('hex'));
    assert.equal(Buffer.from(lib.info['p2g key']).toString('hex'), info('p2g key').toString('hex'));
    for (const k of ['kUp', 'ivUp', 'kDn', 'ivDn', 'sid'] as const) assert.equal(Buffer.from(lib[k]).toString('hex'), mine[k].toString('hex'), k);
  });

  // Enc_structure ["Encrypt0", h'a1010a', sid] laid out by hand: 0x83, tstr "Encrypt0", bstr, bstr.
  const aad = Buffer.concat([Buffer.of(0x83), tstr('Encrypt0'), bstr(h('a1010a')), bstr(mine.sid)]);
  const nonce = (iv: Buffer, seq: number): Buffer => {
    const n = Buffer.from(iv);
    const s = Buffer.alloc(13);
    s.writeUIntBE(seq, 7, 6);
    for (let i = 0; i < 13; i++) n[i] = (n[i] as number) ^ (s[i] as number);
    return n;
  };
  // {1: "pub", 21: "t/1", 22: h'3432'}: a3 01 63 "pub" 15 63 "t/1" 16 42 3432
  const plaintext = h('a30163707562156374 2f31164234 32'.replace(/ /g, ''));

  it('a frame the library seals decrypts with plain AES-CCM over the hand-built Enc_structure', () => {
    const seq = 300;
    const frame = Buffer.from(sealFrame(directionKeys(lib, 'p2g'), seq, { type: 'pub', topic: 't/1', body: new Uint8Array(h('3432')) }));
    // d0 83 43 a1010a a1 06 42 012c 58 len ciphertext
    assert.equal(frame.subarray(0, 11).toString('hex'), 'd08343a1010aa10642012c');
    const sealed = frame.subarray(frame[11] === 0x58 ? 13 : 12);
    const d = createDecipheriv('aes-128-ccm', mine.kUp, nonce(mine.ivUp, seq), { authTagLength: 8 });
    d.setAuthTag(sealed.subarray(sealed.length - 8));
    d.setAAD(aad, { plaintextLength: sealed.length - 8 });
    const pt = d.update(sealed.subarray(0, sealed.length - 8));
    d.final();
    assert.equal(pt.toString('hex'), plaintext.toString('hex'));
  });

  it('a frame the test seals by hand opens in the library', () => {
    const seq = 5;
    const c = createCipheriv('aes-128-ccm', mine.kDn, nonce(mine.ivDn, seq), { authTagLength: 8 });
    const receipt = h('a2016772656365697074' + '1404'); // {1: "receipt", 20: 4}
    c.setAAD(aad, { plaintextLength: receipt.length });
    const ct = Buffer.concat([c.update(receipt), c.final(), c.getAuthTag()]);
    const frame = Buffer.concat([h('d08343a1010aa1064105'), bstr(ct)]);
    const r = new FrameReceiver(directionKeys(lib, 'g2p'), 'g2p').open(new Uint8Array(frame));
    assert.ok(r.kind === 'frame' && r.seq === 5);
    assert.deepEqual(r.payload, { type: 'receipt', upto: 4 });
  });
});
