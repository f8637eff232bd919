"""Protocol v2 on the v2 characteristic of a Bumble peripheral (peripheral.py mixes this in): the
v2 challenge and welcome, then the session: scheduled and commanded frames, received frames,
relayed commands, the life timer and the session's end. Events go out through control.py.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bumble.device import Connection

from .cbor import CborError
from .control import emit, frame_of
from .framing import MAX_MESSAGE_V2, FrameError, Reassembler
from .link_state import LinkState
from .protocol import ProtocolError
from . import protocol_v2 as v2


class V2Behaviour:
    """The v2 half of `GatehousePeripheral`: it uses the peripheral's `links`, `name`, `protocol`,
    `protocol_v2`, `misbehave`, `schedule`, `outcome()` and `notify()`."""

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
