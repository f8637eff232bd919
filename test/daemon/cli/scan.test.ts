/**
 * `gatehouse scan` against a status server: without BLE one line says why and the exit code is
 * 4; with BLE a table (values normalised), the JSON answer, and --follow printing a line per new
 * sighting until stopped.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { main } from '../../../cli/main.js';
import { getText } from '../../../daemon/cli/client.js';
import { EXIT_NO_BLE, runScan } from '../../../daemon/cli/scan.js';
import { StatusServer } from '../../../daemon/status/server.js';
import type { ScanReport } from '../../../daemon/status/types.js';
import { captureIO } from '../../../testkit/cli-io.js';
import { normaliseCliText } from '../../../testkit/cli-text.js';
import { waitForEmitter } from '../../../testkit/wait.js';
import { TestSource } from '../status/fixtures.js';

class ScanSource extends TestSource {
  report: ScanReport = { ble: { available: false, reason: 'BLE is disabled in the config (ble.enabled: false)' }, peripherals: [] };
  readonly asked = new EventEmitter();
  getScan(): ScanReport {
    this.asked.emit('scan');
    return structuredClone(this.report);
  }
}

describe('daemon/cli: gatehouse scan', () => {
  let dir: string;
  let sock: string;
  let source: ScanSource;
  let server: StatusServer;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-scan-cli-'));
    sock = join(dir, 'status.sock');
    source = new ScanSource();
    server = new StatusServer({ socketPath: sock, source });
    await server.start();
  });
  afterEach(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('without BLE: one line saying why, exit code 4, nothing on stdout', async () => {
    for (const args of [['scan'], ['scan', '--follow']]) {
      const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
      assert.equal(await main(args, io), EXIT_NO_BLE);
      assert.equal(io.err(), 'gatehouse scan: no BLE: BLE is disabled in the config (ble.enabled: false)\n');
      assert.equal(io.out(), '');
    }
    source.report = { ble: { available: false, reason: 'BLE unavailable: no Bluetooth adapter (hci0 not found)' }, peripherals: [] };
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan', '--json'], io), EXIT_NO_BLE);
    assert.equal(io.err(), 'gatehouse scan: no BLE: BLE unavailable: no Bluetooth adapter (hci0 not found)\n');
    assert.deepEqual(JSON.parse(io.out()), source.report);
  });

  it('a source without a BLE transport answers available: false', async () => {
    await server.stop();
    server = new StatusServer({ socketPath: sock, source: new TestSource() });
    await server.start();
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan'], io), EXIT_NO_BLE);
    assert.equal(io.err(), 'gatehouse scan: no BLE: this daemon has no BLE transport to ask\n');
  });

  it('with BLE: every column, the advertised-only case, and the legend', async () => {
    const now = Date.now();
    source.report = {
      ble: { available: true, adapterState: 'poweredOn', scanning: true },
      limits: { maxEntries: 256, ttlSec: 300 },
      peripherals: [
        { address: 'c0:de:00:00:01:40', connectable: true, firstSeenAt: now - 5000, lastSeenAt: now - 3000, seen: 9, versions: [], versionsKnown: false, deny: { holdOffMs: 0, failures: 0 } },
        {
          address: 'c0:de:00:00:01:3e',
          name: 'GH-tag',
          rssi: -71,
          connectable: true,
          firstSeenAt: now - 60_000,
          lastSeenAt: now - 1000,
          seen: 40,
          versions: [1],
          versionsKnown: true,
          lastOutcome: { outcome: 'failed', at: now - 20_000, error: 'GH_BLE_TIMEOUT' },
          deny: { holdOffMs: 40_000, failures: 3 },
        },
      ],
    };
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan'], io), 0, io.err());
    assert.equal(
      normaliseCliText(io.out()),
      [
        'ADDRESS  NAME  RSSI  VERSIONS  HEARD  LAST  DENY',
        'c0:de:00:00:01:40  -  -  advertised  <AGO>  -  -',
        'c0:de:00:00:01:3e  GH-tag  -71 dBm  v1  <AGO>  failed GH_BLE_TIMEOUT, <AGO>  <IN> (3 failures)',
        '(NAME -: none advertised; RSSI -: not reported; LAST -: no exchange yet; DENY -: not held off)',
      ].join('\n'),
    );
  });

  it('--follow: a line per new sighting, none for an unchanged one, exit 0 when stopped', async () => {
    const now = Date.now();
    const tag = { address: 'c0:de:00:00:01:3e', rssi: -60, connectable: true, firstSeenAt: now, lastSeenAt: now, seen: 1, versions: [] as Array<1 | 2>, versionsKnown: false, deny: { holdOffMs: 0, failures: 0 } };
    source.report = { ble: { available: true, adapterState: 'poweredOn', scanning: true }, peripherals: [tag] };
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    const ac = new AbortController();
    const done = runScan(['--follow', '--json', '--interval-ms', '1'], io, ac.signal);
    // Three polls of the same sighting, then a new one with an outcome.
    for (let i = 0; i < 3; i++) await waitForEmitter(source.asked, 'scan', () => true, 'a poll', 5000);
    source.report = { ...source.report, peripherals: [{ ...tag, lastSeenAt: now + 500, seen: 2, rssi: -58, lastOutcome: { outcome: 'welcome', at: now + 400, dev: 'tag-1', version: 1 } }] };
    for (let i = 0; i < 2; i++) await waitForEmitter(source.asked, 'scan', () => true, 'a poll', 5000);
    ac.abort();
    assert.equal(await done, 0, io.err());
    const lines = io.out().trim().split('\n').map((l) => JSON.parse(l) as { rssi: number; lastOutcome?: { dev: string } });
    assert.deepEqual(lines.map((l) => [l.rssi, l.lastOutcome?.dev]), [[-60, undefined], [-58, 'tag-1']]);
  });

  it('--follow as text: the legend, a fixed header with TIME, one line per sighting', async () => {
    const seenAt = Date.UTC(2024, 4, 1, 14, 3, 7);
    source.report = {
      ble: { available: true, adapterState: 'poweredOn', scanning: true },
      peripherals: [{ address: 'c0:de:00:00:01:3e', name: 'GH-tag', rssi: -60, connectable: true, firstSeenAt: seenAt, lastSeenAt: seenAt, seen: 1, versions: [1, 2], versionsKnown: true, deny: { holdOffMs: 0, failures: 0 } }],
    };
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    const ac = new AbortController();
    const done = runScan(['-f', '--utc', '--interval-ms', '1'], io, ac.signal);
    for (let i = 0; i < 3; i++) await waitForEmitter(source.asked, 'scan', () => true, 'a poll', 5000);
    ac.abort();
    assert.equal(await done, 0, io.err());
    assert.equal(
      normaliseCliText(io.out()),
      [
        '(NAME -: none advertised; LAST -: no exchange yet; DENY -: not held off; TIME in UTC)',
        'TIME  ADDRESS  NAME  RSSI  VERSIONS  LAST  DENY',
        '2024-05-01 14:03:07Z  c0:de:00:00:01:3e  GH-tag  -60 dBm  v1,v2  -  -',
      ].join('\n'),
    );
  });

  it('/v1/scan takes no query parameters; a bad --interval-ms is a usage error', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan', '--interval-ms', 'x'], io), 2);
    const r = await getText(sock, '/v1/scan?all=1');
    assert.equal(r.status, 400);
    assert.match(r.body, /unknown query parameter/);
  });
});
