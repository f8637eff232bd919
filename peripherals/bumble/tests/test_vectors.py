"""The Bumble peripheral's CBOR/COSE encodings and welcome checks against test/vectors/protocol-v1.json.

Run from the repository root: `.venv/bin/python -m unittest discover -s peripherals/bumble -t peripherals/bumble`
(test/daemon/transports/ble/hci/python-vectors.test.ts runs it under mocha).
"""
from __future__ import annotations

import hashlib
import json
import os
import unittest
from pathlib import Path

from gatehouse_bumble import cbor
from gatehouse_bumble.cbor import CborError
from gatehouse_bumble.framing import FrameError, Reassembler, frame
from gatehouse_bumble.protocol import Peripheral, ProtocolError, check_welcome, decode_challenge, decode_reject, parse_sign1, sign1, verify_sign1
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / 'test' / 'vectors' / 'protocol-v1.json').read_text(encoding='utf-8'))
MESSAGES = {m['name']: m for m in VECTORS['messages']}
KEYS = VECTORS['keys']

# Field names of the vectors' `decoded` objects by payload key.
FIELDS = {'type': 1, 'version': 2, 'dev': 3, 'pn': 4, 'gn': 5, 'gw': 6, 'hh': 7, 'cred': 8, 'spk': 9, 'tpk': 10,
          'iat': 11, 'exp': 12, 'reason': 13, 'dpk': 15, 'retry': 16}
BYTES = {'pn', 'gn', 'hh', 'cred', 'spk', 'tpk', 'dpk'}


def payload_of(decoded: dict) -> dict:
    return {FIELDS[k]: (bytes.fromhex(v) if k in BYTES else v) for k, v in decoded.items()}


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[name]['seed']))


class Encodings(unittest.TestCase):
    def test_challenge_decodes_and_reencodes_byte_for_byte(self) -> None:
        v = MESSAGES['challenge/valid']
        c = decode_challenge(bytes.fromhex(v['hex']))
        self.assertEqual((c.dev, c.gn.hex(), c.gw), (v['decoded']['dev'], v['decoded']['gn'], v['decoded']['gw']))
        self.assertEqual(cbor.encode(payload_of(v['decoded'])).hex(), v['hex'])

    def test_hello_is_byte_identical_from_the_device_seed(self) -> None:
        v = MESSAGES['hello/valid']
        pn = bytes.fromhex(v['decoded']['pn'])
        p = Peripheral('sensor-0001', bytes.fromhex(KEYS['device']['seed']), {}, random=lambda n: pn)
        self.assertEqual(p.public_key.hex(), KEYS['device']['publicKey'])
        hello = p.hello(bytes.fromhex(MESSAGES['challenge/valid']['hex']))
        self.assertEqual(hello.hex(), v['hex'])
        self.assertTrue(verify_sign1(parse_sign1(hello), p.public_key))

    def test_signed_objects_reencode_byte_for_byte(self) -> None:
        for name, signer in (('welcome/valid', 'session'), ('gw-cred/valid', 'backend'), ('reject/signed', 'session')):
            with self.subTest(name=name):
                v = MESSAGES[name]
                decoded = v['decoded'].get('message', v['decoded'])
                made = sign1(payload_of(decoded), KEYS[signer]['kid'], key(signer))
                self.assertEqual(made.hex(), v['hex'])

    def test_untagged_hello_is_accepted_and_verifies(self) -> None:
        s = parse_sign1(bytes.fromhex(MESSAGES['hello/untagged']['hex']))
        self.assertTrue(verify_sign1(s, bytes.fromhex(KEYS['device']['publicKey'])))

    def test_bad_signatures_do_not_verify(self) -> None:
        for name in ('hello/wrong-key', 'hello/non-canonical-s', 'hello/small-order-key-forgery'):
            with self.subTest(name=name):
                v = MESSAGES[name]
                self.assertFalse(verify_sign1(parse_sign1(bytes.fromhex(v['hex'])), bytes.fromhex(KEYS[v['verifyWith']]['publicKey'])))

    def test_rejects_decode(self) -> None:
        for name in ('reject/signed', 'down/reject-unsigned', 'reject/unsigned', 'reject/minimal'):
            with self.subTest(name=name):
                v = MESSAGES[name]
                want = v['decoded']['message']
                r = decode_reject(bytes.fromhex(v['hex']))
                self.assertEqual((r.dev, r.reason, r.retry), (want['dev'], want['reason'], want.get('retry')))

    def test_cbor_level_refusals_carry_the_same_codes(self) -> None:
        checked = 0
        for v in VECTORS['messages']:
            if v['verdict'] != 'invalid' or not (v['code'].startswith('GH_CBOR_') or v['code'] == 'GH_MSG_TOO_LARGE'):
                continue
            with self.subTest(name=v['name']):
                with self.assertRaises(CborError) as caught:
                    data = bytes.fromhex(v['hex'])
                    if v['decoder'] == 'parseHello':
                        parse_sign1(data)
                    else:
                        # Only the up/down dispatchers accept tag 18 (a COSE_Sign1); the rest no tag.
                        cbor.decode(data, frozenset({18}) if v['decoder'].startswith('decode') and 'Message' in v['decoder'] else frozenset())
                self.assertEqual(caught.exception.code, v['code'])
                checked += 1
        self.assertGreaterEqual(checked, 12)

    def test_invalid_challenges_and_rejects_are_refused(self) -> None:
        decoders = {'decodeChallenge': decode_challenge, 'parseReject': decode_reject}
        checked = 0
        for v in VECTORS['messages']:
            if v['verdict'] == 'invalid' and v['decoder'] in decoders:
                with self.subTest(name=v['name']):
                    with self.assertRaises((CborError, ProtocolError)) as caught:
                        decoders[v['decoder']](bytes.fromhex(v['hex']))
                    self.assertEqual(caught.exception.code, v['code'])
                    checked += 1
        self.assertGreaterEqual(checked, 5)


