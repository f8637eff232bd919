/**
 * `gatehouse peripherals DEV` for a device with a protocol-v2 session: the session and the
 * commands the gateway holds appear in its story (rendering only; the daemon-backed snapshot of
 * a v1 device is in test/daemon/gateway/fieldview.test.ts).
 */
import assert from 'node:assert/strict';
import { renderStory } from '../../../daemon/cli/peripherals.js';
import type { PeripheralInfo } from '../../../daemon/status/types.js';

describe('daemon/cli peripherals DEV: a v2 device', () => {
  it('shows its session (version, age, frames, drops) and the commands held for it', () => {
    const now = Date.UTC(2026, 11, 3, 12, 0, 0);
    const conn: PeripheralInfo = {
      dev: 'meter-7',
      transport: 'mqtt',
      connection: 'mqtt:12',
      remote: '127.0.0.1:50001',
      state: 'welcomed',
      since: now - 65_000,
      offline: false,
      leaseExp: now / 1000 + 3600,
      session: { version: 2, sid: '0011223344556677', ageMs: 65_000, lifeSeconds: 86_400, framesIn: 12, framesOut: 13, drops: 1, denied: 0, msgs: 4, msgDrops: 1 },
      commandsPending: 2,
    };
    const out = renderStory({ dev: 'meter-7', connections: [conn], failing: null, events: [] }, now, 'utc');
    assert.match(out, /^Session +protocol v2, 1m 5s old, frames in\/out 12\/13, 1 dropped; broker messages relayed 4, not relayed 1 \(queue full or session ended\)$/m);
    assert.match(out, /^Commands +2 held for this device/m);
    // A v1 connection has neither line.
    const v1 = renderStory({ dev: 'meter-7', connections: [{ ...conn, session: undefined, commandsPending: undefined }], failing: null, events: [] }, now, 'utc');
    assert.doesNotMatch(v1, /^(Session|Commands) /m);
  });
});
