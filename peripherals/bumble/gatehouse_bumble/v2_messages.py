"""Protocol v2 messages at the peripheral (protocol-v2): the size bounds and frame constants, the
v2 field and map checks, the always-tagged COSE_Sign1, and the challenge, hello, grant, welcome,
reject and command decoders. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from . import cbor
from .cbor import Tag
from .fields import check_keys, ProtocolError, byte_string as _bytes, ident as _id, text as _text, uint as _uint
from .protocol import Sign1, reject_fields, public_key_problem, sign1_elements, sign1_kid

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

def decode_map(payload: bytes, max_bytes: int = V1_MAX) -> dict[int, Any]:
    m = cbor.decode(payload, frozenset(), max_bytes)
    if not isinstance(m, dict):
        raise ProtocolError('GH_MSG_NOT_MAP', 'payload is not a map')
    return m


M = TypeVar('M')


def kid_bound(s: Sign1, message: M, field: str, what: str) -> M:
    """`message`, once its COSE kid is its own `field` (a hello's dev, a welcome's gw)."""
    if s.kid != getattr(message, field):
        raise ProtocolError('GH_MSG_KID_MISMATCH', f'{what} kid is not its {field}')
    return message


def typed_map(m: dict[int, Any], type_: str, version: int, required: set[int], optional: set[int] = frozenset()) -> dict[int, Any]:
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
    check_keys(m, required, optional)
    return m


def topic_field(m: dict[int, Any], k: int) -> str:
    t = _text(m, k)
    if not 1 <= len(t.encode('utf-8')) <= 128 or any(c in t for c in '+#\x00'):
        raise ProtocolError('GH_MSG_BAD_TOPIC', 'a topic name is 1-128 bytes of UTF-8 without wildcards or NUL')
    return t


def body_field(m: dict[int, Any], k: int, limit: int) -> bytes:
    b = _bytes(m, k)
    if len(b) > limit:
        raise ProtocolError('GH_MSG_BODY_TOO_LARGE', f'body of {len(b)} bytes is over {limit}')
    return b


def seq_list_field(m: dict[int, Any], k: int) -> list[int]:
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
    protected, payload, signature = sign1_elements(item.value)
    header = cbor.decode(protected, frozenset(), V1_MAX)
    if not isinstance(header, dict) or set(header) != {1, 4}:
        raise ProtocolError('GH_COSE_HEADER', 'protected header is not exactly {alg, kid}')
    if header[1] != ALG_EDDSA:
        raise ProtocolError('GH_COSE_UNSUPPORTED_ALG', f'alg {header[1]!r}')
    return Sign1(protected, sign1_kid(header, signature), payload, signature)


# --- messages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChallengeV2:
    dev: str
    gn: bytes
    gw: str
    ge: bytes


def decode_challenge_v2(data: bytes) -> ChallengeV2:
    m = typed_map(decode_map(data), 'challenge', 2, {1, 2, 3, 5, 6, 17})
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
    m = typed_map(decode_map(s.payload), 'hello', 2, {1, 2, 3, 4, 5, 6, 17, 18})
    h = HelloV2(dev=_id(m, 3), pn=_bytes(m, 4, 16), gn=_bytes(m, 5, 16), gw=_id(m, 6), ge=_bytes(m, 17, 32), pe=_bytes(m, 18, 32), signed=s)
    return kid_bound(s, h, 'dev', 'hello')


@dataclass(frozen=True)
class Grant:
    dev: str
    gw: str
    hh: bytes
    spk: bytes
    iat: int
    life: int


def grant_payload(m: dict[int, Any]) -> Grant:
    typed_map(m, 'grant', 2, {1, 2, 3, 6, 7, 9, 11, 25})
    g = Grant(dev=_id(m, 3), gw=_id(m, 6), hh=_bytes(m, 7, 32), spk=_bytes(m, 9, 32), iat=_uint(m, 11), life=_uint(m, 25))
    if public_key_problem(g.spk) is not None:
        raise ProtocolError('GH_MSG_BAD_KEY', f'spk: {public_key_problem(g.spk)}')
    return g


def parse_grant(data: bytes) -> tuple[Sign1, Grant]:
    s = parse_sign1_v2(data)
    return s, grant_payload(decode_map(s.payload))


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
    m = typed_map(decode_map(s.payload, V2_MAX), 'welcome', 2, {1, 2, 3, 6, 7, 25}, {8, 19, 27})
    shape = {k for k in (8, 19, 27) if k in m}
    if shape not in ({19}, {8, 27}):
        raise ProtocolError('GH_MSG_WELCOME_SHAPE', 'a welcome carries exactly one of {19} or {8, 27}')
    w = WelcomeV2(dev=_id(m, 3), gw=_id(m, 6), hh=_bytes(m, 7, 32), life=_uint(m, 25),
                  grant=_bytes(m, 19) if 19 in m else None, cred=_bytes(m, 8) if 8 in m else None,
                  lease=_bytes(m, 27) if 27 in m else None, signed=s)
    return kid_bound(s, w, 'gw', 'welcome')


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
    m = typed_map(decode_map(payload), 'reject', 2, {1, 2, 3, 13}, {7, 16})
    dev, reason, retry = reject_fields(m, ' (the bye reasons are for bye only)')
    return RejectV2(dev=dev, reason=reason, retry=retry, signed=signed)


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
    typed_map(m, 'command', 2, {1, 2, 3, 7, 11, 12, 21, 22, 23})
    c = Command(dev=_id(m, 3), hh=_bytes(m, 7, 32), cid=_uint(m, 23), topic=topic_field(m, 21),
                body=body_field(m, 22, COMMAND_BODY_MAX), iat=_uint(m, 11), exp=_uint(m, 12))
    if c.exp <= c.iat:
        raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat')
    return c


def parse_command(data: bytes) -> tuple[Sign1, Command]:
    if len(data) > COMMAND_MAX:
        raise ProtocolError('GH_MSG_TOO_LARGE', f'a command of {len(data)} bytes is over {COMMAND_MAX}')
    s = parse_sign1_v2(data, COMMAND_MAX)
    return s, _command_payload(decode_map(s.payload, COMMAND_MAX))


def down_message_type(data: bytes) -> str:
    """What the gateway sent on the v2 characteristic: a map (challenge, unsigned reject), tag 18
    (welcome, signed reject) or tag 16 (a frame)."""
    if not data:
        raise ProtocolError('GH_MSG_EMPTY', 'empty message')
    if data[0] == 0xD0:
        return 'frame'
    if data[0] == 0xD2:
        payload = parse_sign1_v2(data, V2_MAX).payload
        m = decode_map(payload, V2_MAX)
    elif data[0] >> 5 == 5:
        m = decode_map(data)
    else:
        raise ProtocolError('GH_MSG_NOT_A_MESSAGE', 'neither a map, tag 18 nor tag 16')
    if not isinstance(m.get(1), str):
        raise ProtocolError('GH_MSG_NOT_MAP', 'not a typed message')
    return m[1]
