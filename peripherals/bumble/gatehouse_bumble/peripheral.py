"""A Bumble peripheral of the HCI test stack (link.py): a full Bumble Device (its own controller,
host, L2CAP, ATT, GATT server) with the Gatehouse service, running protocol v1 (protocol.py) on
the v1 characteristic and, through `V2Behaviour` (peripheral_v2.py), protocol v2 on the v2 one;
`misbehave` makes it fail on purpose. Events go out through control.py.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bumble import hci
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from .cbor import CborError
from .control import emit
from .framing import MAX_MESSAGE_V2, FrameError, frame
from .link_state import SERVICE_UUID, V1_CHARACTERISTIC_UUID, V2_CHARACTERISTIC_UUID, LinkState
from .peripheral_v2 import V2Behaviour
from .protocol import Peripheral, ProtocolError, decode_reject, message_type
from . import protocol_v2 as v2


def write_notify(uuid: str, on_write: Any) -> Characteristic:
    """A Gatehouse characteristic: the gateway writes, the peripheral notifies."""
    return Characteristic(uuid, Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY, Characteristic.WRITEABLE,
                          CharacteristicValue(write=on_write))


class GatehousePeripheral(V2Behaviour):
    """A Bumble Device advertising the Gatehouse service, the peripheral side of protocol v1."""

    def __init__(self, spec: dict[str, Any], backend_keys: dict[str, bytes], interval_ms: float, link: LocalLink) -> None:
        self.name: str = spec['name']
        self.address: str = spec['address']
        self.misbehave: dict[str, Any] = spec.get('misbehave', {})
        self.interval_ms = interval_ms
        self.protocol = Peripheral(spec['dev'], bytes.fromhex(spec['seed']), backend_keys)
        self.outcomes = 0
        self.links: dict[int, LinkState] = {}
        controller = Controller(f'P-{self.name}', link=link, public_address=spec.get('publicAddress', self.address))
        self.device = Device(name=self.name, address=hci.Address(self.address), host=Host(controller, AsyncPipeSink(controller)))
        self.device.gatt_server.max_mtu = int(spec.get('mtu', 247))
        self.versions: list[int] = list(spec.get('versions', [1]))
        self.schedule: list[dict[str, Any]] = list(spec.get('schedule', []))
        self.protocol_v2 = v2.PeripheralV2(spec['dev'], bytes.fromhex(spec['seed']), backend_keys,
                                           clock=(lambda: int(time.time())) if spec.get('clock') else None,
                                           allow_offline=spec.get('allowOffline'))
        self.characteristic: Characteristic | None = None
        self.characteristic_v2: Characteristic | None = None
        if self.misbehave.get('noCharacteristic'):
            # The service is there, the Gatehouse characteristic is not (another one is).
            other = Characteristic('84987aff-71fe-493c-a15d-1ddd7d599687', Characteristic.Properties.READ, Characteristic.READABLE, b'\x00')
            self.device.add_service(Service(SERVICE_UUID, [other]))
        else:
            chars = []
            if 1 in self.versions:
                self.characteristic = write_notify(V1_CHARACTERISTIC_UUID, self.on_write)
                chars.append(self.characteristic)
            if 2 in self.versions:
                self.characteristic_v2 = write_notify(V2_CHARACTERISTIC_UUID, self.on_write_v2)
                chars.append(self.characteristic_v2)
            self.device.add_service(Service(SERVICE_UUID, chars))
        self.device.on('connection', self.on_connection)

    def advertising_data(self) -> bytes:
        raw = self.misbehave.get('advertisingData')
        if raw is not None:
            return bytes.fromhex(raw)
        uuid_le = bytes.fromhex(SERVICE_UUID.replace('-', ''))[::-1]
        name = f'GH-{self.name}'.encode()[:20]
        # Flags (LE general discoverable, no BR/EDR), complete list of 128-bit service UUIDs, name.
        return bytes([2, 0x01, 0x06, 17, 0x07]) + uuid_le + bytes([len(name) + 1, 0x09]) + name

    async def start(self) -> None:
        await self.device.power_on()
        await self.advertise()

    async def advertise(self) -> None:
        await self.device.start_advertising(
            advertising_data=self.advertising_data(),
            scan_response_data=b'',
            advertising_interval_min=self.interval_ms,
            advertising_interval_max=self.interval_ms,
            auto_restart=False,
        )

    def on_connection(self, connection: Connection) -> None:
        state = LinkState(connection)
        self.links[connection.handle] = state
        emit({'event': 'connected', 'peripheral': self.name, 'peer': str(connection.peer_address)})
        connection.on('disconnection', lambda reason: self.on_disconnection(state, reason))

    def on_disconnection(self, state: LinkState, reason: int) -> None:
        self.links.pop(state.connection.handle, None)
        for t in state.tasks:
            t.cancel()
        if state.session is not None and state.stage == 'session':
            self.end_session(state, 'link-lost', f'reason 0x{reason:02x}')
        if state.stage not in ('done', 'ended'):
            self.outcome(state, 'incomplete', code='GH_BLE_DISCONNECTED', detail=f'link lost at stage {state.stage} (reason 0x{reason:02x})')
        # Advertise again: the gateway's deny-list decides when it comes back.
        if not self.misbehave.get('once'):
            asyncio.get_running_loop().create_task(self.readvertise())

    async def readvertise(self) -> None:
        try:
            await self.advertise()
        except Exception as e:  # noqa: BLE001 - reported, the link process runs on
            emit({'event': 'error', 'peripheral': self.name, 'error': f'advertise: {e}'})

    def outcome(self, state: LinkState, outcome: str, stage: str = 'done', **extra: Any) -> None:
        state.stage = stage
        self.outcomes += 1
        emit({
            'event': 'outcome', 'peripheral': self.name, 'dev': self.protocol.dev, 'outcome': outcome, 'version': state.version,
            'mtu': state.connection.att_mtu, 'writeSizes': state.write_sizes, 'notifySizes': state.notify_sizes,
            'ms': round((time.monotonic() - state.started) * 1000, 1), **extra,
        })

    def on_write(self, connection: Connection, value: bytes) -> None:
        state = self.links.get(connection.handle)
        if state is None or state.stage == 'done':
            return
        state.write_sizes.append(len(value))
        try:
            message = state.reassembler.push(bytes(value))
        except FrameError as e:
            self.outcome(state, 'incomplete', code=e.code, detail=str(e))
            return
        if message is None:
            return
        if state.stage == 'challenge':
            self.on_challenge(state, message)
        elif state.stage == 'answer':
            self.on_answer(state, message)

    def on_challenge(self, state: LinkState, message: bytes) -> None:
        if self.misbehave.get('neverAnswer'):
            state.stage = 'silent'
            return
        if self.misbehave.get('disconnectAfterChallenge'):
            state.stage = 'vanished'
            asyncio.get_running_loop().create_task(state.connection.disconnect())
            return
        try:
            kind = message_type(message)
            if kind == 'reject':
                r = decode_reject(message)
                self.outcome(state, 'rejected', reason=r.reason, retry=r.retry, signed=r.signed)
                return
            hello = self.protocol.hello(message)
        except (CborError, ProtocolError) as e:
            self.outcome(state, 'incomplete', code=getattr(e, 'code', 'GH_MSG'), detail=f'challenge: {e}')
            return
        state.stage = 'answer'
        asyncio.get_running_loop().create_task(self.notify(state, hello))

    async def notify(self, state: LinkState, message: bytes) -> None:
        # Frame at the MTU this side negotiated; every chunk fits one notification (MTU-3).
        mtu = state.connection.att_mtu
        characteristic = self.characteristic_v2 if state.version == 2 else self.characteristic
        try:
            for chunk in frame(message, mtu, max_message=MAX_MESSAGE_V2 if state.version == 2 else 1024):
                state.notify_sizes.append(len(chunk))
                assert characteristic is not None
                await self.device.notify_subscriber(state.connection, characteristic, chunk)
        except Exception as e:  # noqa: BLE001 - the link may drop mid-way; reported
            emit({'event': 'error', 'peripheral': self.name, 'error': f'notify: {e}'})

    def on_answer(self, state: LinkState, message: bytes) -> None:
        try:
            kind = message_type(message)
        except (CborError, ProtocolError) as e:
            self.outcome(state, 'refused', code='GH_WELCOME_MALFORMED', detail=str(e))
            return
        if kind == 'reject':
            try:
                r = decode_reject(message)
                self.outcome(state, 'rejected', reason=r.reason, retry=r.retry, signed=r.signed)
            except (CborError, ProtocolError) as e:
                self.outcome(state, 'refused', code='GH_REJECT_MALFORMED', detail=str(e))
            return
        result = self.protocol.verify_welcome(message)
        if result.ok:
            self.outcome(state, 'welcomed', gw=result.gw)
        else:
            self.outcome(state, 'refused', code=result.code, detail=result.detail)
