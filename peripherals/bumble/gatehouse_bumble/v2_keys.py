"""Protocol v2 key agreement and key schedule (protocol-v2): X25519 with the all-zero check, and
HKDF-SHA-256 over Z with salt hh into the per-direction keys, IVs and the session id. Pure.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import cbor
from .fields import ProtocolError

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
