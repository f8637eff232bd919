"""protocol v1 BLE chunk framing (v2 uses it too, with a 1,280-byte bound): a header byte (bit 7 last, bits 0-6 index mod 128), then up to
MTU-4 bytes of the message; a gap or a message over the bound aborts the exchange."""
from __future__ import annotations

MAX_MESSAGE = 1024
MAX_MESSAGE_V2 = 1280  # the v2 characteristic's bound (a v2 welcome, a frame)


class FrameError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f'{code}: {detail}')
        self.code = code


def chunk_payload(mtu: int) -> int:
    # 3 bytes of every notification/write PDU are opcode + handle; the header byte takes one more;
    # an attribute value is at most 512 bytes whatever the MTU.
    return min(mtu - 4, 511)


def frame(message: bytes, mtu: int, payload_size: int | None = None, max_message: int = MAX_MESSAGE) -> list[bytes]:
    size = payload_size or chunk_payload(mtu)
    if len(message) > max_message:
        raise FrameError('GH_BLE_FRAME_OVERSIZE', f'{len(message)} bytes')
    if not message:
        return [b'\x80']
    chunks = []
    for index, offset in enumerate(range(0, len(message), size)):
        part = message[offset:offset + size]
        last = offset + size >= len(message)
        chunks.append(bytes([(0x80 if last else 0) | (index & 0x7F)]) + part)
    return chunks


class Reassembler:
    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self.parts: list[bytes] = []
        self.size = 0

    def push(self, chunk: bytes) -> bytes | None:
        if not chunk:
            raise FrameError('GH_BLE_FRAME_INVALID', 'empty chunk')
        index = chunk[0] & 0x7F
        if index != len(self.parts) % 128:
            raise FrameError('GH_BLE_FRAME_GAP', f'index {index}, expected {len(self.parts) % 128}')
        if self.size + len(chunk) - 1 > self.max_message or len(self.parts) > self.max_message:
            raise FrameError('GH_BLE_FRAME_OVERSIZE', f'over {self.max_message} bytes')
        self.parts.append(chunk[1:])
        self.size += len(chunk) - 1
        if not chunk[0] & 0x80:
            return None
        message = b''.join(self.parts)
        self.parts, self.size = [], 0
        return message
