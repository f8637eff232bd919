"""The Bumble peripheral's protocol v2 (gatehouse_bumble/protocol_v2.py) against the project's v2
vectors (test/vectors/protocol-v2.json) and a second implementation's
(test/vectors/external/v2-independent/vectors.json): keys, hello, key schedule intermediates, every
frame, each case accepted or refused as noted.

Run from the repository root: `.venv/bin/python -m unittest discover -s peripherals/bumble -t peripherals/bumble`
(test/daemon/transports/ble/hci/python-vectors.test.ts runs it under mocha).
"""
from __future__ import annotations

import hashlib
import json
import unittest
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatehouse_bumble import cbor
from gatehouse_bumble.cbor import CborError
from gatehouse_bumble.framing import FrameError, Reassembler, frame
from gatehouse_bumble.protocol import ProtocolError, decode_challenge, sign1
from gatehouse_bumble.protocol_v2 import (
    V2_MAX, ChallengeV2, FrameReceiver, FrameSender, PeripheralV2, check_command, check_hello_v2_at_gateway,
    check_welcome_v2, decode_challenge_v2, decode_frame_payload, decode_piv, decode_reject_v2, derive_keys,
    direction_keys, down_message_type, encode_challenge_v2, encode_frame_payload, encode_piv, frame_aad, frame_nonce,
    parse_command, parse_grant, parse_hello_v2, parse_welcome_v2, seal, x25519_private, x25519_public, x25519_shared,
)

ROOT = Path(__file__).resolve().parents[3]
V = json.loads((ROOT / 'test' / 'vectors' / 'protocol-v2.json').read_text(encoding='utf-8'))
X = json.loads((ROOT / 'test' / 'vectors' / 'external' / 'v2-independent' / 'vectors.json').read_text(encoding='utf-8'))
KEYS = V['keys']
INP = V['inputs']
KS = V['keySchedule']
h = bytes.fromhex


def pinned(name: str = 'backend') -> dict[str, bytes]:
    return {KEYS[name]['kid']: h(KEYS[name]['publicKey'])}


