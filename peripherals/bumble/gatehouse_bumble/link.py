"""The Bumble link process of the BLE test stack (docs/ble.md "HCI test stack").

One Bumble LocalLink carries:
- the central's controller, exposed to the host (noble) as an HCI UART on a pty;
- N peripherals, each a full Bumble Device (its own controller, host, L2CAP, ATT, GATT server)
  with the Gatehouse service, running the peripheral side of protocol v1 (protocol.py).

Control channel: the configuration is a JSON file named on the command line; events go to
stdout as JSON lines (`ready`, `connected`, `outcome`, `error`, `stopped`); commands come on
stdin as JSON lines (`{"cmd": "stop"}`). End of stdin stops the process too, so it never
outlives the harness that started it. Every HCI packet between the host and the central's
controller is written to a trace file (JSON lines) when one is configured.

Run: .venv/bin/python -m gatehouse_bumble.link CONFIG.json   (with peripherals/bumble on PYTHONPATH)
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from bumble import hci
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from .framing import FrameError, Reassembler, frame
from .protocol import Peripheral, ProtocolError, decode_reject, message_type
from .cbor import CborError

SERVICE_UUID = '84987abc-71fe-493c-a15d-1ddd7d599687'
V1_CHARACTERISTIC_UUID = '84987abd-71fe-493c-a15d-1ddd7d599687'
CENTRAL_ADDRESS = 'C0:FF:EE:00:00:01'

log = logging.getLogger('gatehouse_bumble.link')


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(',', ':')) + '\n')
    sys.stdout.flush()


class Trace:
    """HCI packets between the host (noble) and the central's controller, as JSON lines."""

    def __init__(self, path: str | None) -> None:
        self.file: TextIO | None = open(path, 'w', encoding='utf-8') if path else None
        self.start = time.monotonic()

    def packet(self, direction: str, packet: hci.HCI_Packet) -> None:
        if self.file is None:
            return
        record: dict[str, Any] = {'ms': round((time.monotonic() - self.start) * 1000, 3), 'dir': direction}
        if isinstance(packet, hci.HCI_Command):
            record.update(kind='command', name=packet.name, opcode=f'0x{packet.op_code:04x}')
        elif isinstance(packet, hci.HCI_AclDataPacket):
            data = bytes(packet.data)
            record.update(kind='acl', handle=packet.connection_handle, pb=packet.pb_flag, len=len(data))
            # First fragment of an L2CAP frame on the ATT channel (CID 4): the ATT opcode and PDU head.
            if packet.pb_flag in (0, 2) and len(data) >= 5 and int.from_bytes(data[2:4], 'little') == 4:
                record.update(att=f'0x{data[4]:02x}', head=data[4:12].hex())
        elif isinstance(packet, hci.HCI_Event):
            record.update(kind='event', name=packet.name)
        else:
            record.update(kind='other', type=packet.hci_packet_type)
        self.file.write(json.dumps(record, separators=(',', ':')) + '\n')
        self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


class TracingController(Controller):
    """The central's controller: a Bumble Controller that records the HCI traffic with its host."""

    trace: Trace

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        self.trace.packet('host->controller', packet)
        super().on_hci_packet(packet)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        self.trace.packet('controller->host', packet)
        super().send_hci_packet(packet)


@dataclass
class LinkState:
    """One connection to one peripheral: reassembly, where the exchange is, what was written."""

    connection: Connection
    reassembler: Reassembler = field(default_factory=Reassembler)
    stage: str = 'challenge'
    write_sizes: list[int] = field(default_factory=list)
    notify_sizes: list[int] = field(default_factory=list)


