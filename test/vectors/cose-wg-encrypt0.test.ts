import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProtocolError } from '../../protocol/index.js';
import { encStructure, openEncrypt0 } from '../../protocol/v2/index.js';

// COSE WG Examples (public domain), aes-ccm-examples/aes-ccm-enc-01: see external/cose-wg/README.md.
const FILE = join(dirname(fileURLToPath(import.meta.url)), 'external', 'cose-wg', 'aes-ccm-examples_aes-ccm-enc-01.json');

interface Example {
  input: { plaintext: string; encrypted: { recipients: { key: { k: string } }[] } };
  intermediates: { AAD_hex: string; CEK_hex: string };
  output: { cbor: string };
}

describe('vectors: COSE WG aes-ccm-enc-01 (COSE_Encrypt0, AES-CCM-16-64-128)', () => {
  const ex = JSON.parse(readFileSync(FILE, 'utf8')) as Example;
  const key = new Uint8Array(Buffer.from(ex.input.encrypted.recipients[0]?.key.k ?? '', 'base64url'));
  const cose = new Uint8Array(Buffer.from(ex.output.cbor, 'hex'));

  it('the key is the CEK and our Enc_structure is the AAD of the example', () => {
    assert.equal(Buffer.from(key).toString('hex').toUpperCase(), ex.intermediates.CEK_hex);
    assert.equal(Buffer.from(encStructure(Uint8Array.of(0xa1, 0x01, 0x0a), new Uint8Array(0))).toString('hex').toUpperCase(), ex.intermediates.AAD_hex);
  });

  it('decrypts to "This is the content."', () => {
    assert.equal(Buffer.from(openEncrypt0(cose, key)).toString('utf8'), ex.input.plaintext);
    assert.equal(ex.input.plaintext, 'This is the content.');
  });

  it('refuses it with a wrong key or a flipped ciphertext bit', () => {
    const wrong = Uint8Array.from(key, (b, i) => (i === 0 ? b ^ 1 : b));
    assert.throws(() => openEncrypt0(cose, wrong), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_AEAD_DECRYPT');
    const flipped = Uint8Array.from(cose, (b, i) => (i === cose.length - 1 ? b ^ 1 : b));
    assert.throws(() => openEncrypt0(flipped, key), (e: unknown) => e instanceof ProtocolError && e.code === 'GH_AEAD_DECRYPT');
  });
});
