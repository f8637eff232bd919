"""The peripheral side of Gatehouse protocol v2, written from the protocol page (protocol-v2).

What a v2 peripheral does on BLE: decode the v2 challenge (with the gateway's ephemeral `ge`),
answer a tagged hello carrying a fresh X25519 ephemeral `pe`, check the welcome (online: the
backend's grant; offline: credential + lease, only where its setting allows), derive the session
keys (HKDF-SHA-256 over Z with salt hh), and then seal and open COSE_Encrypt0 frames
(AES-CCM-16-64-128) with the piv/nonce/AAD rules and a 64-wide replay window, checking relayed
commands against the pinned backend keys. The gateway's hello checks are here too (a relay test
and the vectors use them). Pure: no I/O; the clock and the random source are passed in.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import cbor
from .cbor import CborError, Tag
from .protocol import ID_RE, REASONS, ProtocolError, Sign1, public_key_problem, sign1, verify_sign1

COSE_SIGN1_TAG = 18
COSE_ENCRYPT0_TAG = 16
ALG_EDDSA = -8
ALG_AES_CCM_16_64_128 = 10
PROTECTED_FRAME = bytes.fromhex('a1010a')  # {1: 10}
V1_MAX = 1024  # challenge, hello, reject, grant, lease, gateway credential
V2_MAX = 1280  # a v2 welcome, a frame, the BLE reassembly bound on the v2 characteristic
PLAINTEXT_MAX = 1264
COMMAND_MAX = 1200
COMMAND_BODY_MAX = 800
BODY_MAX = 1024
SEQ_MAX = 2**40 - 1
WINDOW = 64
MAX_DROPS = 16
DEFAULT_MAX_LIFE = 86_400
BYE_REASONS = frozenset({'expired', 'idle', 'replaced', 'shutdown', 'revoked', 'malformed'})
STATUSES = frozenset({'done', 'failed', 'refused'})
P2G_TYPES = frozenset({'pub', 'ack', 'ping', 'bye'})
G2P_TYPES = frozenset({'receipt', 'msg', 'cmd', 'ping', 'bye'})


# --- decoding helpers -------------------------------------------------------------------------

def _map(payload: bytes, max_bytes: int = V1_MAX) -> dict[int, Any]:
    m = cbor.decode(payload, frozenset(), max_bytes)
    if not isinstance(m, dict):
        raise ProtocolError('GH_MSG_NOT_MAP', 'payload is not a map')
    return m


def _typed(m: dict[int, Any], type_: str, version: int, required: set[int], optional: set[int] = frozenset()) -> dict[int, Any]:
    """type, then version (a message of the other version is `unsupported-version` whatever its
    keys), then unknown keys, then missing keys."""
    if not isinstance(m.get(1), str):
        raise ProtocolError('GH_MSG_FIELD_TYPE' if 1 in m else 'GH_MSG_MISSING_FIELD', 'type')
    if m[1] != type_:
        raise ProtocolError('GH_MSG_WRONG_TYPE', f'a {m[1]!r} message, not {type_!r}')
    if 2 not in m:
        raise ProtocolError('GH_MSG_MISSING_FIELD', 'missing key 2')
    v = m[2]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ProtocolError('GH_MSG_FIELD_TYPE', 'version is not an unsigned integer')
    if v != version:
        raise ProtocolError('GH_MSG_UNSUPPORTED_VERSION', f'version {v}, expected {version}')
    for k in m:
        if k not in required and k not in optional:
            raise ProtocolError('GH_MSG_UNKNOWN_FIELD', f'unknown key {k!r}')
    for k in required:
        if k not in m:
            raise ProtocolError('GH_MSG_MISSING_FIELD', f'missing key {k}')
    return m


def _text(m: dict[int, Any], k: int) -> str:
    if not isinstance(m[k], str):
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not a text string')
    return m[k]


def _bytes(m: dict[int, Any], k: int, length: int | None = None) -> bytes:
    if not isinstance(m[k], bytes):
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not a byte string')
    if length is not None and len(m[k]) != length:
        raise ProtocolError('GH_MSG_FIELD_LENGTH', f'key {k} is {len(m[k])} bytes, not {length}')
    return m[k]


def _uint(m: dict[int, Any], k: int) -> int:
    v = m[k]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not an unsigned integer')
    return v


def _id(m: dict[int, Any], k: int) -> str:
    v = _text(m, k)
    if not ID_RE.match(v):
        raise ProtocolError('GH_MSG_BAD_ID', f'key {k} is not a valid id')
    return v


def _topic(m: dict[int, Any], k: int) -> str:
    t = _text(m, k)
    if not 1 <= len(t.encode('utf-8')) <= 128 or any(c in t for c in '+#\x00'):
        raise ProtocolError('GH_MSG_BAD_TOPIC', 'a topic name is 1-128 bytes of UTF-8 without wildcards or NUL')
    return t


def _body(m: dict[int, Any], k: int, limit: int) -> bytes:
    b = _bytes(m, k)
    if len(b) > limit:
        raise ProtocolError('GH_MSG_BODY_TOO_LARGE', f'body of {len(b)} bytes is over {limit}')
    return b


def _seq_list(m: dict[int, Any], k: int) -> list[int]:
    v = m[k]
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in v):
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not an array of unsigned integers')
    if any(b <= a for a, b in zip(v, v[1:])):
        raise ProtocolError('GH_MSG_BAD_SEQ_LIST', f'key {k} is not strictly increasing')
    return v


# --- COSE_Sign1, v2: always tagged ------------------------------------------------------------

def parse_sign1_v2(data: bytes, max_bytes: int = V1_MAX) -> Sign1:
    """A tagged COSE_Sign1 with exactly {1: -8, 4: kid} protected and nothing unprotected."""
    item = cbor.decode(data, frozenset({COSE_SIGN1_TAG}), max_bytes)
    if not isinstance(item, Tag):
        raise ProtocolError('GH_MSG_NOT_TAGGED', 'a v2 COSE object is always tagged (18)')
    item = item.value
    if not isinstance(item, list) or len(item) != 4:
        raise ProtocolError('GH_COSE_STRUCTURE', 'not a four-element COSE_Sign1')
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise ProtocolError('GH_COSE_STRUCTURE', 'COSE_Sign1 element of the wrong type')
    if unprotected:
        raise ProtocolError('GH_COSE_HEADER', 'unprotected header not empty')
    header = cbor.decode(protected, frozenset(), V1_MAX)
    if not isinstance(header, dict) or set(header) != {1, 4}:
        raise ProtocolError('GH_COSE_HEADER', 'protected header is not exactly {alg, kid}')
    if header[1] != ALG_EDDSA:
        raise ProtocolError('GH_COSE_UNSUPPORTED_ALG', f'alg {header[1]!r}')
    if not isinstance(header[4], bytes):
        raise ProtocolError('GH_COSE_BAD_KID', 'kid is not a byte string')
    try:
        kid = header[4].decode('utf-8')
    except UnicodeDecodeError as e:
        raise ProtocolError('GH_COSE_BAD_KID', 'kid is not UTF-8') from e
    if len(signature) != 64:
        raise ProtocolError('GH_COSE_SIGNATURE_LENGTH', f'signature of {len(signature)} bytes')
    return Sign1(protected, kid, payload, signature)


# --- messages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChallengeV2:
    dev: str
    gn: bytes
    gw: str
    ge: bytes


def decode_challenge_v2(data: bytes) -> ChallengeV2:
    m = _typed(_map(data), 'challenge', 2, {1, 2, 3, 5, 6, 17})
    return ChallengeV2(dev=_id(m, 3), gn=_bytes(m, 5, 16), gw=_id(m, 6), ge=_bytes(m, 17, 32))


def encode_challenge_v2(c: ChallengeV2) -> bytes:
    return cbor.encode({1: 'challenge', 2: 2, 3: c.dev, 5: c.gn, 6: c.gw, 17: c.ge})


@dataclass(frozen=True)
class HelloV2:
    dev: str
    pn: bytes
    gn: bytes
    gw: str
    ge: bytes
    pe: bytes
    signed: Sign1


def parse_hello_v2(data: bytes) -> HelloV2:
    s = parse_sign1_v2(data)
    m = _typed(_map(s.payload), 'hello', 2, {1, 2, 3, 4, 5, 6, 17, 18})
    h = HelloV2(dev=_id(m, 3), pn=_bytes(m, 4, 16), gn=_bytes(m, 5, 16), gw=_id(m, 6), ge=_bytes(m, 17, 32), pe=_bytes(m, 18, 32), signed=s)
    if s.kid != h.dev:
        raise ProtocolError('GH_MSG_KID_MISMATCH', 'hello kid is not its dev')
    return h


@dataclass(frozen=True)
class Grant:
    dev: str
    gw: str
    hh: bytes
    spk: bytes
    iat: int
    life: int


def _grant_payload(m: dict[int, Any]) -> Grant:
    _typed(m, 'grant', 2, {1, 2, 3, 6, 7, 9, 11, 25})
    g = Grant(dev=_id(m, 3), gw=_id(m, 6), hh=_bytes(m, 7, 32), spk=_bytes(m, 9, 32), iat=_uint(m, 11), life=_uint(m, 25))
    if public_key_problem(g.spk) is not None:
        raise ProtocolError('GH_MSG_BAD_KEY', f'spk: {public_key_problem(g.spk)}')
    return g


def parse_grant(data: bytes) -> tuple[Sign1, Grant]:
    s = parse_sign1_v2(data)
    return s, _grant_payload(_map(s.payload))


@dataclass(frozen=True)
class WelcomeV2:
    dev: str
    gw: str
    hh: bytes
    life: int
    grant: bytes | None
    cred: bytes | None
    lease: bytes | None
    signed: Sign1


def parse_welcome_v2(data: bytes) -> WelcomeV2:
    s = parse_sign1_v2(data, V2_MAX)
    m = _typed(_map(s.payload, V2_MAX), 'welcome', 2, {1, 2, 3, 6, 7, 25}, {8, 19, 27})
    shape = {k for k in (8, 19, 27) if k in m}
    if shape not in ({19}, {8, 27}):
        raise ProtocolError('GH_MSG_WELCOME_SHAPE', 'a welcome carries exactly one of {19} or {8, 27}')
    w = WelcomeV2(dev=_id(m, 3), gw=_id(m, 6), hh=_bytes(m, 7, 32), life=_uint(m, 25),
                  grant=_bytes(m, 19) if 19 in m else None, cred=_bytes(m, 8) if 8 in m else None,
                  lease=_bytes(m, 27) if 27 in m else None, signed=s)
    if s.kid != w.gw:
        raise ProtocolError('GH_MSG_KID_MISMATCH', 'welcome kid is not its gw')
    return w


@dataclass(frozen=True)
class RejectV2:
    dev: str
    reason: str
    retry: int | None
    signed: bool


def decode_reject_v2(data: bytes) -> RejectV2:
    """A reject, signed (tagged) or not. Advisory: its signature is not checked."""
    signed = data[:1] == b'\xd2'
    payload = parse_sign1_v2(data).payload if signed else data
    m = _typed(_map(payload), 'reject', 2, {1, 2, 3, 13}, {7, 16})
    reason = _text(m, 13)
    if reason not in REASONS:
        raise ProtocolError('GH_MSG_BAD_REASON', f'reason {reason!r} (the bye reasons are for bye only)')
    if 7 in m:
        _bytes(m, 7, 32)
    return RejectV2(dev=_id(m, 3), reason=reason, retry=_uint(m, 16) if 16 in m else None, signed=signed)


@dataclass(frozen=True)
class Command:
    dev: str
    hh: bytes
    cid: int
    topic: str
    body: bytes
    iat: int
    exp: int


def _command_payload(m: dict[int, Any]) -> Command:
    _typed(m, 'command', 2, {1, 2, 3, 7, 11, 12, 21, 22, 23})
    c = Command(dev=_id(m, 3), hh=_bytes(m, 7, 32), cid=_uint(m, 23), topic=_topic(m, 21),
                body=_body(m, 22, COMMAND_BODY_MAX), iat=_uint(m, 11), exp=_uint(m, 12))
    if c.exp <= c.iat:
        raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat')
    return c


def parse_command(data: bytes) -> tuple[Sign1, Command]:
    if len(data) > COMMAND_MAX:
        raise ProtocolError('GH_MSG_TOO_LARGE', f'a command of {len(data)} bytes is over {COMMAND_MAX}')
    s = parse_sign1_v2(data, COMMAND_MAX)
    return s, _command_payload(_map(s.payload, COMMAND_MAX))


def down_message_type(data: bytes) -> str:
    """What the gateway sent on the v2 characteristic: a map (challenge, unsigned reject), tag 18
    (welcome, signed reject) or tag 16 (a frame)."""
    if not data:
        raise ProtocolError('GH_MSG_EMPTY', 'empty message')
    if data[0] == 0xD0:
        return 'frame'
    if data[0] == 0xD2:
        payload = parse_sign1_v2(data, V2_MAX).payload
        m = _map(payload, V2_MAX)
    elif data[0] >> 5 == 5:
        m = _map(data)
    else:
        raise ProtocolError('GH_MSG_NOT_A_MESSAGE', 'neither a map, tag 18 nor tag 16')
    if not isinstance(m.get(1), str):
        raise ProtocolError('GH_MSG_NOT_MAP', 'not a typed message')
    return m[1]


# --- X25519 and the key schedule --------------------------------------------------------------

def x25519_private(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def x25519_public(priv: X25519PrivateKey) -> bytes:
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_shared(priv: X25519PrivateKey, peer: bytes) -> bytes:
    """Z = X25519(priv, peer); all zero (a small-order peer key, RFC 7748 §6.1) is refused."""
    if len(peer) != 32:
        raise ProtocolError('GH_X25519_BAD_KEY', 'an X25519 public key is 32 bytes')
    try:
        z = priv.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError as e:  # OpenSSL refuses an all-zero result itself
        raise ProtocolError('GH_X25519_ALL_ZERO', 'the shared secret is all zero') from e
    if not any(z):
        raise ProtocolError('GH_X25519_ALL_ZERO', 'the shared secret is all zero')
    return z


LABELS = ('p2g key', 'p2g iv', 'g2p key', 'g2p iv', 'sid')


def kdf_info(label: str, dev: str, gw: str) -> bytes:
    return cbor.encode(['gatehouse v2', label, dev, gw])


@dataclass(frozen=True)
class SessionKeys:
    z: bytes
    prk: bytes
    info: dict[str, bytes]
    k_up: bytes
    iv_up: bytes
    k_dn: bytes
    iv_dn: bytes
    sid: bytes


def derive_keys(z: bytes, hh: bytes, dev: str, gw: str) -> SessionKeys:
    prk = hmac.new(hh, z, hashlib.sha256).digest()  # HKDF-Extract(salt = hh, IKM = Z)
    info = {label: kdf_info(label, dev, gw) for label in LABELS}

    def okm(label: str, length: int) -> bytes:
        return HKDFExpand(hashes.SHA256(), length, info[label]).derive(prk)

    return SessionKeys(z=z, prk=prk, info=info, k_up=okm('p2g key', 16), iv_up=okm('p2g iv', 13),
                       k_dn=okm('g2p key', 16), iv_dn=okm('g2p iv', 13), sid=okm('sid', 8))


# --- frames -----------------------------------------------------------------------------------

def encode_piv(seq: int) -> bytes:
    if not 0 <= seq <= SEQ_MAX:
        raise ProtocolError('GH_FRAME_SEQ_RANGE', f'seq {seq} outside 0..2^40-1')
    return seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), 'big')


def decode_piv(piv: Any) -> int:
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= 5 or (len(piv) > 1 and piv[0] == 0):
        raise ProtocolError('GH_FRAME_PIV', 'piv is 1-5 bytes, shortest big-endian')
    return int.from_bytes(piv, 'big')


def frame_nonce(iv: bytes, seq: int) -> bytes:
    return bytes(a ^ b for a, b in zip(iv, seq.to_bytes(13, 'big')))


def frame_aad(sid: bytes) -> bytes:
    return cbor.encode(['Encrypt0', PROTECTED_FRAME, sid])


@dataclass(frozen=True)
class DirectionKeys:
    key: bytes
    iv: bytes
    sid: bytes


def direction_keys(keys: SessionKeys, direction: str) -> DirectionKeys:
    if direction == 'p2g':
        return DirectionKeys(keys.k_up, keys.iv_up, keys.sid)
    return DirectionKeys(keys.k_dn, keys.iv_dn, keys.sid)


def seal(k: DirectionKeys, seq: int, plaintext: bytes) -> bytes:
    if len(plaintext) > PLAINTEXT_MAX:
        raise ProtocolError('GH_FRAME_PLAINTEXT_TOO_LARGE', f'{len(plaintext)} bytes')
    piv = encode_piv(seq)
    ct = AESCCM(k.key, tag_length=8).encrypt(frame_nonce(k.iv, seq), plaintext, frame_aad(k.sid))
    return cbor.encode(Tag(COSE_ENCRYPT0_TAG, [PROTECTED_FRAME, {6: piv}, ct]))


def encode_frame_payload(p: dict[str, Any]) -> bytes:
    """A frame plaintext from {'type': …, field: …}; byte fields as bytes."""
    keys = {'topic': 21, 'body': 22, 'mid': 30, 'cid': 23, 'status': 24, 'reason': 13, 'upto': 20,
            'denied': 28, 'busy': 29, 'retry': 16, 'lost': 31, 'cmd': 26}
    m: dict[int, Any] = {1: p['type']}
    for name, value in p.items():
        if name != 'type' and value is not None:
            m[keys[name]] = value
    return cbor.encode(m)


FRAME_FIELDS = {
    'pub': ({1, 21, 22}, {30}), 'ack': ({1, 23, 24}, set()), 'ping': ({1}, set()), 'bye': ({1}, {13}),
    'receipt': ({1, 20}, {16, 28, 29, 31}), 'msg': ({1, 21, 22}, set()), 'cmd': ({1, 26}, set()),
}


def decode_frame_payload(plaintext: bytes, direction: str) -> dict[str, Any]:
    """A frame plaintext under v1's decoder rules; the frame types of `direction` only."""
    if len(plaintext) > PLAINTEXT_MAX:
        raise ProtocolError('GH_FRAME_PLAINTEXT_TOO_LARGE', f'{len(plaintext)} bytes')
    m = _map(plaintext, PLAINTEXT_MAX)
    t = m.get(1)
    if not isinstance(t, str):
        raise ProtocolError('GH_MSG_FIELD_TYPE' if 1 in m else 'GH_MSG_MISSING_FIELD', 'type')
    if t not in FRAME_FIELDS:
        raise ProtocolError('GH_MSG_UNKNOWN_TYPE', f'no frame type {t!r}')
    if t not in (P2G_TYPES if direction == 'p2g' else G2P_TYPES):
        raise ProtocolError('GH_FRAME_WRONG_DIRECTION', f'a {t!r} frame does not travel {direction}')
    required, optional = FRAME_FIELDS[t]
    for k in m:
        if k not in required and k not in optional:
            raise ProtocolError('GH_MSG_UNKNOWN_FIELD', f'unknown key {k!r}')
    for k in required:
        if k not in m:
            raise ProtocolError('GH_MSG_MISSING_FIELD', f'missing key {k}')
    out: dict[str, Any] = {'type': t}
    if t in ('pub', 'msg'):
        out.update(topic=_topic(m, 21), body=_body(m, 22, BODY_MAX))
        if 30 in m:
            out['mid'] = _uint(m, 30)
    elif t == 'ack':
        out.update(cid=_uint(m, 23), status=_text(m, 24))
        if out['status'] not in STATUSES:
            raise ProtocolError('GH_MSG_BAD_STATUS', f'status {out["status"]!r}')
    elif t == 'bye' and 13 in m:
        out['reason'] = _text(m, 13)
        if out['reason'] not in BYE_REASONS:
            raise ProtocolError('GH_MSG_BAD_REASON', f'bye reason {out["reason"]!r}')
    elif t == 'cmd':
        out['cmd'] = _bytes(m, 26)
    elif t == 'receipt':
        upto = _uint(m, 20)
        out['upto'] = upto
        lists = {name: _seq_list(m, k) for name, k in (('denied', 28), ('busy', 29), ('lost', 31)) if k in m}
        if ('busy' in lists) != (16 in m):
            raise ProtocolError('GH_MSG_BAD_RECEIPT', 'retry goes with busy, and only with it')
        if 16 in m:
            out['retry'] = _uint(m, 16)
        seen: set[int] = set()
        for name, seqs in lists.items():
            if seen.intersection(seqs):
                raise ProtocolError('GH_MSG_BAD_RECEIPT', 'the lists are not disjoint')
            if seqs and seqs[-1] > upto:
                raise ProtocolError('GH_MSG_BAD_RECEIPT', f'{name} names a seq above upto')
            seen.update(seqs)
            out[name] = seqs
    return out