class GatehousePeripheral:
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
        if self.misbehave.get('noCharacteristic'):
            # The service is there, the Gatehouse characteristic is not (another one is).
            other = Characteristic('84987aff-71fe-493c-a15d-1ddd7d599687', Characteristic.Properties.READ, Characteristic.READABLE, b'\x00')
            self.characteristic = None
            self.device.add_service(Service(SERVICE_UUID, [other]))
        else:
            self.characteristic = Characteristic(
                V1_CHARACTERISTIC_UUID,
                Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY,
                Characteristic.WRITEABLE,
                CharacteristicValue(write=self.on_write),
            )
            self.device.add_service(Service(SERVICE_UUID, [self.characteristic]))
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
        if state.stage not in ('done',):
            self.outcome(state, 'incomplete', code='GH_BLE_DISCONNECTED', detail=f'link lost at stage {state.stage} (reason 0x{reason:02x})')
        # Advertise again: the gateway's deny-list decides when it comes back.
        if not self.misbehave.get('once'):
            asyncio.get_running_loop().create_task(self.readvertise())

    async def readvertise(self) -> None:
        try:
            await self.advertise()
        except Exception as e:  # noqa: BLE001 - reported, the link process runs on
            emit({'event': 'error', 'peripheral': self.name, 'error': f'advertise: {e}'})

    def outcome(self, state: LinkState, outcome: str, **extra: Any) -> None:
        state.stage = 'done'
        self.outcomes += 1
        emit({
            'event': 'outcome', 'peripheral': self.name, 'dev': self.protocol.dev, 'outcome': outcome,
            'mtu': state.connection.att_mtu, 'writeSizes': state.write_sizes, 'notifySizes': state.notify_sizes, **extra,
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
        try:
            for chunk in frame(message, mtu):
                state.notify_sizes.append(len(chunk))
                assert self.characteristic is not None
                await self.device.notify_subscriber(state.connection, self.characteristic, chunk)
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


async def read_commands(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break  # the harness is gone: stop
        try:
            cmd = json.loads(line)
        except json.JSONDecodeError:
            emit({'event': 'error', 'error': 'control line is not JSON'})
            continue
        if isinstance(cmd, dict) and cmd.get('cmd') == 'stop':
            break
        emit({'event': 'error', 'error': f'unknown command {cmd!r}'})
    stop.set()


async def run(config: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    trace = Trace(config.get('trace'))
    link = LocalLink()
    pty_path: str = config['pty']
    transport = await open_transport(f'pty:{pty_path}')
    central = TracingController('central', host_source=transport.source, host_sink=transport.sink,
                                link=link, public_address=CENTRAL_ADDRESS)
    central.trace = trace
    # Bumble's LocalLink addresses LE data by the sender's random address, while noble connects
    # with the public one: give the central's controller the same address for both.
    central.random_address = central.public_address
    backend_keys = {kid: bytes.fromhex(k) for kid, k in config.get('backendKeys', {}).items()}
    interval = float(config.get('advertisingIntervalMs', 50))
    peripherals = [GatehousePeripheral(p, backend_keys, interval, link) for p in config.get('peripherals', [])]
    for p in peripherals:
        await p.start()
    emit({
        'event': 'ready', 'pty': os.path.realpath(pty_path), 'ptyLink': pty_path, 'pid': os.getpid(),
        'peripherals': [{'name': p.name, 'address': p.address.lower(), 'dev': p.protocol.dev, 'publicKey': p.protocol.public_key.hex()} for p in peripherals],
    })
    commands = loop.create_task(read_commands(stop))
    await stop.wait()
    commands.cancel()
    for p in peripherals:
        try:
            await asyncio.wait_for(p.device.power_off(), 1.0)
        except Exception:  # noqa: BLE001 - shutting down
            pass
    await transport.close()
    trace.close()
    emit({'event': 'stopped'})


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write('usage: python -m gatehouse_bumble.link CONFIG.json\n')
        sys.exit(2)
    with open(sys.argv[1], encoding='utf-8') as f:
        config = json.load(f)
    logging.basicConfig(level=os.environ.get('GATEHOUSE_BUMBLE_LOG', 'WARNING'), stream=sys.stderr)
    asyncio.run(run(config))


if __name__ == '__main__':
    main()
