"""Deterministic CBOR (RFC 8949 §4.2.1) encoding and a strict, bounded decoder.

Only what protocol v1 uses: unsigned and negative integers, byte and text strings, arrays, maps,
tag 18 (COSE_Sign1). The decoder refuses indefinite lengths, non-shortest heads, duplicate or
unsorted map keys, floats and simple values, tags other than those allowed, invalid UTF-8,
lengths beyond the input, nesting deeper than 16 and trailing bytes, each with a stable code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 16


class CborError(ValueError):
    """A refused input; `code` is stable (GH_CBOR_…)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f'{code}: {detail}')
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Tag:
    number: int
    value: Any


def _head(major: int, n: int) -> bytes:
    if n < 0:
        raise ValueError('negative length')
    if n < 24:
        return bytes([(major << 5) | n])
    if n < 0x100:
        return bytes([(major << 5) | 24, n])
    if n < 0x10000:
        return bytes([(major << 5) | 25]) + n.to_bytes(2, 'big')
    if n < 0x100000000:
        return bytes([(major << 5) | 26]) + n.to_bytes(4, 'big')
    if n < 0x10000000000000000:
        return bytes([(major << 5) | 27]) + n.to_bytes(8, 'big')
    raise ValueError('integer too large for CBOR')


def encode(value: Any) -> bytes:
    """Deterministic encoding: shortest heads, map keys sorted by their encoded bytes."""
    if isinstance(value, bool):
        return b'\xf5' if value else b'\xf4'
    if value is None:
        return b'\xf6'
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        return _head(2, len(b)) + b
    if isinstance(value, str):
        b = value.encode('utf-8')
        return _head(3, len(b)) + b
    if isinstance(value, (list, tuple)):
        return _head(4, len(value)) + b''.join(encode(v) for v in value)
    if isinstance(value, dict):
        items = sorted(((encode(k), encode(v)) for k, v in value.items()), key=lambda kv: kv[0])
        return _head(5, len(items)) + b''.join(k + v for k, v in items)
    if isinstance(value, Tag):
        return _head(6, value.number) + encode(value.value)
    raise TypeError(f'cannot encode {type(value).__name__}')


class _Reader:
    def __init__(self, data: bytes, allowed_tags: frozenset[int]) -> None:
        self.data = data
        self.pos = 0
        self.allowed_tags = allowed_tags

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise CborError('GH_CBOR_TRUNCATED', f'needs {n} bytes at offset {self.pos}, has {len(self.data) - self.pos}')
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def head(self) -> tuple[int, int]:
        first = self.take(1)[0]
        major, info = first >> 5, first & 0x1F
        if info < 24:
            return major, info
        if info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            n = int.from_bytes(self.take(size), 'big')
            smallest = 24 if info == 24 else 1 << (8 * (size // 2))
            if n < smallest:
                raise CborError('GH_CBOR_NON_SHORTEST', f'argument {n} not in its shortest form')
            return major, n
        if info == 31:
            raise CborError('GH_CBOR_INDEFINITE', 'indefinite length')
        raise CborError('GH_CBOR_INVALID', f'reserved additional information {info}')

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CborError('GH_CBOR_TOO_DEEP', f'nesting deeper than {MAX_DEPTH}')
        start = self.pos
        if start >= len(self.data):
            raise CborError('GH_CBOR_TRUNCATED', 'no data item')
        first = self.data[start]
        if first >> 5 == 7:
            if first == 0xFF:
                raise CborError('GH_CBOR_INDEFINITE', 'a break stop code outside an indefinite-length item')
            if first in (0xF9, 0xFA, 0xFB):
                raise CborError('GH_CBOR_FLOAT', 'floating-point value')
            raise CborError('GH_CBOR_SIMPLE', 'simple value')
        major, n = self.head()
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return self.take(n)
        if major == 3:
            try:
                return self.take(n).decode('utf-8')
            except UnicodeDecodeError as e:
                raise CborError('GH_CBOR_UTF8', 'text string is not UTF-8') from e
        if major == 4:
            # Every item takes at least one byte: a count beyond what is left is a lie.
            if n > len(self.data) - self.pos:
                raise CborError('GH_CBOR_LENGTH', f'array of {n} items in {len(self.data) - self.pos} bytes')
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if 2 * n > len(self.data) - self.pos:
                raise CborError('GH_CBOR_LENGTH', f'map of {n} pairs in {len(self.data) - self.pos} bytes')
            out: dict[Any, Any] = {}
            previous: bytes | None = None
            for _ in range(n):
                key_start = self.pos
                key = self.item(depth + 1)
                key_bytes = self.data[key_start:self.pos]
                if isinstance(key, (list, dict)):
                    raise CborError('GH_CBOR_KEY_TYPE', 'map key is not a scalar')
                if previous is not None:
                    if key_bytes == previous:
                        raise CborError('GH_CBOR_DUPLICATE_KEY', f'duplicate map key {key!r}')
                    if key_bytes < previous:
                        raise CborError('GH_CBOR_UNSORTED_KEYS', 'map keys not in deterministic order')
                previous = key_bytes
                if key in out:
                    raise CborError('GH_CBOR_DUPLICATE_KEY', f'duplicate map key {key!r}')
                out[key] = self.item(depth + 1)
            return out
        if major == 6:
            if n not in self.allowed_tags:
                raise CborError('GH_CBOR_TAG', f'tag {n} not allowed here')
            return Tag(n, self.item(depth + 1))
        raise CborError('GH_CBOR_INVALID', f'major type {major}')


def decode(data: bytes, allowed_tags: frozenset[int] = frozenset(), max_bytes: int = 1024) -> Any:
    """Decode exactly one item from `data`, strictly."""
    if len(data) > max_bytes:
        raise CborError('GH_MSG_TOO_LARGE', f'{len(data)} bytes is over {max_bytes}')
    r = _Reader(bytes(data), allowed_tags)
    value = r.item(0)
    if r.pos != len(r.data):
        raise CborError('GH_CBOR_TRAILING_BYTES', f'{len(r.data) - r.pos} bytes after the item')
    return value