def ed(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(h(KEYS[name]['seed']))


def project_keys():
    return derive_keys(h(KS['z']), h(INP['hh']), INP['dev'], INP['gw'])


def python_payload(p: dict) -> dict:
    return p


class ProjectKeysAndHello(unittest.TestCase):
    def test_ephemeral_public_keys_derive_from_the_private_ones(self) -> None:
        for name in ('ge', 'pe'):
            e = V['ephemeral'][name]
            self.assertEqual(x25519_public(x25519_private(h(e['privateKey']))).hex(), e['publicKey'], name)

    def test_hello_is_byte_identical_from_the_seeds(self) -> None:
        ge = h(V['ephemeral']['ge']['publicKey'])
        challenge = encode_challenge_v2(ChallengeV2('ble:7', h(INP['gn']), INP['gw'], ge))
        randoms = [h(V['ephemeral']['pe']['privateKey']), h(INP['pn'])]
        p = PeripheralV2(INP['dev'], h(KEYS['device']['seed']), pinned(), random=lambda n: randoms.pop(0))
        self.assertEqual(p.public_key.hex(), KEYS['device']['publicKey'])
        hello = p.hello(challenge)
        self.assertEqual(hello.hex(), INP['helloV2'])
        self.assertEqual(hashlib.sha256(hello).hexdigest(), INP['hh'])

    def test_key_schedule_intermediates_from_either_side(self) -> None:
        pe = x25519_private(h(V['ephemeral']['pe']['privateKey']))
        ge = x25519_private(h(V['ephemeral']['ge']['privateKey']))
        z_p = x25519_shared(pe, h(V['ephemeral']['ge']['publicKey']))
        z_g = x25519_shared(ge, h(V['ephemeral']['pe']['publicKey']))
        self.assertEqual((z_p.hex(), z_g.hex()), (KS['z'], KS['z']))
        k = derive_keys(z_p, h(INP['hh']), INP['dev'], INP['gw'])
        self.assertEqual(k.prk.hex(), KS['prk'])
        self.assertEqual({label: i.hex() for label, i in k.info.items()}, KS['info'])
        self.assertEqual((k.k_up.hex(), k.iv_up.hex(), k.k_dn.hex(), k.iv_dn.hex(), k.sid.hex()),
                         (KS['kUp'], KS['ivUp'], KS['kDn'], KS['ivDn'], KS['sid']))
        self.assertEqual(frame_aad(k.sid).hex(), KS['aad'])


class ProjectMessages(unittest.TestCase):
    """Every message vector a v2 peripheral (or the relay's gateway side) decodes."""

    DECODERS = {
        'decodeChallengeV2': decode_challenge_v2,
        'decodeChallenge': decode_challenge,
        'parseHelloV2': parse_hello_v2,
        'parseGrant': parse_grant,
        'parseWelcomeV2': parse_welcome_v2,
        'parseRejectV2': decode_reject_v2,
        'parseCommand': parse_command,
        'decodeDownMessageV2': down_message_type,
    }
    # Not a peripheral's decoders on BLE: the challenge-request (MQTT only), v1 hello/welcome
    # parsing at the gateway, and the gateway's up-dispatcher.
    NOT_HERE = {'decodeChallengeRequestV2', 'decodeChallengeRequest', 'decodeUpMessageV2', 'parseHello', 'parseWelcome'}

    def test_every_message_vector_is_accepted_or_refused_with_its_code(self) -> None:
        checked = 0
        for m in V['messages']:
            if m['decoder'] in self.NOT_HERE:
                continue
            with self.subTest(name=m['name']):
                fn = self.DECODERS[m['decoder']]
                if m['verdict'] == 'valid':
                    fn(h(m['hex']))
                else:
                    with self.assertRaises((CborError, ProtocolError)) as caught:
                        fn(h(m['hex']))
                    self.assertEqual(caught.exception.code, m['code'])
                checked += 1
        self.assertEqual(checked, 34)

    def test_down_dispatch_names_the_message(self) -> None:
        kinds = {m['name']: down_message_type(h(m['hex'])) for m in V['messages'] if m['name'].startswith('down/')}
        self.assertEqual(kinds, {'down/challenge': 'challenge', 'down/welcome': 'welcome', 'down/reject': 'reject'})
        self.assertEqual(down_message_type(h(V['frames'][0]['hex'])), 'frame')


class ProjectFrames(unittest.TestCase):
    def test_every_frame_vector_seals_byte_for_byte_and_opens_as_noted(self) -> None:
        keys = project_keys()
        counts = {'frame': 0, 'denied': 0, 'drop': 0}
        for f in V['frames']:
            with self.subTest(name=f['name']):
                k = direction_keys(keys, f['direction'])
                if f['expect'] in ('frame', 'denied'):
                    self.assertEqual(frame_nonce(k.iv, f['seq']).hex(), f['nonce'])
                    self.assertEqual(seal(k, f['seq'], h(f['plaintext'])).hex(), f['hex'])
                rx = FrameReceiver(k, f['direction'])
                for seq in f['received']:
                    rx.window.mark(seq)
                r = rx.open(h(f['hex']))
                self.assertEqual(r.kind, f['expect'], r)
                if f['expect'] == 'frame':
                    self.assertEqual(r.seq, f['seq'])
                    self.assertEqual(encode_frame_payload(r.payload).hex(), f['plaintext'])
                else:
                    self.assertEqual(r.code, f['code'])
                self.assertEqual(rx.drops, 1 if f['expect'] == 'drop' else 0)
                counts[f['expect']] += 1
        self.assertEqual(counts, {"frame": 13, "denied": 11, "drop": 17})

    def test_sixteen_drops_are_counted(self) -> None:
        rx = FrameReceiver(direction_keys(project_keys(), 'p2g'), 'p2g')
        for _ in range(16):
            self.assertEqual(rx.open(b'\x00').kind, 'drop')
        self.assertEqual(rx.drops, 16)

    def test_window_is_64_wide(self) -> None:
        k = direction_keys(project_keys(), 'p2g')
        rx = FrameReceiver(k, 'p2g')
        ping = encode_frame_payload({'type': 'ping'})
        self.assertEqual(rx.open(seal(k, 100, ping)).kind, 'frame')
        self.assertEqual(rx.open(seal(k, 37, ping)).kind, 'frame')  # 63 below: still in the window
        self.assertEqual(rx.open(seal(k, 36, ping)).code, 'GH_FRAME_TOO_OLD')
        self.assertEqual(rx.open(seal(k, 37, ping)).code, 'GH_FRAME_REPLAY')
        self.assertEqual(rx.open(seal(k, 99, ping)).kind, 'frame')  # out of order, not yet seen


class ProjectWelcomeChecks(unittest.TestCase):
    def test_every_welcome_check_vector(self) -> None:
        self.assertEqual(len(V['welcomeChecks']), 21)
        for w in V['welcomeChecks']:
            with self.subTest(name=w['name']):
                r = check_welcome_v2(h(w['welcome']), h(INP['helloV2']), INP['dev'], h(KEYS['device']['publicKey']), pinned(),
                                     w['now'], w['allowOffline'])
                self.assertEqual('ok' if r.ok else r.code, w['expect'], r.detail)
                if r.ok:
                    self.assertEqual((r.mode, r.life), (w['mode'], w['lifeSeconds']))
                else:
                    self.assertEqual(r.check, int(w['check']))

    def test_the_welcomed_session_has_the_vector_keys(self) -> None:
        ge = h(V['ephemeral']['ge']['publicKey'])
        randoms = [h(V['ephemeral']['pe']['privateKey']), h(INP['pn'])]
        p = PeripheralV2(INP['dev'], h(KEYS['device']['seed']), pinned(), random=lambda n: randoms.pop(0))
        p.hello(encode_challenge_v2(ChallengeV2('ble:1', h(INP['gn']), INP['gw'], ge)))
        r, session = p.welcome(h(V['welcomeChecks'][0]['welcome']))
        self.assertTrue(r.ok, r.detail)
        assert session is not None
        self.assertEqual((session.keys.k_up.hex(), session.sid.hex()), (KS['kUp'], KS['sid']))
        self.assertIsNone(p.pe, 'pe is erased once the keys are derived')
        # Its first frames are the vectors' p2g frames.
        first = session.sender.seal({'type': 'pub', 'topic': 'devices/sensor-0001/temp', 'body': b'21.5'})
        self.assertEqual(first.hex(), V['frames'][0]['hex'])


class ProjectCommandChecks(unittest.TestCase):
    def test_every_command_check_vector(self) -> None:
        self.assertEqual(len(V['commandChecks']), 13)
        for c in V['commandChecks']:
            with self.subTest(name=c['name']):
                last = (c['last']['cid'], c['last']['status']) if c['last'] else None
                r = check_command(h(c['command']), INP['dev'], h(c['hh']), pinned(), last, c['now'])
                e = c['expect']
                self.assertEqual((r.action, r.cid), (e['action'], e['cid']), r)
                if e['action'] == 'refuse':
                    self.assertEqual(r.code, e['code'])
                if e['action'] == 'repeat':
                    self.assertEqual(r.status, e['status'])


class ProjectGatewayHelloChecks(unittest.TestCase):
    def test_every_gateway_hello_check_vector(self) -> None:
        ge_priv = x25519_private(h(V['ephemeral']['ge']['privateKey']))
        for g in V['gatewayHelloChecks']:
            with self.subTest(name=g['name']):
                hello = parse_hello_v2(h(g['hello']))
                if g['expect'] == 'ok':
                    self.assertEqual(check_hello_v2_at_gateway(hello, INP['gw'], h(g['issuedGe']), ge_priv).hex(), g['z'])
                else:
                    with self.assertRaises(ProtocolError) as caught:
                        check_hello_v2_at_gateway(hello, INP['gw'], h(g['issuedGe']), ge_priv)
                    self.assertEqual(caught.exception.code, g['expect'])


class Independent(unittest.TestCase):
    """test/vectors/external/v2-independent: every byte string rebuilt from its inputs."""

    I = X['inputs']

    @classmethod
    def seed(cls, name: str) -> bytes:
        return hashlib.sha256(cls.I['seed_labels'][name].encode('utf-8')).digest()

    def keys(self):
        pe = x25519_private(self.seed('pe_priv'))
        z = x25519_shared(pe, h(X['derived_public']['ge']))
        return derive_keys(z, h(X['hh']), self.I['dev'], self.I['gw'])

    def test_inputs_and_public_keys(self) -> None:
        for name in ('sk_P_seed', 'sk_S_seed', 'session_key_seed', 'ge_priv', 'pe_priv'):
            self.assertEqual(self.seed(name).hex(), self.I[name], name)
        pub = lambda seed: Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw().hex()  # noqa: E731
        self.assertEqual(pub(self.seed('sk_P_seed')), X['derived_public']['dpk'])
        self.assertEqual(pub(self.seed('sk_S_seed')), X['derived_public']['pk_S'])
        self.assertEqual(pub(self.seed('session_key_seed')), X['derived_public']['spk'])
        self.assertEqual(x25519_public(x25519_private(self.seed('ge_priv'))).hex(), X['derived_public']['ge'])
        self.assertEqual(x25519_public(x25519_private(self.seed('pe_priv'))).hex(), X['derived_public']['pe'])

    def test_challenge_hello_hh(self) -> None:
        c = decode_challenge_v2(h(X['challenge']))
        self.assertEqual(encode_challenge_v2(c).hex(), X['challenge'])
        self.assertEqual((c.gn.hex(), c.gw, c.ge.hex()), (self.I['gn'], self.I['gw'], X['derived_public']['ge']))
        randoms = [self.seed('pe_priv'), h(self.I['pn'])]
        p = PeripheralV2(self.I['dev'], self.seed('sk_P_seed'), {}, random=lambda n: randoms.pop(0))
        hello = p.hello(h(X['challenge']))
        self.assertEqual(hello.hex(), X['hello'])
        self.assertEqual(hashlib.sha256(hello).hexdigest(), X['hh'])

    def test_grant_and_welcomes_rebuilt_and_checked(self) -> None:
        backend = Ed25519PrivateKey.from_private_bytes(self.seed('sk_S_seed'))
        session = Ed25519PrivateKey.from_private_bytes(self.seed('session_key_seed'))
        I = self.I
        spk = h(X['derived_public']['spk'])
        grant = sign1({1: 'grant', 2: 2, 3: I['dev'], 6: I['gw'], 7: h(X['hh']), 9: spk, 11: I['iat'], 25: I['grant_life']}, I['kid_S'], backend)
        self.assertEqual(grant.hex(), X['grant'])
        life = min(I['gateway_max_life'], I['grant_life'])
        welcome = sign1({1: 'welcome', 2: 2, 3: I['dev'], 6: I['gw'], 7: h(X['hh']), 19: grant, 25: life}, I['gw'], session)
        self.assertEqual(welcome.hex(), X['welcome'])
        pins = {I['kid_S']: h(X['derived_public']['pk_S'])}
        dpk = h(X['derived_public']['dpk'])
        r = check_welcome_v2(welcome, h(X['hello']), I['dev'], dpk, pins)
        self.assertEqual((r.ok, r.mode, r.life), (True, 'online', 43200), r.detail)
        tpk = hashlib.sha256(X['offline']['tpk_label'].encode()).digest()
        cred = sign1({1: 'gw-cred', 2: 1, 6: I['gw'], 9: spk, 10: tpk, 11: I['iat'], 12: I['iat'] + I['gateway_max_life']}, I['kid_S'], backend)
        self.assertEqual(cred.hex(), X['offline']['gw_cred'])
        lease = sign1({1: 'lease', 2: 1, 3: I['dev'], 6: I['gw'], 15: dpk, 14: {'pub': ['devices/{dev}/#'], 'sub': ['devices/{dev}/cmd/#']}, 11: I['iat'], 12: I['exp']}, I['kid_S'], backend)
        self.assertEqual(lease.hex(), X['offline']['lease'])
        off = sign1({1: 'welcome', 2: 2, 3: I['dev'], 6: I['gw'], 7: h(X['hh']), 8: cred, 27: lease, 25: min(I['gateway_max_life'], I['exp'] - I['iat'])}, I['gw'], session)
        self.assertEqual(off.hex(), X['offline']['welcome'])
        r = check_welcome_v2(off, h(X['hello']), I['dev'], dpk, pins, now=I['iat'])
        self.assertEqual((r.ok, r.mode, r.life), (True, 'offline', 3600), r.detail)
        r = check_welcome_v2(off, h(X['hello']), I['dev'], dpk, pins)
        self.assertEqual((r.ok, r.code, r.check), (False, 'GH_WELCOME_OFFLINE_REFUSED', 3))

    def test_key_schedule(self) -> None:
        k = self.keys()
        ge = x25519_private(self.seed('ge_priv'))
        self.assertEqual(x25519_shared(ge, h(X['derived_public']['pe'])).hex(), X['Z'])
        self.assertEqual((k.z.hex(), k.prk.hex()), (X['Z'], X['PRK']))
        self.assertEqual({label: i.hex() for label, i in k.info.items()}, X['info'])
        self.assertEqual((k.k_up.hex(), k.iv_up.hex(), k.k_dn.hex(), k.iv_dn.hex(), k.sid.hex()),
                         (X['k_up'], X['iv_up'], X['k_dn'], X['iv_dn'], X['sid']))
        self.assertEqual(frame_aad(k.sid).hex(), X['aad'])

    def test_command_rebuilt_and_executed(self) -> None:
        I = self.I
        backend = Ed25519PrivateKey.from_private_bytes(self.seed('sk_S_seed'))
        cmd = sign1({1: 'command', 2: 2, 3: I['dev'], 7: h(X['hh']), 23: I['cid'], 21: I['cmd_topic'], 22: I['cmd_body'].encode(),
                     11: I['iat'], 12: I['exp']}, I['kid_S'], backend)
        self.assertEqual(cmd.hex(), X['command'])
        r = check_command(cmd, I['dev'], h(X['hh']), {I['kid_S']: h(X['derived_public']['pk_S'])}, None, I['iat'])
        self.assertEqual((r.action, r.cid), ('execute', 42))

    def test_every_frame_both_ways(self) -> None:
        I = self.I
        body = I['pub_body'].encode()
        payloads = {
            'pub': {'type': 'pub', 'topic': I['pub_topic'], 'body': body}, 'ping': {'type': 'ping'},
            'pub_mid': {'type': 'pub', 'topic': I['pub_topic'], 'body': body, 'mid': I['pub_mid']},
            'ack': {'type': 'ack', 'cid': I['cid'], 'status': 'done'}, 'bye': {'type': 'bye'},
            'receipt': {'type': 'receipt', 'upto': 0}, 'cmd': {'type': 'cmd', 'cmd': h(X['command'])},
            'receipt_busy_lost': {'type': 'receipt', 'upto': 3, 'busy': [2], 'retry': 5, 'lost': [1]},
            'bye_reason': {'type': 'bye', 'reason': 'revoked'},
        }
        keys = self.keys()
        for direction in ('p2g', 'g2p'):
            k = direction_keys(keys, direction)
            sender = FrameSender(k)
            rx = FrameReceiver(k, direction)
            for f in X['frames'][direction]:
                with self.subTest(direction=direction, name=f['name']):
                    p = payloads[f['name']]
                    self.assertEqual(encode_frame_payload(p).hex(), f['plaintext'])
                    self.assertEqual(frame_nonce(k.iv, f['seq']).hex(), f['nonce'])
                    self.assertEqual(sender.seal(p).hex(), f['frame'])
                    r = rx.open(h(f['frame']))
                    self.assertEqual((r.kind, r.seq, r.payload), ('frame', f['seq'], p))

    def test_receipt_and_bye_plaintexts(self) -> None:
        r = {
            'upto_only': {'type': 'receipt', 'upto': 7}, 'denied': {'type': 'receipt', 'upto': 7, 'denied': [5]},
            'busy_retry': {'type': 'receipt', 'upto': 7, 'busy': [6, 7], 'retry': 30},
            'lost': {'type': 'receipt', 'upto': 7, 'lost': [4]},
            'denied_busy_lost': {'type': 'receipt', 'upto': 7, 'denied': [5], 'busy': [6, 7], 'retry': 30, 'lost': [4]},
        }
        self.assertEqual(set(r), set(X['receipt_plaintexts']))
        for name, p in r.items():
            self.assertEqual(encode_frame_payload(p).hex(), X['receipt_plaintexts'][name], name)
            self.assertEqual(decode_frame_payload(h(X['receipt_plaintexts'][name]), 'g2p'), p, name)
        for name, hx in X['bye_plaintexts'].items():
            p = {'type': 'bye'} if name == 'plain' else {'type': 'bye', 'reason': name}
            self.assertEqual(encode_frame_payload(p).hex(), hx, name)
            self.assertEqual(decode_frame_payload(h(hx), 'p2g'), p)

    def test_invalid_plaintexts_are_denied_not_dropped_and_consume_their_seq(self) -> None:
        k = direction_keys(self.keys(), 'p2g')
        rx = FrameReceiver(k, 'p2g')
        cases = dict(X['invalid_plaintexts_denied_not_dropped'])
        elided = cases['pub_body_1025']
        self.assertTrue(elided.endswith('...'))
        built = cbor.encode({1: 'pub', 21: self.I['pub_topic'], 22: b'x' * 1025}).hex()
        self.assertTrue(built.startswith(elided[:-3]))
        cases['pub_body_1025'] = built
        for seq, (name, pt) in enumerate(cases.items()):
            with self.subTest(name=name):
                self.assertEqual(rx.open(seal(k, seq, h(pt))).kind, 'denied')
                self.assertEqual(rx.drops, seq)
                self.assertEqual(rx.open(seal(k, seq, h(pt))).code, 'GH_FRAME_REPLAY')

    def test_seq_256_and_its_noncanonical_piv(self) -> None:
        k = direction_keys(self.keys(), 'p2g')
        self.assertEqual(frame_nonce(k.iv, 256).hex(), X['pub_seq256']['nonce'])
        p = encode_frame_payload({'type': 'pub', 'topic': self.I['pub_topic'], 'body': self.I['pub_body'].encode()})
        self.assertEqual(seal(k, 256, p).hex(), X['pub_seq256']['frame'])
        rx = FrameReceiver(k, 'p2g')
        self.assertEqual(rx.open(h(X['pub_seq256_noncanonical_piv_must_drop'])).code, 'GH_FRAME_PIV')
        r = rx.open(h(X['pub_seq256']['frame']))
        self.assertEqual((r.kind, r.seq), ('frame', 256))

    def test_piv_encodings(self) -> None:
        for seq, piv in X['piv'].items():
            self.assertEqual(encode_piv(int(seq)).hex(), piv)
            self.assertEqual(decode_piv(h(piv)), int(seq))
        for piv in X['piv_invalid']:
            with self.assertRaises(ProtocolError) as caught:
                decode_piv(h(piv))
            self.assertEqual(caught.exception.code, 'GH_FRAME_PIV')


class V2Framing(unittest.TestCase):
    def test_reassembly_bound_is_1280_on_v2(self) -> None:
        message = bytes(V2_MAX)
        r = Reassembler(V2_MAX)
        out = [m for m in (r.push(c) for c in frame(message, 23, max_message=V2_MAX)) if m is not None]
        self.assertEqual(out, [message])
        r = Reassembler(V2_MAX)
        with self.assertRaises(FrameError) as caught:
            for c in frame(message + b'\x00', 23, max_message=V2_MAX + 1):
                r.push(c)
        self.assertEqual(caught.exception.code, 'GH_BLE_FRAME_OVERSIZE')
        with self.assertRaises(FrameError):
            frame(message + b'\x00', 23, max_message=V2_MAX)


if __name__ == '__main__':
    unittest.main()
