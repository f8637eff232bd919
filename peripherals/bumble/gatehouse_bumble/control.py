"""The link process's control channel (link.py): events out on stdout as JSON lines, commands in on
stdin as JSON lines (`stop`, `send`); end of stdin stops the process.
"""
from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .peripheral import GatehousePeripheral
    from .relay import GatehouseRelay


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(',', ':')) + '\n')
    sys.stdout.flush()


def frame_of(spec: dict[str, Any]) -> dict[str, Any]:
    """A frame payload from the control channel's JSON: `body` is UTF-8 text, `bodyHex` hex."""
    p = {k: v for k, v in spec.items() if k not in ('body', 'bodyHex')}
    if 'bodyHex' in spec:
        p['body'] = bytes.fromhex(spec['bodyHex'])
    elif 'body' in spec:
        p['body'] = str(spec['body']).encode('utf-8')
    return p


async def read_commands(stop: asyncio.Event, peripherals: 'list[GatehousePeripheral]', relays: 'list[GatehouseRelay]' = []) -> None:  # noqa: B006 - never mutated
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
        if isinstance(cmd, dict) and cmd.get('cmd') == 'relay':
            relay = next((r for r in relays if r.name == cmd.get('relay')), None)
            if relay is None or not relay.command(cmd):
                emit({'event': 'error', 'error': f'cannot relay {cmd!r}: no such relay, or nothing to inject yet'})
            continue
        emit({'event': 'error', 'error': f'unknown command {cmd!r}'})
    stop.set()
