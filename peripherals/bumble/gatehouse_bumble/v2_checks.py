"""Protocol v2 checks (protocol-v2): the gateway's hello checks (used by the relay test's gateway
side and the vectors), the peripheral's numbered checks on a v2 welcome (online grant or offline
credential + lease), and its checks on a relayed command. Pure: the clock is passed in.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import cbor
from .cbor import CborError, Tag
from .fields import ProtocolError, byte_string as _bytes, ident as _id, uint as _uint
from .protocol import public_key_problem, verify_sign1
from .v2_keys import x25519_shared
from .v2_messages import (
    COMMAND_MAX, COSE_SIGN1_TAG, DEFAULT_MAX_LIFE, Command, HelloV2, WelcomeV2, grant_payload, decode_map, typed_map, parse_command,
    parse_hello_v2, parse_sign1_v2, parse_welcome_v2,
)

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


def refusal(check: int, code: str, detail: str) -> WelcomeV2Result:
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
        m = decode_map(s.payload)
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
        return refusal(1, 'GH_WELCOME_NOT_TAGGED', 'a v2 welcome is a tagged COSE_Sign1')
    try:
        w = parse_welcome_v2(welcome)
    except (CborError, ProtocolError) as e:
        code = {'GH_MSG_NOT_TAGGED': 'GH_WELCOME_NOT_TAGGED', 'GH_MSG_UNSUPPORTED_VERSION': 'GH_WELCOME_VERSION',
                'GH_MSG_WELCOME_SHAPE': 'GH_WELCOME_SHAPE'}.get(e.code, 'GH_WELCOME_MALFORMED')
        return refusal(1, code, f'welcome: {e}')
    if w.dev != dev:
        return refusal(1, 'GH_WELCOME_DEV_MISMATCH', f'welcome is for {w.dev!r}')
    try:
        hello = parse_hello_v2(hello_sent)
    except (CborError, ProtocolError) as e:
        return refusal(1, 'GH_WELCOME_HELLO_GW', f'the hello sent does not parse: {e}')
    if w.gw != hello.gw:
        return refusal(1, 'GH_WELCOME_HELLO_GW', f'welcome from {w.gw!r}, hello was for {hello.gw!r}')
    hh = hashlib.sha256(hello_sent).digest()
    if not hmac.compare_digest(w.hh, hh):
        return refusal(1, 'GH_WELCOME_HELLO_HASH', 'hh is not the hash of the hello sent')
    life = min(w.life, max_life)
    if w.grant is not None:
        # 2. online: the grant.
        code, detail, m = _signed_by_pinned(w.grant, 'grant', backend_keys, 'grant')
        if code is not None or m is None:
            return refusal(2, code or 'GH_WELCOME_GRANT_MALFORMED', detail)
        try:
            g = grant_payload(m)
        except (CborError, ProtocolError) as e:
            return refusal(2, 'GH_WELCOME_GRANT_MALFORMED', f'grant payload: {e}')
        if g.dev != dev:
            return refusal(2, 'GH_WELCOME_GRANT_DEV', f'grant is for {g.dev!r}')
        if g.gw != w.gw:
            return refusal(2, 'GH_WELCOME_GRANT_GW', f'grant is for {g.gw!r}')
        if not hmac.compare_digest(g.hh, hh):
            return refusal(2, 'GH_WELCOME_GRANT_HH', "grant.hh is not the hello's hash")
        if not verify_sign1(w.signed, g.spk):
            return refusal(2, 'GH_WELCOME_SIGNATURE', 'welcome does not verify under grant.spk')
        return WelcomeV2Result(True, 'ok', 'gateway authorised by the grant', 2, 'online', w.gw, min(life, g.life), w)
    # 3. offline: only where allowed (default: with a clock).
    allowed = allow_offline if allow_offline is not None else now is not None
    if not allowed:
        return refusal(3, 'GH_WELCOME_OFFLINE_REFUSED', 'offline welcomes are not accepted here')
    assert w.cred is not None and w.lease is not None
    code, detail, c = _signed_by_pinned(w.cred, 'cred', backend_keys, 'gw-cred')
    if code is not None or c is None:
        return refusal(3, code or 'GH_WELCOME_CRED_MALFORMED', detail)
    try:
        typed_map(c, 'gw-cred', 1, {1, 2, 6, 9, 10, 11, 12})
        c_gw, spk, c_exp = _id(c, 6), _bytes(c, 9, 32), _uint(c, 12)
        _bytes(c, 10, 32)
        if c_exp <= _uint(c, 11) or public_key_problem(spk) is not None:
            raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat, or a bad spk')
    except (CborError, ProtocolError) as e:
        return refusal(3, 'GH_WELCOME_CRED_MALFORMED', f'credential payload: {e}')
    if c_gw != w.gw:
        return refusal(3, 'GH_WELCOME_GW_MISMATCH', f'credential is for {c_gw!r}')
    code, detail, lm = _signed_by_pinned(w.lease, 'lease', backend_keys, 'lease')
    if code is not None or lm is None:
        return refusal(3, code or 'GH_WELCOME_LEASE_MALFORMED', detail)
    try:
        typed_map(lm, 'lease', 1, {1, 2, 3, 6, 11, 12, 14, 15})
        l_dev, l_gw, dpk, l_exp = _id(lm, 3), _id(lm, 6), _bytes(lm, 15, 32), _uint(lm, 12)
        policy = lm[14]
        if not isinstance(policy, dict) or set(policy) != {'pub', 'sub'} or not all(
                isinstance(v, list) and all(isinstance(f, str) for f in v) for v in policy.values()):
            raise ProtocolError('GH_MSG_BAD_POLICY', 'policy is {"pub": [tstr], "sub": [tstr]}')
        if l_exp <= _uint(lm, 11):
            raise ProtocolError('GH_MSG_BAD_VALIDITY', 'exp not after iat')
    except (CborError, ProtocolError) as e:
        return refusal(3, 'GH_WELCOME_LEASE_MALFORMED', f'lease payload: {e}')
    if l_dev != dev:
        return refusal(3, 'GH_WELCOME_LEASE_DEV', f'lease is for {l_dev!r}')
    if l_gw != w.gw:
        return refusal(3, 'GH_WELCOME_LEASE_GW', f'lease is for {l_gw!r}')
    if not hmac.compare_digest(dpk, device_public_key):
        return refusal(3, 'GH_WELCOME_LEASE_DPK', 'lease.dpk is not this device')
    if now is not None:
        if not now < c_exp:
            return refusal(3, 'GH_WELCOME_EXPIRED', f'credential expired at {c_exp}')
        if not now < l_exp:
            return refusal(3, 'GH_WELCOME_LEASE_EXPIRED', f'lease expired at {l_exp}')
        life = min(life, l_exp - now, c_exp - now)
    if not verify_sign1(w.signed, spk):
        return refusal(3, 'GH_WELCOME_SIGNATURE', "welcome does not verify under the credential's spk")
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
