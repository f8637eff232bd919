"""A BLE relay on the Bumble link (docs/ble.md "A relay gains nothing under v2").

`GatehouseRelay` is one more Bumble Device on the LocalLink, with both roles:
- toward the real peripheral it is a central: at start it connects to the peripheral's address
  (the peripheral advertises without the Gatehouse service, so the gateway never picks it), raises
  the ATT MTU, discovers the v2 characteristic and subscribes to its notifications;
- toward the gateway it is a peripheral: it then advertises the Gatehouse service with the v2
  characteristic under its own address.

Every message is reassembled from its chunks on one side and framed again at the other side's
MTU; the message bytes go through unchanged (`relay` events carry them, hex, so a test can see
what the relay saw). On command it misbehaves toward the gateway: `inject` sends again the last
peripheral frame it forwarded (`count` times), `alter` flips one bit of the next peripheral frame.
It has no key: it sees only the hello, the welcome and COSE_Encrypt0 frames.

link.py's `run` starts the relays of its config (`relays`: name, address, target); its command
channel (control.py) takes `{"cmd": "relay", "relay", "action": "inject"|"alter", "count"}`.
"""
from __future__ import annotations

import asyncio
from typing import Any

from bumble import hci
from bumble.controller import Controller
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from .framing import MAX_MESSAGE_V2, FrameError, Reassembler, frame
from .control import emit
from .link_state import SERVICE_UUID, V2_CHARACTERISTIC_UUID

CONNECT_TIMEOUT_S = 5.0