class ReplayWindow:
    """Seqs received, 64 wide: below highest-63 everything counts as received."""

    def __init__(self) -> None:
        self.highest = -1
        self.bits = 0  # bit i: highest - i received

    def check(self, seq: int) -> str | None:
        if self.highest < 0 or seq > self.highest:
            return None
        if self.highest - seq >= WINDOW:
            return 'GH_FRAME_TOO_OLD'
        return 'GH_FRAME_REPLAY' if self.bits >> (self.highest - seq) & 1 else None

    def mark(self, seq: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest if self.highest >= 0 else WINDOW
            self.bits = ((self.bits << shift) | 1) & ((1 << WINDOW) - 1)
            self.highest = seq
        else:
            self.bits |= 1 << (self.highest - seq)


@dataclass(frozen=True)
class Opened:
    kind: str  # 'frame', 'denied' or 'drop'
    code: str | None = None
    seq: int | None = None
    payload: dict[str, Any] | None = None


class FrameReceiver:
    """One direction of one session, receiving: drops (counted) what the page says to drop."""

    def __init__(self, keys: DirectionKeys, direction: str) -> None:
        self.keys = keys
        self.direction = direction
        self.window = ReplayWindow()
        self.drops = 0
        self.aead = AESCCM(keys.key, tag_length=8)

    def _drop(self, code: str) -> Opened:
        self.drops += 1
        return Opened('drop', code)

    def open(self, data: bytes) -> Opened:
        if len(data) > V2_MAX:
            return self._drop('GH_FRAME_TOO_LARGE')
        if data[:1] != b'\xd0':
            return self._drop('GH_FRAME_NOT_TAG16')
        try:
            item = cbor.decode(data, frozenset({COSE_ENCRYPT0_TAG}), V2_MAX)
        except CborError:
            return self._drop('GH_FRAME_NOT_CBOR')
        body = item.value if isinstance(item, Tag) else None
        if not isinstance(body, list) or len(body) != 3 or not isinstance(body[0], bytes) or not isinstance(body[1], dict) or not isinstance(body[2], bytes):
            return self._drop('GH_FRAME_STRUCTURE')
        protected, unprotected, ciphertext = body
        if protected != PROTECTED_FRAME:
            return self._drop('GH_FRAME_PROTECTED')
        if set(unprotected) != {6}:
            return self._drop('GH_FRAME_UNPROTECTED')
        try:
            seq = decode_piv(unprotected[6])
        except ProtocolError as e:
            return self._drop(e.code)
        stale = self.window.check(seq)
        if stale:
            return self._drop(stale)
        try:
            plaintext = self.aead.decrypt(frame_nonce(self.keys.iv, seq), ciphertext, frame_aad(self.keys.sid))
        except (InvalidTag, ValueError):
            return self._drop('GH_FRAME_DECRYPT')
        self.window.mark(seq)  # decrypted: the seq is consumed whatever the plaintext
        try:
            return Opened('frame', seq=seq, payload=decode_frame_payload(plaintext, self.direction))
        except (CborError, ProtocolError) as e:
            return Opened('denied', code=e.code, seq=seq)


class FrameSender:
    def __init__(self, keys: DirectionKeys) -> None:
        self.keys = keys
        self.seq = 0

    def seal(self, payload: dict[str, Any]) -> bytes:
        if self.seq > SEQ_MAX:
            raise ProtocolError('GH_FRAME_SEQ_EXHAUSTED', 'seq would pass 2^40-1: end the session')
        out = seal(self.keys, self.seq, encode_frame_payload(payload))
        self.seq += 1
        return out


# --- the gateway's hello checks (used by the relay test's gateway side and the vectors) ------

def check_hello_v2_at_gateway(hello: HelloV2, gw: str, issued_ge: bytes, ge_private: X25519PrivateKey) -> bytes:
    """hello.gw is this gateway, hello.ge the ge issued with gn, Z not all zero: returns Z."""
    if hello.gw != gw:
        raise ProtocolError('GH_HELLO_GW_MISMATCH', f'hello is for {hello.gw!r}')
    if not hmac.compare_digest(hello.ge, issued_ge):
        raise ProtocolError('GH_HELLO_GE_MISMATCH', 'hello.ge is not the ge issued with this gn')
    return x25519_shared(ge_private, hello.pe)


# --- the peripheral's checks on a v2 welcome --------------------------------------------------

@dataclass(frozen=True)
class WelcomeV2Result:
    ok: bool
    code: str
    detail: str
    check: int = 0
    mode: str | None = None
    gw: str | None = None
    life: int | None = None
    welcome: WelcomeV2 | None = None


def _no(check: int, code: str, detail: str) -> WelcomeV2Result:
    return WelcomeV2Result(False, code, detail, check)


def _signed_by_pinned(data: bytes, what: str, backend_keys: dict[str, bytes], type_: str) -> tuple[str | None, str, dict[int, Any] | None]:
    """(refusal code or None, detail, payload map) for a backend-signed object: structure, kid,
    signature, then type."""
    up = what.upper()
    try:
        s = parse_sign1_v2(data)
    except (CborError, ProtocolError) as e:
        return f'GH_WELCOME_{up}_MALFORMED', f'{what}: {e}', None
    key = backend_keys.get(s.kid)
    if key is None:
        return f'GH_WELCOME_{up}_UNKNOWN_KID', f'{what} kid {s.kid!r} is not pinned', None
    if not verify_sign1(s, key):
        return f'GH_WELCOME_{up}_SIGNATURE', f'{what} does not verify under the pinned key', None
    try:
        m = _map(s.payload)
    except (CborError, ProtocolError) as e:
        return f'GH_WELCOME_{up}_MALFORMED', f'{what} payload: {e}', None
    if m.get(1) != type_:
        return f'GH_WELCOME_{up}_TYPE', f'{what} is a {m.get(1)!r}, not a {type_}', None
    return None, '', m


def check_welcome_v2(welcome: bytes, hello_sent: bytes, dev: str, device_public_key: bytes, backend_keys: dict[str, bytes],
                     now: int | None = None, allow_offline: bool | None = None, max_life: int = DEFAULT_MAX_LIFE) -> WelcomeV2Result:
    """protocol-v2 "Peripheral checks on a v2 welcome", numbered and in the order the page gives."""
    # 1. shape, version, dev, gw of the hello, hh.
    if welcome[:1] != b'\xd2':
        return _no(1, 'GH_WELCOME_NOT_TAGGED', 'a v2 welcome is a tagged COSE_Sign1')
    try:
        w = parse_welcome_v2(welcome)
    except (CborError, ProtocolError) as e:
        code = {'GH_MSG_NOT_TAGGED': 'GH_WELCOME_NOT_TAGGED', 'GH_MSG_UNSUPPORTED_VERSION': 'GH_WELCOME_VERSION',
                'GH_MSG_WELCOME_SHAPE': 'GH_WELCOME_SHAPE'}.get(e.code, 'GH_WELCOME_MALFORMED')
        return _no(1, code, f'welcome: {e}')
    if w.dev != dev:
        return _no(1, 'GH_WELCOME_DEV_MISMATCH', f'welcome is for {w.dev!r}')
    try:
        hello = parse_hello_v2(hello_sent)
    except (CborError, ProtocolError) as e:
        return _no(1, 'GH_WELCOME_HELLO_GW', f'the hello sent does not parse: {e}')
    if w.gw != hello.gw:
        return _no(1, 'GH_WELCOME_HELLO_GW', f'welcome from {w.gw!r}, hello was for {hello.gw!r}')
    hh = hashlib.sha256(hello_sent).digest()
    if not hmac.compare_digest(w.hh, hh):
        return _no(1, 'GH_WELCOME_HELLO_HASH', 'hh is not the hash of the hello sent')
    life = min(w.life, max_life)
    if w.grant is not None:
        # 2. online: the grant.
        code, detail, m = _signed_by_pinned(w.grant, 'grant', backend_keys, 'grant')
        if code is not None or m is None:
            return _no(2, code or 'GH_WELCOME_GRANT_MALFORMED', detail)
        try:
            g = _grant_payload(m)
        except (CborError, ProtocolError) as e:
            return _no(2, 'GH_WELCOME_GRANT_MALFORMED', f'grant payload: {e}')
        if g.dev != dev:
            return _no(2, 'GH_WELCOME_GRANT_DEV', f'grant is for {g.dev!r}')
        if g.gw != w.gw:
            return _no(2, 'GH_WELCOME_GRANT_GW', f'grant is for {g.gw!r}')
        if not hmac.compare_digest(g.hh, hh):
            return _no(2, 'GH_WELCOME_GRANT_HH', "grant.hh is not the hello's hash")
        if not verify_sign1(w.signed, g.spk):
            return _no(2, 'GH_WELCOME_SIGNATURE', 'welcome does not verify under grant.spk')
        return WelcomeV2Result(True, 'ok', 'gateway authorised by the grant', 2, 'online', w.gw, min(life, g.life), w)
    # 3. offline: only where allowed (default: with a clock).
    allowed = allow_offline if allow_offline is not None else now is not None
    if not allowed:
        return _no(3, 'GH_WELCOME_OFFLINE_REFUSED', 'offline welcomes are not accepted here')
    assert w.cred is not None and w.lease is not None
    code, detail, c = _signed_by_pinned(w.cred, 'cred', backend_keys, 'gw-cred')
    if code is not None or c is None:
        return _no(3, code or 'GH_WELCOME_CRED_MALFORMED', detail)
    try:
        _typed(c, 'gw-cred', 1, {1, 2, 6, 9, 10, 11, 12})
        c_gw, spk, c_exp = _id(c, 6), _bytes(c, 9, 32), _uint(c, 12)
        _bytes(c, 10, 32)
        if c_exp <= _uint(c, 11) or public_key_problem(spk) is not None:
            raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat, or a bad spk')
    except (CborError, ProtocolError) as e:
        return _no(3, 'GH_WELCOME_CRED_MALFORMED', f'credential payload: {e}')
    if c_gw != w.gw:
        return _no(3, 'GH_WELCOME_GW_MISMATCH', f'credential is for {c_gw!r}')
    code, detail, lm = _signed_by_pinned(w.lease, 'lease', backend_keys, 'lease')
    if code is not None or lm is None:
        return _no(3, code or 'GH_WELCOME_LEASE_MALFORMED', detail)
    try:
        _typed(lm, 'lease', 1, {1, 2, 3, 6, 11, 12, 14, 15})
        l_dev, l_gw, dpk, l_exp = _id(lm, 3), _id(lm, 6), _bytes(lm, 15, 32), _uint(lm, 12)
        policy = lm[14]
        if not isinstance(policy, dict) or set(policy) != {'pub', 'sub'} or not all(
                isinstance(v, list) and all(isinstance(f, str) for f in v) for v in policy.values()):
            raise ProtocolError('GH_MSG_BAD_POLICY', 'policy is {"pub": [tstr], "sub": [tstr]}')
        if l_exp <= _uint(lm, 11):
            raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat')
    except (CborError, ProtocolError) as e:
        return _no(3, 'GH_WELCOME_LEASE_MALFORMED', f'lease payload: {e}')
    if l_dev != dev:
        return _no(3, 'GH_WELCOME_LEASE_DEV', f'lease is for {l_dev!r}')
    if l_gw != w.gw:
        return _no(3, 'GH_WELCOME_LEASE_GW', f'lease is for {l_gw!r}')
    if not hmac.compare_digest(dpk, device_public_key):
        return _no(3, 'GH_WELCOME_LEASE_DPK', 'lease.dpk is not this device')
    if now is not None:
        if not now < c_exp:
            return _no(3, 'GH_WELCOME_EXPIRED', f'credential expired at {c_exp}')
        if not now < l_exp:
            return _no(3, 'GH_WELCOME_LEASE_EXPIRED', f'lease expired at {l_exp}')
        life = min(life, l_exp - now, c_exp - now)
    if not verify_sign1(w.signed, spk):
        return _no(3, 'GH_WELCOME_SIGNATURE', "welcome does not verify under the credential's spk")
    return WelcomeV2Result(True, 'ok', 'gateway authenticated offline', 3, 'offline', w.gw, life, w)


# --- commands ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommandVerdict:
    action: str  # 'execute', 'repeat' or 'refuse'
    cid: int
    status: str | None = None
    code: str | None = None
    command: Command | None = None
    detail: str = ''


def _cid_of(data: bytes) -> int:
    """The command's cid where it decodes to a uint (for a `refused` ack), else 0."""
    try:
        item = cbor.decode(data, frozenset({COSE_SIGN1_TAG}), COMMAND_MAX)
        if isinstance(item, Tag):
            item = item.value
        m = cbor.decode(item[2], frozenset(), COMMAND_MAX)
        cid = m.get(23)
        return cid if isinstance(cid, int) and not isinstance(cid, bool) and cid >= 0 else 0
    except Exception:  # noqa: BLE001 - any shape at all: no cid
        return 0


def check_command(data: bytes, dev: str, hh: bytes, backend_keys: dict[str, bytes], last: tuple[int, str] | None,
                  now: int | None = None) -> CommandVerdict:
    """Act on a command only if signed by a pinned pk_S, for this device and session, with a cid
    above the last acted on (and, with a clock, before exp); the last cid again: its stored status."""
    try:
        s, c = parse_command(data)
    except (CborError, ProtocolError) as e:
        return CommandVerdict('refuse', _cid_of(data), code='GH_COMMAND_MALFORMED', detail=str(e))
    key = backend_keys.get(s.kid)
    if key is None:
        return CommandVerdict('refuse', c.cid, code='GH_COMMAND_UNKNOWN_KID')
    if not verify_sign1(s, key):
        return CommandVerdict('refuse', c.cid, code='GH_COMMAND_SIGNATURE')
    if c.dev != dev:
        return CommandVerdict('refuse', c.cid, code='GH_COMMAND_DEV')
    if last is not None and c.cid == last[0]:
        return CommandVerdict('repeat', c.cid, status=last[1], command=c)
    if not hmac.compare_digest(c.hh, hh):
        return CommandVerdict('refuse', c.cid, code='GH_COMMAND_HH')
    if last is not None and c.cid <= last[0]:
        return CommandVerdict('refuse', c.cid, code='GH_COMMAND_CID_OLD')
    if now is not None and not now < c.exp:
        return CommandVerdict('refuse', c.cid, code='GH_COMMAND_EXPIRED')
    return CommandVerdict('execute', c.cid, command=c)


# --- the peripheral ---------------------------------------------------------------------------

@dataclass
class Session:
    """A welcomed v2 session at the peripheral: its keys, both directions, the command state."""

    dev: str
    gw: str
    hh: bytes
    mode: str
    life: int
    keys: SessionKeys
    sender: FrameSender
    receiver: FrameReceiver
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> payload, until a receipt settles it
    settled: list[int] = field(default_factory=list)
    ended: str | None = None

    @property
    def sid(self) -> bytes:
        return self.keys.sid


class PeripheralV2:
    """One device speaking v2: its id, Ed25519 key (32-byte seed), the pinned backend keys, its
    offline setting and clock. The last command it acted on (cid, status) survives sessions."""

    def __init__(self, dev: str, seed: bytes, backend_keys: dict[str, bytes], clock: Callable[[], int] | None = None,
                 random: Callable[[int], bytes] = os.urandom, allow_offline: bool | None = None, max_life: int = DEFAULT_MAX_LIFE) -> None:
        if not ID_RE.match(dev):
            raise ProtocolError('GH_PERIPHERAL_BAD_DEV', 'dev must be 1-64 characters of [A-Za-z0-9._:-]')
        if len(seed) != 32:
            raise ProtocolError('GH_PERIPHERAL_BAD_SEED', 'an Ed25519 seed is 32 bytes')
        self.dev = dev
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.backend_keys = backend_keys
        self.clock = clock
        self.random = random
        self.allow_offline = allow_offline
        self.max_life = max_life
        self.hello_sent: bytes | None = None
        self.pe: X25519PrivateKey | None = None
        self.last_command: tuple[int, str] | None = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def hello(self, challenge_bytes: bytes) -> bytes:
        """Answer a v2 challenge with a fresh pe; the challenge's dev is the link label, ignored."""
        challenge = decode_challenge_v2(challenge_bytes)
        self.pe = x25519_private(self.random(32))
        pn = self.random(16)
        self.hello_sent = sign1({1: 'hello', 2: 2, 3: self.dev, 4: pn, 5: challenge.gn, 6: challenge.gw,
                                 17: challenge.ge, 18: x25519_public(self.pe)}, self.dev, self.key)
        return self.hello_sent

    def abandon(self) -> None:
        """The exchange failed: erase pe."""
        self.pe = None
        self.hello_sent = None

    def welcome(self, data: bytes) -> tuple[WelcomeV2Result, Session | None]:
        """Check a v2 welcome; on success derive the keys (and erase pe)."""
        if self.hello_sent is None or self.pe is None:
            return _no(1, 'GH_WELCOME_HELLO_HASH', 'no hello outstanding'), None
        r = check_welcome_v2(data, self.hello_sent, self.dev, self.public_key, self.backend_keys,
                             self.clock() if self.clock else None, self.allow_offline, self.max_life)
        if not r.ok or r.welcome is None:
            self.abandon()
            return r, None
        try:
            z = x25519_shared(self.pe, parse_hello_v2(self.hello_sent).ge)
        except ProtocolError as e:
            self.abandon()
            return _no(1, e.code, str(e)), None
        keys = derive_keys(z, r.welcome.hh, self.dev, r.gw or '')
        self.abandon()
        assert r.gw is not None and r.mode is not None and r.life is not None
        return r, Session(self.dev, r.gw, r.welcome.hh, r.mode, r.life, keys, FrameSender(direction_keys(keys, 'p2g')),
                          FrameReceiver(direction_keys(keys, 'g2p'), 'g2p'))

    def on_command(self, session: Session, cmd: bytes, act: Callable[[Command], str] = lambda c: 'done') -> CommandVerdict:
        """Check a relayed command; act on it (its status is `act`'s) and remember the outcome."""
        v = check_command(cmd, self.dev, session.hh, self.backend_keys, self.last_command, self.clock() if self.clock else None)
        if v.action == 'execute' and v.command is not None:
            status = act(v.command)
            self.last_command = (v.cid, status)
            return CommandVerdict('execute', v.cid, status=status, command=v.command)
        return v
