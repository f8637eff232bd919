"""The Bumble link process of the BLE test stack (docs/ble.md "HCI test stack").

One Bumble LocalLink carries:
- the central's controller, exposed to the host (noble) as an HCI UART on a pty;
- N peripherals, each a full Bumble Device (its own controller, host, L2CAP, ATT, GATT server)
  with the Gatehouse service, running the peripheral side of protocol v1 (protocol.py) on the v1
  characteristic and/or protocol v2 (protocol_v2.py) on the v2 characteristic (`versions`);
- relays (`relays`, relay.py): a device that is a peripheral to the gateway and a central to
  another peripheral, forwarding the exchange and then injecting and altering frames.

A v2 peripheral keeps the link after the welcome and follows `schedule` (frames to send, each
`afterMs` the previous one), and sends frames on `{"cmd": "send", "peripheral", "frame"}`.
It reports `frame`, `denied`, `drop`, `sent` and `session-end` events.

Control channel: the configuration is a JSON file named on the command line; events go to
stdout as JSON lines (`ready`, `connected`, `outcome`, `error`, `stopped`); commands come on
stdin as JSON lines (`{"cmd": "stop"}`). End of stdin stops the process too, so it never
outlives the harness that started it. Every HCI packet between the host and the central's
controller is written to a trace file (JSON lines) when one is configured.

Here: the central's controller, the HCI trace and the process's run; the peripherals are
peripheral.py (GATT, v1) and peripheral_v2.py (v2), the control channel control.py.

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
from typing import Any, TextIO

from bumble import hci
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport

from .control import emit, read_commands
from .peripheral import GatehousePeripheral
from .relay import GatehouseRelay

CENTRAL_ADDRESS = 'C0:FF:EE:00:00:01'

log = logging.getLogger('gatehouse_bumble.link')


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
    relays = [GatehouseRelay(r, interval, link) for r in config.get('relays', [])]
    for r in relays:
        await r.start()
    emit({
        'event': 'ready', 'pty': os.path.realpath(pty_path), 'ptyLink': pty_path, 'pid': os.getpid(),
        'peripherals': [{'name': p.name, 'address': p.address.lower(), 'dev': p.protocol.dev, 'publicKey': p.protocol.public_key.hex()} for p in peripherals],
        'relays': [{'name': r.name, 'address': r.address.lower(), 'target': r.target.lower()} for r in relays],
    })
    commands = loop.create_task(read_commands(stop, peripherals, relays))
    await stop.wait()
    commands.cancel()
    for r in relays:
        for t in r.tasks:
            t.cancel()
    for d in [p.device for p in peripherals] + [r.device for r in relays]:
        try:
            await asyncio.wait_for(d.power_off(), 1.0)
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
