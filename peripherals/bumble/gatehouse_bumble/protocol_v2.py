"""The peripheral side of Gatehouse protocol v2, written from the protocol page (protocol-v2).

What a v2 peripheral does on BLE: decode the v2 challenge (with the gateway's ephemeral `ge`),
answer a tagged hello carrying a fresh X25519 ephemeral `pe`, check the welcome (online: the
backend's grant; offline: credential + lease, only where its setting allows), derive the session
keys (HKDF-SHA-256 over Z with salt hh), and then seal and open COSE_Encrypt0 frames
(AES-CCM-16-64-128) with the piv/nonce/AAD rules and a 64-wide replay window, checking relayed
commands against the pinned backend keys. The gateway's hello checks are here too (a relay test
and the vectors use them). Pure: no I/O; the clock and the random source are passed in.

The parts: v2_messages.py (bounds, decoders), v2_keys.py (X25519, key schedule), v2_frames.py
(frames, replay window), v2_checks.py (welcome, command and gateway-hello checks); this module
re-exports them and holds the peripheral itself.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .fields import ProtocolError
from .protocol import device_key, sign1
from .v2_checks import (  # noqa: F401 - re-exported
    CommandVerdict, WelcomeV2Result, refusal, check_command, check_hello_v2_at_gateway, check_welcome_v2,
)
from .v2_frames import (  # noqa: F401 - re-exported
    FRAME_FIELDS, DirectionKeys, FrameReceiver, FrameSender, Opened, ReplayWindow, decode_frame_payload, decode_piv,
    direction_keys, encode_frame_payload, encode_piv, frame_aad, frame_nonce, seal,
)
from .v2_keys import LABELS, SessionKeys, derive_keys, kdf_info, x25519_private, x25519_public, x25519_shared  # noqa: F401
from .v2_messages import (  # noqa: F401 - re-exported
    ALG_AES_CCM_16_64_128, ALG_EDDSA, BODY_MAX, BYE_REASONS, COMMAND_BODY_MAX, COMMAND_MAX, COSE_ENCRYPT0_TAG, COSE_SIGN1_TAG,
    DEFAULT_MAX_LIFE, G2P_TYPES, MAX_DROPS, P2G_TYPES, PLAINTEXT_MAX, PROTECTED_FRAME, SEQ_MAX, STATUSES, V1_MAX, V2_MAX, WINDOW,
    ChallengeV2, Command, Grant, HelloV2, RejectV2, WelcomeV2, decode_challenge_v2, decode_reject_v2, down_message_type,
    encode_challenge_v2, parse_command, parse_grant, parse_hello_v2, parse_sign1_v2, parse_welcome_v2,
)


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
        self.dev = dev
        self.key = device_key(dev, seed)
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
            return refusal(1, 'GH_WELCOME_HELLO_HASH', 'no hello outstanding'), None
        r = check_welcome_v2(data, self.hello_sent, self.dev, self.public_key, self.backend_keys,
                             self.clock() if self.clock else None, self.allow_offline, self.max_life)
        if not r.ok or r.welcome is None:
            self.abandon()
            return r, None
        try:
            z = x25519_shared(self.pe, parse_hello_v2(self.hello_sent).ge)
        except ProtocolError as e:
            self.abandon()
            return refusal(1, e.code, str(e)), None
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
