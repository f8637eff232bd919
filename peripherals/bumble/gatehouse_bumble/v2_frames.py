"""Protocol v2 frames (protocol-v2): COSE_Encrypt0 with AES-CCM-16-64-128, the piv, nonce and AAD
rules, the frame plaintexts of each direction, the 64-wide replay window, and one direction's
sender and receiver (dropping, and counting, what the page says to drop). Pure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from . import cbor
from .cbor import CborError, Tag
from .fields import check_keys, ProtocolError, byte_string as _bytes, text as _text, uint as _uint
from .v2_keys import SessionKeys
from .v2_messages import (
    BODY_MAX, BYE_REASONS, COSE_ENCRYPT0_TAG, G2P_TYPES, P2G_TYPES, PLAINTEXT_MAX, PROTECTED_FRAME, SEQ_MAX, STATUSES, V2_MAX,
    WINDOW, body_field, decode_map, seq_list_field, topic_field,
)

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
    m = decode_map(plaintext, PLAINTEXT_MAX)
    t = m.get(1)
    if not isinstance(t, str):
        raise ProtocolError('GH_MSG_FIELD_TYPE' if 1 in m else 'GH_MSG_MISSING_FIELD', 'type')
    if t not in FRAME_FIELDS:
        raise ProtocolError('GH_MSG_UNKNOWN_TYPE', f'no frame type {t!r}')
    if t not in (P2G_TYPES if direction == 'p2g' else G2P_TYPES):
        raise ProtocolError('GH_FRAME_WRONG_DIRECTION', f'a {t!r} frame does not travel {direction}')
    required, optional = FRAME_FIELDS[t]
    check_keys(m, required, optional)
    out: dict[str, Any] = {'type': t}
    if t in ('pub', 'msg'):
        out.update(topic=topic_field(m, 21), body=body_field(m, 22, BODY_MAX))
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
        lists = {name: seq_list_field(m, k) for name, k in (('denied', 28), ('busy', 29), ('lost', 31)) if k in m}
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
