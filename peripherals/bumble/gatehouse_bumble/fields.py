"""Field readers shared by the v1 and v2 decoders (protocol.py, v2_messages.py): the error they
raise, the id rule, and typed reads of one key of a decoded CBOR map (the key is known present).
"""
from __future__ import annotations

import re
from typing import Any

ID_RE = re.compile(r'^[A-Za-z0-9._:-]{1,64}$')


class ProtocolError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f'{code}: {detail}')
        self.code = code
        self.detail = detail


def check_keys(m: dict[int, Any], required: set[int], optional: set[int] = frozenset()) -> None:
    """No key outside `required` and `optional` (checked first), every `required` key present."""
    for k in m:
        if k not in required and k not in optional:
            raise ProtocolError('GH_MSG_UNKNOWN_FIELD', f'unknown key {k!r}')
    for k in required:
        if k not in m:
            raise ProtocolError('GH_MSG_MISSING_FIELD', f'missing key {k}')


def text(m: dict[int, Any], k: int) -> str:
    if not isinstance(m[k], str):
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not a text string')
    return m[k]


def byte_string(m: dict[int, Any], k: int, length: int | None = None) -> bytes:
    if not isinstance(m[k], bytes):
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not a byte string')
    if length is not None and len(m[k]) != length:
        raise ProtocolError('GH_MSG_FIELD_LENGTH', f'key {k} is {len(m[k])} bytes, not {length}')
    return m[k]


def uint(m: dict[int, Any], k: int) -> int:
    v = m[k]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ProtocolError('GH_MSG_FIELD_TYPE', f'key {k} is not an unsigned integer')
    return v


def ident(m: dict[int, Any], k: int) -> str:
    v = text(m, k)
    if not ID_RE.match(v):
        raise ProtocolError('GH_MSG_BAD_ID', f'key {k} is not a valid id')
    return v
