"""One connection to one Bumble peripheral (peripheral.py, peripheral_v2.py) and the GATT UUIDs."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bumble.device import Connection

from .framing import Reassembler
from . import protocol_v2 as v2

SERVICE_UUID = '84987abc-71fe-493c-a15d-1ddd7d599687'
V1_CHARACTERISTIC_UUID = '84987abd-71fe-493c-a15d-1ddd7d599687'
V2_CHARACTERISTIC_UUID = '84987abe-71fe-493c-a15d-1ddd7d599687'


@dataclass
class LinkState:
    """One connection to one peripheral: reassembly, where the exchange is, what was written."""

    connection: Connection
    reassembler: Reassembler = field(default_factory=Reassembler)
    stage: str = 'challenge'
    write_sizes: list[int] = field(default_factory=list)
    notify_sizes: list[int] = field(default_factory=list)
    version: int = 1
    session: v2.Session | None = None
    reported: bool = False
    received: int = 0
    started: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
