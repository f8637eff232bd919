"""The Bumble link process of the BLE test stack (docs/ble.md "HCI test stack").

One Bumble LocalLink carries:
- the central's controller, exposed to the host (noble) as an HCI UART on a pty;
- N peripherals, each a full Bumble Device (its own controller, host, L2CAP, ATT, GATT server)
  with the Gatehouse service, running the peripheral side of protocol v1 (protocol.py) on the v1
  characteristic and/or protocol v2 (protocol_v2.py) on the v2 characteristic (`versions`);
- optionally relays (`relay`): a Device that is a peripheral to the gateway and a central to
  another peripheral, forwarding the exchange and then injecting and altering frames.

A v2 peripheral keeps the link after the welcome and follows `schedule` (frames to send, each
`afterMs` the previous one), and sends frames on `{"cmd": "send", "peripheral", "frame"}`.
It reports `frame`, `denied`, `drop`, `sent` and `session-end` events.

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

from .framing import MAX_MESSAGE_V2, FrameError, Reassembler, frame
from .protocol import Peripheral, ProtocolError, decode_reject, message_type
from .cbor import CborError
from . import protocol_v2 as v2

SERVICE_UUID = '84987abc-71fe-493c-a15d-1ddd7d599687'
V1_CHARACTERISTIC_UUID = '84987abd-71fe-493c-a15d-1ddd7d599687'
V2_CHARACTERISTIC_UUID = '84987abe-71fe-493c-a15d-1ddd7d599687'
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
    version: int = 1
    session: v2.Session | None = None
    reported: bool = False
    received: int = 0
    started: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


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
                self.characteristic = Characteristic(
                    V1_CHARACTERISTIC_UUID,
                    Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY,
                    Characteristic.WRITEABLE,
                    CharacteristicValue(write=self.on_write),
                )
                chars.append(self.characteristic)
            if 2 in self.versions:
                self.characteristic_v2 = Characteristic(
                    V2_CHARACTERISTIC_UUID,
                    Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY,
                    Characteristic.WRITEABLE,
                    CharacteristicValue(write=self.on_write_v2),
                )
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

    # --- protocol v2 on the v2 characteristic -----------------------------------------------

    def on_write_v2(self, connection: Connection, value: bytes) -> None:
        state = self.links.get(connection.handle)
        if state is None or state.stage in ('done', 'ended'):
            return
        if state.version != 2:
            if state.stage != 'challenge':
                return  # this link speaks v1
            state.version = 2
            state.reassembler = Reassembler(MAX_MESSAGE_V2)
        state.write_sizes.append(len(value))
        try:
            message = state.reassembler.push(bytes(value))
        except FrameError as e:
            if state.stage == 'session':
                self.end_session(state, 'framing', str(e))
            else:
                self.outcome(state, 'incomplete', code=e.code, detail=str(e))
            return
        if message is None:
            return
        if state.stage == 'challenge':
            self.on_challenge_v2(state, message)
        elif state.stage == 'answer':
            self.on_answer_v2(state, message)
        elif state.stage == 'session':
            self.on_frame(state, message)

    def on_challenge_v2(self, state: LinkState, message: bytes) -> None:
        if self.misbehave.get('neverAnswer'):
            state.stage = 'silent'
            return
        try:
            if v2.down_message_type(message) == 'reject':
                r = v2.decode_reject_v2(message)
                self.outcome(state, 'rejected', reason=r.reason, retry=r.retry, signed=r.signed)
                return
            hello = self.protocol_v2.hello(message)
        except (CborError, ProtocolError) as e:
            self.outcome(state, 'incomplete', code=e.code, detail=f'challenge: {e}')
            return
        state.stage = 'answer'
        state.tasks.append(asyncio.get_running_loop().create_task(self.notify(state, hello)))

    def on_answer_v2(self, state: LinkState, message: bytes) -> None:
        try:
            kind = v2.down_message_type(message)
        except (CborError, ProtocolError) as e:
            self.protocol_v2.abandon()
            self.outcome(state, 'refused', code='GH_WELCOME_MALFORMED', detail=str(e))
            return
        if kind == 'reject':
            self.protocol_v2.abandon()
            try:
                r = v2.decode_reject_v2(message)
                self.outcome(state, 'rejected', reason=r.reason, retry=r.retry, signed=r.signed)
            except (CborError, ProtocolError) as e:
                self.outcome(state, 'refused', code='GH_REJECT_MALFORMED', detail=str(e))
            return
        result, session = self.protocol_v2.welcome(message)
        if session is None:
            # Refused: send nothing more, pe is erased; the gateway ends the link.
            self.outcome(state, 'refused', code=result.code, detail=result.detail, check=result.check)
            return
        state.session = session
        self.outcome(state, 'welcomed', stage='session', gw=session.gw, mode=session.mode, life=session.life, sid=session.sid.hex())
        loop = asyncio.get_running_loop()
        state.tasks.append(loop.create_task(self.run_schedule(state)))
        # P ends the session on its own timer after `life`.
        state.tasks.append(loop.create_task(self.life_timer(state, session.life)))

    async def life_timer(self, state: LinkState, life: int) -> None:
        await asyncio.sleep(life)
        if state.stage == 'session':
            await self.send_frame(state, {'type': 'bye', 'reason': 'expired'})
            self.end_session(state, 'expired', 'the session life is over')

    async def run_schedule(self, state: LinkState) -> None:
        for step in self.schedule:
            await asyncio.sleep(float(step.get('afterMs', 0)) / 1000)
            if state.stage != 'session':
                return
            await self.send_frame(state, frame_of(step['frame']))
            if step['frame'].get('type') == 'bye':
                self.end_session(state, 'bye-sent', 'the peripheral ended the session')
                return

    async def send_frame(self, state: LinkState, payload: dict[str, Any]) -> None:
        session = state.session
        if session is None or state.stage != 'session':
            return
        seq = session.sender.seq
        data = session.sender.seal(payload)
        session.sent[seq] = payload
        emit({'event': 'sent', 'peripheral': self.name, 'seq': seq, 'type': payload['type'], 'len': len(data)})
        await self.notify(state, data)

    def on_frame(self, state: LinkState, message: bytes) -> None:
        session = state.session
        assert session is not None
        r = session.receiver.open(message)
        if r.kind == 'drop':
            emit({'event': 'drop', 'peripheral': self.name, 'code': r.code, 'drops': session.receiver.drops})
            if session.receiver.drops >= v2.MAX_DROPS:
                self.spawn(state, self.bye_and_end(state, 'malformed'))
            return
        if r.kind == 'denied':
            emit({'event': 'denied', 'peripheral': self.name, 'seq': r.seq, 'code': r.code})
            return
        assert r.payload is not None
        state.received += 1
        p = r.payload
        event: dict[str, Any] = {'event': 'frame', 'peripheral': self.name, 'seq': r.seq, 'type': p['type']}
        if p['type'] == 'receipt':
            event.update({k: p[k] for k in ('upto', 'denied', 'busy', 'retry', 'lost') if k in p})
            for seq in list(session.sent):
                if seq <= p['upto']:
                    del session.sent[seq]
        elif p['type'] == 'bye':
            event['reason'] = p.get('reason')
        elif p['type'] == 'msg':
            event.update(topic=p['topic'], body=p['body'].hex())
        emit(event)
        if p['type'] == 'bye':
            self.end_session(state, 'bye-received', p.get('reason') or '')
        elif p['type'] == 'cmd':
            v = self.protocol_v2.on_command(session, p['cmd'])
            status = v.status if v.action != 'refuse' else 'refused'
            emit({'event': 'command', 'peripheral': self.name, 'action': v.action, 'cid': v.cid, 'code': v.code, 'status': status})
            self.spawn(state, self.send_frame(state, {'type': 'ack', 'cid': v.cid, 'status': status}))

    async def bye_and_end(self, state: LinkState, reason: str) -> None:
        await self.send_frame(state, {'type': 'bye', 'reason': reason})
        self.end_session(state, reason, 'sixteen frames dropped')

    def spawn(self, state: LinkState, coro: Any) -> None:
        state.tasks.append(asyncio.get_running_loop().create_task(coro))

    def end_session(self, state: LinkState, why: str, detail: str) -> None:
        session = state.session
        if session is None or state.stage == 'ended':
            return
        state.stage = 'ended'
        emit({'event': 'session-end', 'peripheral': self.name, 'dev': self.protocol.dev, 'why': why, 'detail': detail,
              'sent': session.sender.seq, 'received': state.received, 'drops': session.receiver.drops,
              'unsettled': sorted(session.sent), 'ms': round((time.monotonic() - state.started) * 1000, 1)})

    def send_command(self, frame_spec: dict[str, Any]) -> bool:
        for state in self.links.values():
            if state.stage == 'session':
                self.spawn(state, self.send_frame(state, frame_of(frame_spec)))
                return True
        return False


def frame_of(spec: dict[str, Any]) -> dict[str, Any]:
    """A frame payload from the control channel's JSON: `body` is UTF-8 text, `bodyHex` hex."""
    p = {k: v for k, v in spec.items() if k not in ('body', 'bodyHex')}
    if 'bodyHex' in spec:
        p['body'] = bytes.fromhex(spec['bodyHex'])
    elif 'body' in spec:
        p['body'] = str(spec['body']).encode('utf-8')
    return p


async def read_commands(stop: asyncio.Event, peripherals: 'list[GatehousePeripheral]') -> None:
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
        if isinstance(cmd, dict) and cmd.get('cmd') == 'send':
            target = next((p for p in peripherals if p.name == cmd.get('peripheral')), None)
            if target is None or not isinstance(cmd.get('frame'), dict) or not target.send_command(cmd['frame']):
                emit({'event': 'error', 'error': f'cannot send {cmd!r}: no such peripheral or no live v2 session'})
            continue
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
    commands = loop.create_task(read_commands(stop, peripherals))
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