class GatehouseRelay:
    """Peripheral toward the gateway, central toward `target`; forwards v2 messages both ways."""

    def __init__(self, spec: dict[str, Any], interval_ms: float, link: LocalLink) -> None:
        self.name: str = spec['name']
        self.address: str = spec['address']
        self.target: str = spec['target']
        self.interval_ms = interval_ms
        controller = Controller(f'R-{self.name}', link=link, public_address=self.address)
        self.device = Device(name=self.name, address=hci.Address(self.address), host=Host(controller, AsyncPipeSink(controller)))
        self.device.gatt_server.max_mtu = 247
        self.characteristic = Characteristic(
            V2_CHARACTERISTIC_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=self.on_gateway_write),
        )
        self.device.add_service(Service(SERVICE_UUID, [self.characteristic]))
        self.device.on('connection', self.on_connection)
        self.peer: Peer | None = None
        self.remote: Any = None  # the peripheral's v2 characteristic (a CharacteristicProxy)
        self.gateway: Connection | None = None
        self.up = Reassembler(MAX_MESSAGE_V2)    # gateway -> peripheral
        self.down = Reassembler(MAX_MESSAGE_V2)  # peripheral -> gateway
        self.to_peripheral: asyncio.Queue[bytes] = asyncio.Queue()
        self.to_gateway: asyncio.Queue[bytes] = asyncio.Queue()
        self.down_count = 0
        self.last_frame: bytes | None = None
        self.alter_next = False
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.device.power_on()
        connection = await asyncio.wait_for(self.device.connect(hci.Address(self.target)), CONNECT_TIMEOUT_S)
        self.peer = Peer(connection)
        await self.peer.request_mtu(247)
        services = await self.peer.discover_service(SERVICE_UUID)
        if not services:
            raise RuntimeError(f'relay {self.name}: {self.target} serves no Gatehouse service')
        chars = await self.peer.discover_characteristics([V2_CHARACTERISTIC_UUID], services[0])
        if not chars:
            raise RuntimeError(f'relay {self.name}: {self.target} has no v2 characteristic')
        self.remote = chars[0]
        await self.peer.subscribe(self.remote, self.on_peripheral_notify)
        loop = asyncio.get_running_loop()
        self.tasks += [loop.create_task(self.pump_to_peripheral()), loop.create_task(self.pump_to_gateway())]
        emit({'event': 'relay-ready', 'relay': self.name, 'target': self.target.lower(), 'mtu': connection.att_mtu})
        await self.advertise()

    async def advertise(self) -> None:
        uuid_le = bytes.fromhex(SERVICE_UUID.replace('-', ''))[::-1]
        name = f'GH-{self.name}'.encode()[:20]
        data = bytes([2, 0x01, 0x06, 17, 0x07]) + uuid_le + bytes([len(name) + 1, 0x09]) + name
        await self.device.start_advertising(advertising_data=data, scan_response_data=b'', advertising_interval_min=self.interval_ms,
                                            advertising_interval_max=self.interval_ms, auto_restart=False)

    def on_connection(self, connection: Connection) -> None:
        if str(connection.peer_address).upper().startswith(self.target.upper()):
            return  # the relay's own link to the peripheral
        self.gateway = connection
        self.up = Reassembler(MAX_MESSAGE_V2)
        emit({'event': 'relay-connected', 'relay': self.name, 'peer': str(connection.peer_address)})
        connection.on('disconnection', lambda reason: self.on_gateway_gone(reason))

    def on_gateway_gone(self, reason: int) -> None:
        self.gateway = None
        emit({'event': 'relay-disconnected', 'relay': self.name, 'reason': reason})

    def on_gateway_write(self, connection: Connection, value: bytes) -> None:
        try:
            message = self.up.push(bytes(value))
        except FrameError as e:
            emit({'event': 'error', 'relay': self.name, 'error': f'gateway chunk: {e}'})
            return
        if message is not None:
            emit({'event': 'relay', 'relay': self.name, 'dir': 'g2p', 'hex': message.hex()})
            self.to_peripheral.put_nowait(message)

    def on_peripheral_notify(self, value: bytes) -> None:
        try:
            message = self.down.push(bytes(value))
        except FrameError as e:
            emit({'event': 'error', 'relay': self.name, 'error': f'peripheral chunk: {e}'})
            return
        if message is None:
            return
        emit({'event': 'relay', 'relay': self.name, 'dir': 'p2g', 'hex': message.hex()})
        self.down_count += 1
        if self.down_count > 1:  # the first one is the hello; frames follow
            self.last_frame = message
            if self.alter_next:
                self.alter_next = False
                altered = bytearray(message)
                altered[-1] ^= 0x01  # the last byte of the AEAD tag
                message = bytes(altered)
                emit({'event': 'relay-altered', 'relay': self.name, 'hex': message.hex()})
        self.to_gateway.put_nowait(message)

    async def pump_to_peripheral(self) -> None:
        while True:
            message = await self.to_peripheral.get()
            assert self.peer is not None
            try:
                for chunk in frame(message, self.peer.connection.att_mtu, max_message=MAX_MESSAGE_V2):
                    await self.peer.gatt_client.write_value(self.remote.handle, chunk, with_response=True)
            except Exception as e:  # noqa: BLE001 - reported, the relay runs on
                emit({'event': 'error', 'relay': self.name, 'error': f'write to peripheral: {e}'})

    async def pump_to_gateway(self) -> None:
        while True:
            message = await self.to_gateway.get()
            gateway = self.gateway
            if gateway is None:
                emit({'event': 'error', 'relay': self.name, 'error': 'no gateway to notify'})
                continue
            try:
                for chunk in frame(message, gateway.att_mtu, max_message=MAX_MESSAGE_V2):
                    await self.device.notify_subscriber(gateway, self.characteristic, chunk)
            except Exception as e:  # noqa: BLE001 - the link may drop mid-way; reported
                emit({'event': 'error', 'relay': self.name, 'error': f'notify gateway: {e}'})

    def command(self, cmd: dict[str, Any]) -> bool:
        action = cmd.get('action')
        if action == 'alter':
            self.alter_next = True
            return True
        if action == 'inject' and self.last_frame is not None:
            count = int(cmd.get('count', 1))
            for _ in range(count):
                self.to_gateway.put_nowait(self.last_frame)
            emit({'event': 'relay-injected', 'relay': self.name, 'count': count, 'hex': self.last_frame.hex()})
            return True
        return False
