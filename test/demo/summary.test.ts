/**
 * The demo's verdict (`--once`): every peripheral welcomed, every frame receipted, every receipted
 * frame in the backend's store and the command acknowledged there; anything short of that fails.
 */
import assert from 'node:assert/strict';
import type { GatehouseConfig } from '../../daemon/config/schema.js';
import type { MqttAuthResultV2 } from '../../peripherals/reference/mqtt-peripheral-v2.js';
import type { DataRoundResult } from '../../demo/data-round.js';
import { printSummary } from '../../demo/summary.js';

function verdict(data: DataRoundResult): { ok: boolean; out: string } {
  const lines: string[] = [];
  const ok = printSummary({
    say: (l) => lines.push(l),
    results: [{ dev: 'd-1', result: { kind: 'established' } as MqttAuthResultV2, ms: 1 }],
    data,
    config: { status: { socketPath: '/run/x.sock' } } as GatehouseConfig,
    mqttUrl: 'mqtt://127.0.0.1:1883',
    outsideKey: '/k',
    session: undefined,
    backend: undefined,
    endpoint: undefined,
    backendProcess: undefined,
    dir: '/d',
  });
  return { ok, out: lines.join('\n') };
}

describe('demo summary verdict', () => {
  const acked = { dev: 'd-1', cid: 1, acked: true };

  it('passes when every frame was receipted and stored and the command acked, and prints the counts', () => {
    const r = verdict({ sent: 3, receipted: 3, stored: 3, command: acked });
    assert.equal(r.ok, true);
    assert.match(r.out, /frames sent, receipted, stored at the backend +3, 3, 3$/m);
    assert.match(r.out, /command down, acked +cid 1 to d-1: acked \(done at the backend\)$/m);
  });

  it('fails when a receipted frame is missing at the backend, a frame was not receipted, or the command was not acked', () => {
    assert.equal(verdict({ sent: 3, receipted: 3, stored: 2, command: acked }).ok, false);
    assert.equal(verdict({ sent: 3, receipted: 2, stored: 2, command: acked }).ok, false);
    const notAcked = verdict({ sent: 3, receipted: 3, stored: 3, command: { dev: 'd-1', cid: 1, acked: false } });
    assert.equal(notAcked.ok, false);
    assert.match(notAcked.out, /NOT acked/);
    assert.equal(verdict({ sent: 3, receipted: 3, stored: 3, command: acked, error: 'timed out' }).ok, false);
  });

  it('a command skipped (backend in its own process) does not fail it', () => {
    const r = verdict({ sent: 3, receipted: 3, stored: 3, command: { skipped: 'the backend runs as its own process' } });
    assert.equal(r.ok, true);
    assert.match(r.out, /command down, acked +skipped: /);
  });
});
