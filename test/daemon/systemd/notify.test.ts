import assert from 'node:assert/strict';
import { createSystemdNotifier, watchdogIntervalMs } from '../../../daemon/systemd/notify.js';
import { openNotifySocket, type NotifySocket } from '../../../testkit/notify-socket.js';

describe('daemon/systemd/notify', () => {
  let sock: NotifySocket;
  beforeEach(async () => {
    sock = await openNotifySocket();
  });
  afterEach(async () => {
    await sock.close();
  });

  it('is a no-op without NOTIFY_SOCKET', () => {
    const n = createSystemdNotifier({ env: {} });
    assert.equal(n.enabled, false);
    assert.equal(n.ready(), false);
    assert.equal(n.watchdog(), false);
    n.startWatchdog()();
    assert.deepEqual(sock.drain(), []);
  });

  it('sends READY, STATUS, STOPPING datagrams to the socket', async () => {
    const n = createSystemdNotifier({ env: { NOTIFY_SOCKET: sock.path } });
    assert.equal(n.enabled, true);
    assert.equal(n.ready('listening on 2 transports'), true);
    assert.equal(await sock.next(), 'READY=1\nSTATUS=listening on 2 transports');
    assert.equal(n.status('backend offline\nREADY=1'), true);
    assert.equal(await sock.next(), 'STATUS=backend offline READY=1', 'a newline cannot inject a second state');
    n.stopping();
    assert.equal(await sock.next(), 'STOPPING=1');
  });

  it('pings WATCHDOG=1 from a timer at half of WATCHDOG_USEC', async () => {
    const n = createSystemdNotifier({ env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '40000', WATCHDOG_PID: String(process.pid) } });
    assert.equal(n.watchdogIntervalMs, 20);
    const stop = n.startWatchdog();
    try {
      assert.equal(await sock.next(), 'WATCHDOG=1');
      assert.equal(await sock.next(), 'WATCHDOG=1');
    } finally {
      stop();
    }
  });

  it('ignores a watchdog meant for another pid or malformed', () => {
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, 4242), undefined);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 4242), 15000);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '-5' }, 4242), undefined);
    assert.equal(watchdogIntervalMs({}, 4242), undefined);
  });

  it('sends to an abstract-namespace socket (@name)', async () => {
    const abstract = await openNotifySocket(5, true);
    try {
      assert.ok(abstract.path.startsWith('@'));
      const n = createSystemdNotifier({ env: { NOTIFY_SOCKET: abstract.path } });
      assert.equal(n.ready(), true);
      assert.equal(await abstract.next(), 'READY=1');
    } finally {
      await abstract.close();
    }
  });

  it('reports a failed send without throwing', () => {
    const n = createSystemdNotifier({ env: { NOTIFY_SOCKET: `${sock.path}.absent` } });
    assert.equal(n.ready(), false);
  });
});