class WelcomeChecks(unittest.TestCase):
    def test_every_welcome_check_vector(self) -> None:
        self.assertEqual(len(VECTORS['welcomeChecks']), 12)
        for w in VECTORS['welcomeChecks']:
            with self.subTest(name=w['name']):
                pinned = {w['backendKid']: bytes.fromhex(KEYS[w['backendKey']]['publicKey'])}
                r = check_welcome(bytes.fromhex(w['welcome']), bytes.fromhex(w['hello']), w['dev'], pinned, w['now'])
                self.assertEqual('ok' if r.ok else r.code, w['expect'], r.detail)

    def test_hh_is_the_hash_of_the_hello_as_sent(self) -> None:
        w = VECTORS['welcomeChecks'][0]
        welcome = cbor.decode(parse_sign1(bytes.fromhex(w['welcome'])).payload)
        self.assertEqual(welcome[7], hashlib.sha256(bytes.fromhex(w['hello'])).digest())


class Framing(unittest.TestCase):
    def test_worked_example_at_mtu_23(self) -> None:
        message = bytes(range(40))
        chunks = frame(message, 23)
        self.assertEqual([c[0] for c in chunks], [0x00, 0x01, 0x82])
        self.assertEqual([len(c) for c in chunks], [20, 20, 3])
        r = Reassembler()
        self.assertEqual([r.push(c) for c in chunks], [None, None, message])

    def test_chunks_fit_every_mtu_and_a_gap_aborts(self) -> None:
        message = os.urandom(1024)
        for mtu in (23, 185, 247, 517):
            chunks = frame(message, mtu)
            self.assertTrue(all(len(c) <= min(mtu - 3, 512) for c in chunks))
            r = Reassembler()
            self.assertEqual([m for m in (r.push(c) for c in chunks) if m is not None], [message])
        r = Reassembler()
        r.push(frame(message, 23)[0])
        with self.assertRaises(FrameError) as caught:
            r.push(frame(message, 23)[2])
        self.assertEqual(caught.exception.code, 'GH_BLE_FRAME_GAP')


if __name__ == '__main__':
    unittest.main()
