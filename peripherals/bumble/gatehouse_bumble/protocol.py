"""The peripheral side of Gatehouse protocol v1, written from the protocol page.

The peripheral decodes a challenge, answers with a COSE_Sign1 hello signed by its Ed25519 key
(kid = dev), remembers the hello bytes exactly as sent, and authenticates the gateway from the
welcome ("Peripheral checks on a welcome"). A reject is advisory. Pure: no I/O; the clock and
the nonce source are passed in.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import cbor
from .cbor import CborError, Tag
from .fields import check_keys, ID_RE, ProtocolError, byte_string as _bytes, ident as _id, text as _text, uint as _uint

COSE_SIGN1_TAG = 18
ALG_EDDSA = -8
MAX_MESSAGE = 1024
REASONS = frozenset({
    'malformed', 'unsupported-version', 'stale-challenge', 'unknown-device', 'bad-signature', 'revoked',
    'not-allowed-here', 'rate-limited', 'busy', 'backend-unavailable', 'internal',
})


def _check_map(m: Any, required: set[int], optional: set[int] = frozenset()) -> dict[int, Any]:
    if not isinstance(m, dict):
        raise ProtocolError('GH_MSG_NOT_MAP', 'payload is not a map')
    check_keys(m, required, optional)
    return m


def _header(m: dict[int, Any], type_: str) -> None:
    t = _text(m, 1)
    if t != type_:
        raise ProtocolError('GH_MSG_WRONG_TYPE', f'a {t!r} message, not {type_!r}')
    if _uint(m, 2) != 1:
        raise ProtocolError('GH_MSG_UNSUPPORTED_VERSION', f'version {m[2]}')


# --- COSE_Sign1 (RFC 9052) -------------------------------------------------------------------

@dataclass(frozen=True)
class Sign1:
    protected: bytes
    kid: str
    payload: bytes
    signature: bytes


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    # RFC 9052 §4.4: ["Signature1", body_protected, external_aad (empty), payload]
    return cbor.encode(['Signature1', protected, b'', payload])


def sign1(payload: dict[int, Any], kid: str, key: Ed25519PrivateKey) -> bytes:
    """Tagged COSE_Sign1, protected {1: -8, 4: kid}, empty unprotected header."""
    protected = cbor.encode({1: ALG_EDDSA, 4: kid.encode('utf-8')})
    body = cbor.encode(payload)
    signature = key.sign(_sig_structure(protected, body))
    return cbor.encode(Tag(COSE_SIGN1_TAG, [protected, {}, body, signature]))


def sign1_elements(item: Any) -> tuple[bytes, bytes, bytes]:
    """(protected, payload, signature) of an untagged COSE_Sign1 array with an empty unprotected header."""
    if not isinstance(item, list) or len(item) != 4:
        raise ProtocolError('GH_COSE_STRUCTURE', 'not a four-element COSE_Sign1')
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise ProtocolError('GH_COSE_STRUCTURE', 'COSE_Sign1 element of the wrong type')
    if unprotected:
        raise ProtocolError('GH_COSE_HEADER', 'unprotected header not empty')
    return protected, payload, signature


def sign1_kid(header: dict[Any, Any], signature: bytes) -> str:
    """The kid of a protected header already checked to be {alg, kid}; the signature is 64 bytes."""
    if not isinstance(header[4], bytes):
        raise ProtocolError('GH_COSE_BAD_KID', 'kid is not a byte string')
    try:
        kid = header[4].decode('utf-8')
    except UnicodeDecodeError as e:
        raise ProtocolError('GH_COSE_BAD_KID', 'kid is not UTF-8') from e
    if len(signature) != 64:
        raise ProtocolError('GH_COSE_SIGNATURE_LENGTH', f'signature of {len(signature)} bytes')
    return kid


def parse_sign1(data: bytes) -> Sign1:
    """A COSE_Sign1 (tagged or not) with exactly {1: -8, 4: kid} protected and nothing unprotected."""
    item = cbor.decode(data, frozenset({COSE_SIGN1_TAG}), MAX_MESSAGE)
    if isinstance(item, Tag):
        item = item.value
    protected, payload, signature = sign1_elements(item)
    header = cbor.decode(protected, frozenset(), MAX_MESSAGE)
    if not isinstance(header, dict):
        raise ProtocolError('GH_COSE_HEADER', 'protected header is not a map')
    if 2 in header:
        raise ProtocolError('GH_COSE_CRIT', 'crit header present')
    if 1 not in header:
        raise ProtocolError('GH_COSE_MISSING_ALG', 'no alg')
    if set(header) != {1, 4}:
        raise ProtocolError('GH_COSE_HEADER', 'protected header is not exactly {alg, kid}')
    if header[1] != ALG_EDDSA:
        raise ProtocolError('GH_COSE_UNSUPPORTED_ALG' if header[1] not in (-7,) else 'GH_MSG_WRONG_ALG', f'alg {header[1]!r}')
    return Sign1(protected, sign1_kid(header, signature), payload, signature)


# Ed25519 public keys refused before any verification: encodings with y >= p, and the points of
# small order (y = 0, 1, p-1 and the two y of the order-8 points), compared with the sign bit
# cleared. OpenSSL's verify accepts them, and a small-order key lets anyone forge a signature.
_P = 2**255 - 19
_SMALL_ORDER_Y = frozenset({
    0, 1, _P - 1,
    int.from_bytes(bytes.fromhex('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'), 'little'),
    int.from_bytes(bytes.fromhex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'), 'little'),
})


def public_key_problem(raw: bytes) -> str | None:
    if len(raw) != 32:
        return 'an Ed25519 public key is 32 bytes'
    y = int.from_bytes(raw, 'little') & ((1 << 255) - 1)
    if y >= _P:
        return 'non-canonical encoding (y >= p)'
    if y in _SMALL_ORDER_Y:
        return 'point of small order'
    return None


def verify_sign1(s: Sign1, public_key: bytes) -> bool:
    if public_key_problem(public_key) is not None:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(s.signature, _sig_structure(s.protected, s.payload))
        return True
    except (InvalidSignature, ValueError):
        return False


# --- messages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    dev: str
    gn: bytes
    gw: str


def decode_challenge(data: bytes) -> Challenge:
    m = cbor.decode(data, frozenset(), MAX_MESSAGE)
    if isinstance(m, dict) and m.get(1) == 'challenge' and isinstance(m.get(2), int) and m[2] != 1:
        # A message of another version is `unsupported-version`, whatever its keys (a v2 challenge has ge).
        raise ProtocolError('GH_MSG_UNSUPPORTED_VERSION', f'version {m[2]}')
    m = _check_map(m, {1, 2, 3, 5, 6})
    _header(m, 'challenge')
    return Challenge(dev=_id(m, 3), gn=_bytes(m, 5, 16), gw=_id(m, 6))


@dataclass(frozen=True)
class Reject:
    dev: str
    reason: str
    retry: int | None
    signed: bool


def reject_fields(m: dict[int, Any], note: str = '') -> tuple[str, str, int | None]:
    """(dev, reason, retry) of a reject whose keys are checked (v1 and v2); an hh (7) is 32 bytes."""
    reason = _text(m, 13)
    if reason not in REASONS:
        raise ProtocolError('GH_MSG_BAD_REASON', f'reason {reason!r}{note}')
    if 7 in m:
        _bytes(m, 7, 32)
    return _id(m, 3), reason, _uint(m, 16) if 16 in m else None


def decode_reject(data: bytes) -> Reject:
    """A reject, signed or not. Advisory only: its signature is not checked (protocol v1)."""
    signed = len(data) > 0 and data[0] in (0xD2, 0x84)
    payload = parse_sign1(data).payload if signed else data
    m = _check_map(cbor.decode(payload, frozenset(), MAX_MESSAGE), {1, 2, 3, 13}, {7, 16})
    _header(m, 'reject')
    dev, reason, retry = reject_fields(m)
    return Reject(dev=dev, reason=reason, retry=retry, signed=signed)


def message_type(data: bytes) -> str:
    """The `type` of a gateway message (welcome, reject, challenge), or raise."""
    if data[:1] in (b'\xd2', b'\x84'):
        payload = parse_sign1(data).payload
    else:
        payload = data
    m = cbor.decode(payload, frozenset(), MAX_MESSAGE)
    if not isinstance(m, dict) or not isinstance(m.get(1), str):
        raise ProtocolError('GH_MSG_NOT_MAP', 'not a typed message')
    return m[1]


@dataclass(frozen=True)
class WelcomeResult:
    ok: bool
    code: str
    detail: str
    gw: str | None = None


def _refuse(code: str, detail: str) -> WelcomeResult:
    return WelcomeResult(False, code, detail)


def check_welcome(welcome: bytes, hello_sent: bytes, dev: str, backend_keys: dict[str, bytes], now: int | None) -> WelcomeResult:
    """protocol v1 "Peripheral checks on a welcome", in its order."""
    try:
        env = parse_sign1(welcome)
        w = _check_map(cbor.decode(env.payload, frozenset(), MAX_MESSAGE), {1, 2, 3, 6, 7, 8})
        _header(w, 'welcome')
        w_dev, w_gw, hh, cred_bytes = _id(w, 3), _id(w, 6), _bytes(w, 7, 32), _bytes(w, 8)
        if env.kid != w_gw:
            raise ProtocolError('GH_MSG_KID_MISMATCH', 'welcome kid is not its gw')
    except (CborError, ProtocolError) as e:
        return _refuse('GH_WELCOME_MALFORMED', f'welcome: {e}')
    try:
        cred_env = parse_sign1(cred_bytes)
    except (CborError, ProtocolError) as e:
        return _refuse('GH_WELCOME_CRED_MALFORMED', f'credential: {e}')
    pinned = backend_keys.get(cred_env.kid)
    if pinned is None:
        return _refuse('GH_WELCOME_CRED_UNKNOWN_KID', f'credential kid {cred_env.kid!r} is not pinned')
    if not verify_sign1(cred_env, pinned):
        return _refuse('GH_WELCOME_CRED_SIGNATURE', 'credential does not verify under the pinned backend key')
    try:
        c = cbor.decode(cred_env.payload, frozenset(), MAX_MESSAGE)
        if not isinstance(c, dict) or c.get(1) != 'gw-cred':
            return _refuse('GH_WELCOME_CRED_TYPE', f'credential is a {c.get(1) if isinstance(c, dict) else None!r}, not a gw-cred')
        _check_map(c, {1, 2, 6, 9, 10, 11, 12})
        _header(c, 'gw-cred')
        c_gw, spk, exp = _id(c, 6), _bytes(c, 9, 32), _uint(c, 12)
        _bytes(c, 10, 32)
        if public_key_problem(spk) is not None:
            raise ProtocolError('GH_MSG_BAD_KEY', f'spk: {public_key_problem(spk)}')
        if exp <= _uint(c, 11):
            raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat')
    except (CborError, ProtocolError) as e:
        return _refuse('GH_WELCOME_CRED_MALFORMED', f'credential payload: {e}')
    if c_gw != w_gw:
        return _refuse('GH_WELCOME_GW_MISMATCH', f'credential is for {c_gw!r}, welcome from {w_gw!r}')
    if now is not None and not now < exp:
        return _refuse('GH_WELCOME_EXPIRED', f'credential expired at {exp}')
    if not verify_sign1(env, spk):
        return _refuse('GH_WELCOME_SIGNATURE', "welcome does not verify under the credential's session key")
    if w_dev != dev:
        return _refuse('GH_WELCOME_DEV_MISMATCH', f'welcome is for {w_dev!r}')
    if hh != hashlib.sha256(hello_sent).digest():
        return _refuse('GH_WELCOME_HELLO_HASH', 'hh is not the hash of the hello sent')
    return WelcomeResult(True, 'ok', 'gateway authenticated', w_gw)


def device_key(dev: str, seed: bytes) -> Ed25519PrivateKey:
    """A device's Ed25519 key from its 32-byte seed, once its id is a valid one."""
    if not ID_RE.match(dev):
        raise ProtocolError('GH_PERIPHERAL_BAD_DEV', 'dev must be 1-64 characters of [A-Za-z0-9._:-]')
    if len(seed) != 32:
        raise ProtocolError('GH_PERIPHERAL_BAD_SEED', 'an Ed25519 seed is 32 bytes')
    return Ed25519PrivateKey.from_private_bytes(seed)


class Peripheral:
    """One device: its id, its Ed25519 key (from a 32-byte seed), the pinned backend keys."""

    def __init__(self, dev: str, seed: bytes, backend_keys: dict[str, bytes],
                 clock: Callable[[], int] | None = None, random: Callable[[int], bytes] = os.urandom) -> None:
        self.dev = dev
        self.key = device_key(dev, seed)
        self.backend_keys = backend_keys
        self.clock = clock
        self.random = random
        self.hello_sent: bytes | None = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def hello(self, challenge_bytes: bytes) -> bytes:
        """Answer a BLE challenge: its `dev` is the gateway's link label and is ignored."""
        challenge = decode_challenge(challenge_bytes)
        pn = self.random(16)
        self.hello_sent = sign1({1: 'hello', 2: 1, 3: self.dev, 4: pn, 5: challenge.gn}, self.dev, self.key)
        return self.hello_sent

    def verify_welcome(self, welcome: bytes) -> WelcomeResult:
        if self.hello_sent is None:
            return _refuse('GH_WELCOME_HELLO_HASH', 'no hello sent')
        return check_welcome(welcome, self.hello_sent, self.dev, self.backend_keys, self.clock() if self.clock else None)
