/**
 * The field tech's view: each read command run against a status server over the real event
 * ring and failing tracker, its rendered output compared with a snapshot (times that move with
 * the wall clock, ports and pids replaced), its JSON shape asserted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../../cli/main.js';
import { runEvents } from '../../../daemon/cli/events.js';
import type { PeripheralStory } from '../../../daemon/cli/peripherals.js';
import { REASON_ADVICE } from '../../../daemon/status/reason-advice.js';
import { StatusServer } from '../../../daemon/status/server.js';
import type { DecisionEvent } from '../../../daemon/pipeline/types.js';
import type { FailingPeripheral, PeripheralInfo } from '../../../daemon/status/types.js';
import { captureIO } from '../../../testkit/cli-io.js';
import { normaliseCliText } from '../../../testkit/cli-text.js';
import { TestSource } from '../status/fixtures.js';

/** 2023-11-14 22:13:20 UTC. */
const T0 = 1_700_000_000_000;

const normalise = normaliseCliText;

/** Every row's cell starts where its header's does (the table is aligned). */
function assertAligned(text: string, header: string, column: string, rowIndex = 1): void {
  const lines = text.split('\n');
  const h = lines.find((l) => l.startsWith(header)) ?? '';
  const row = lines[lines.indexOf(h) + rowIndex] ?? '';
  const at = h.indexOf(column);
  assert.ok(at > 0, `no column ${column} in ${h}`);
  assert.notEqual(row[at - 1], undefined);
  assert.equal(row[at - 1], ' ', `column ${column} misaligned:\n${h}\n${row}`);
  assert.notEqual(row[at], ' ', `column ${column} empty:\n${h}\n${row}`);
}

describe('daemon/cli: the field tech view', () => {
  let dir: string;
  let sock: string;
  let source: TestSource;
  let server: StatusServer;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-fieldview-'));
    sock = join(dir, 'status.sock');
    source = new TestSource(64);
    source.now = () => T0 + 60_000;
    server = new StatusServer({ socketPath: sock, source });
    await server.start();
    // dev-ok: welcomed online; dev-bad: keeps failing its signature; dev-far: not allowed here,
    // then rate-limited with a retry; a BLE device welcomed; a malformed hello before any id.
    source.decide('dev-ok', 'welcome', { at: T0, latencyMs: 0.3887090000000626, connection: 'mqtt:1', remote: '127.0.0.1:50000', leaseExp: 4_000_000_000 });
    for (let i = 0; i < 3; i++) source.decide('dev-bad', 'reject', { at: T0 + 1000 * (i + 1), latencyMs: 31.166844999999967, connection: `mqtt:${i + 2}`, remote: '127.0.0.1:50001', reason: 'bad-signature' });
    source.decide('dev-far', 'reject', { at: T0 + 5000, latencyMs: 1234.5678, connection: 'mqtt:5', remote: '10.0.0.7:41000', reason: 'not-allowed-here' });
    source.decide('dev-far', 'reject', { at: T0 + 6000, latencyMs: 0.05, connection: 'mqtt:5', remote: '10.0.0.7:41000', reason: 'rate-limited', retry: 3_000_000_000 });
    source.decide('ble-tag-1', 'welcome', { at: T0 + 7000, latencyMs: 812.4, transport: 'ble', connection: 'ble:1', remote: 'c0:ff:ee:00:00:01', leaseExp: 4_000_000_000 });
    source.decide('mqtt:6', 'reject', { at: T0 + 8000, latencyMs: 0.2, connection: 'mqtt:6', remote: '10.0.0.8:41001', reason: 'malformed' });
    source.peripherals = [
      { dev: 'dev-ok', transport: 'mqtt', connection: 'mqtt:1', remote: '127.0.0.1:50000', state: 'welcomed', since: T0, offline: false, leaseExp: 4_000_000_000 },
      { dev: 'dev-new', transport: 'mqtt', connection: 'mqtt:7', remote: '', state: 'pending', since: T0 + 9000, offline: false },
      { dev: 'ble-tag-1', transport: 'ble', connection: 'ble:1', remote: 'c0:ff:ee:00:00:01', state: 'welcomed', since: T0 + 7000, offline: true, leaseExp: 4_000_000_000 },
    ];
  });
  afterEach(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function cli(args: string[]): Promise<string> {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    const code = await main(args, io);
    assert.equal(code, 0, io.err());
    assert.equal(io.err(), '');
    return io.out();
  }

  it('events: latencies for people, times in UTC with --utc, every - explained', async () => {
    const out = await cli(['events', '--utc']);
    assert.equal(
      normalise(out),
      [
        'SEQ  TIME  TRANSPORT  DEVICE  OUTCOME  REASON  LATENCY  OFFLINE  REMOTE',
        '1  2023-11-14 22:13:20Z  mqtt  dev-ok  welcome  -  0.39 ms  no  127.0.0.1:50000',
        '2  2023-11-14 22:13:21Z  mqtt  dev-bad  reject  bad-signature  31 ms  no  127.0.0.1:50001',
        '3  2023-11-14 22:13:22Z  mqtt  dev-bad  reject  bad-signature  31 ms  no  127.0.0.1:50001',
        '4  2023-11-14 22:13:23Z  mqtt  dev-bad  reject  bad-signature  31 ms  no  127.0.0.1:50001',
        '5  2023-11-14 22:13:25Z  mqtt  dev-far  reject  not-allowed-here  1.2 s  no  10.0.0.7:41000',
        '6  2023-11-14 22:13:26Z  mqtt  dev-far  reject  rate-limited  0.05 ms  no  10.0.0.7:41000',
        '7  2023-11-14 22:13:27Z  ble  ble-tag-1  welcome  -  812 ms  no  c0:ff:ee:00:00:01 (not an identity)',
        '8  2023-11-14 22:13:28Z  mqtt  mqtt:6  reject  malformed  0.20 ms  no  10.0.0.8:41001',
        '(DEVICE -: no device id yet; REASON -: not a reject; REMOTE -: not reported; TIME in UTC)',
      ].join('\n'),
    );
    assertAligned(out, 'SEQ', 'LATENCY');
    assertAligned(out, 'SEQ', 'REMOTE');
    // Local time by default: the same instant without the Z, and the legend names the offset.
    const local = await cli(['events']);
    assert.match(local, /^1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +mqtt +dev-ok/m);
    assert.match(local, /TIME in local time, UTC[+-]\d\d:\d\d\)$/m);
    // JSON: numbers, to the microsecond.
    const json = (await cli(['events', '--json'])).trim().split('\n').map((l) => JSON.parse(l) as DecisionEvent);
    assert.deepEqual(json.map((e) => e.latencyMs), [0.389, 31.167, 31.167, 31.167, 1234.568, 0.05, 812.4, 0.2]);
    assert.deepEqual(Object.keys(json[0] ?? {}).sort(), ['at', 'connection', 'dev', 'latencyMs', 'leaseExp', 'offline', 'outcome', 'remote', 'seq', 'transport']);
    assert.equal(json[5]?.retry, 3_000_000_000);
  });

  it('events --dev: the daemon filters; --follow --dev prints only that device as it comes', async () => {
    const out = await cli(['events', '--dev', 'dev-far', '--utc', '--limit', '1']);
    assert.deepEqual(normalise(out).split('\n').slice(1, -1).map((l) => l.split('  ')[0]), ['5', '6']);
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    const ac = new AbortController();
    const done = runEvents(['--follow', '--dev', 'dev-ok', '--interval-ms', '20', '--utc'], io, ac.signal);
    await io.waitForOut('0.39 ms');
    source.decide('dev-bad', 'reject', { at: T0 + 20_000, latencyMs: 3, connection: 'mqtt:9' });
    source.decide('dev-ok', 'welcome', { at: T0 + 21_000, latencyMs: 4.25, connection: 'mqtt:10', remote: '127.0.0.1:50009' });
    await io.waitForOut('127.0.0.1:50009');
    ac.abort();
    assert.equal(await done, 0);
    const lines = normalise(io.out()).split('\n');
    assert.deepEqual(lines, [
      '(DEVICE -: no device id yet; REASON -: not a reject; REMOTE -: not reported; TIME in UTC)',
      'SEQ  TIME  TRANSPORT  DEVICE  OUTCOME  REASON  LATENCY  OFFLINE  REMOTE',
      '1  2023-11-14 22:13:20Z  mqtt  dev-ok  welcome  -  0.39 ms  no  127.0.0.1:50000',
      '10  2023-11-14 22:13:41Z  mqtt  dev-ok  welcome  -  4.3 ms  no  127.0.0.1:50009',
    ]);
    // A dev that is not an id is a usage error here and a 400 at the socket.
    const bad = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['events', '--dev', 'a b'], bad), 2);
    assert.match(bad.err(), /--dev must be a device id/);
  });

  it('peripherals: every column filled or explained; BLE addresses marked; --json keeps the numbers', async () => {
    const out = await cli(['peripherals']);
    assert.equal(
      normalise(out),
      [
        'DEVICE  TRANSPORT  STATE  SINCE  OFFLINE  LEASE EXPIRES  REMOTE  PROTO  AGE  FRAMES IN/OUT  DROPS  CMDS',
        'dev-ok  mqtt  welcomed  <AGO>  no  <IN>  127.0.0.1:50000  v1  -  -  -  -',
        'dev-new  mqtt  pending  <AGO>  no  -  -  -  -  -  -  -',
        'ble-tag-1  ble  welcomed  <AGO>  yes  <IN>  c0:ff:ee:00:00:01 (not an identity)  v1  -  -  -  -',
        '(LEASE EXPIRES -: not welcomed yet, no lease; REMOTE -: not reported by the transport; PROTO -: not welcomed yet; AGE, FRAMES, DROPS, CMDS -: no protocol-v2 session (v1 has no frames))',
      ].join('\n'),
    );
    assertAligned(out, 'DEVICE', 'LEASE EXPIRES');
    const doc = JSON.parse(await cli(['peripherals', '--json'])) as { peripherals: PeripheralInfo[] };
    assert.deepEqual(doc.peripherals[0], source.peripherals[0]);
  });

  it('peripherals --failing: count, last reason, next try, and what to do', async () => {
    const out = await cli(['peripherals', '--failing']);
    const bad = REASON_ADVICE['bad-signature'];
    const rate = REASON_ADVICE['rate-limited'];
    assert.equal(
      normalise(out),
      [
        'DEVICE  TRANSPORT  FAILURES  LAST REASON  LAST TRY  NEXT TRY  REMOTE',
        'dev-far  mqtt  2  rate-limited  <AGO>  <IN> (retry)  10.0.0.7:41000',
        'dev-bad  mqtt  3  bad-signature  <AGO>  now  127.0.0.1:50001',
        '(NEXT TRY now: the gateway imposes no wait)',
        '',
        `rate-limited: ${rate.meaning}`,
        `  -> ${rate.action}`,
        `bad-signature: ${bad.meaning}`,
        `  -> ${bad.action}`,
      ].join('\n'),
    );
    assertAligned(out, 'DEVICE', 'NEXT TRY');
    const doc = JSON.parse(await cli(['peripherals', '--failing', '--json'])) as { failing: FailingPeripheral[] };
    assert.deepEqual(doc.failing.map((f) => f.dev), ['dev-far', 'dev-bad']);
    assert.deepEqual(doc.failing[0], {
      dev: 'dev-far',
      transport: 'mqtt',
      connection: 'mqtt:5',
      remote: '10.0.0.7:41000',
      failures: 2,
      firstAt: T0 + 5000,
      lastAt: T0 + 6000,
      lastReason: 'rate-limited',
      reasons: { 'not-allowed-here': 1, 'rate-limited': 1 },
      nextAttemptAt: T0 + 6000 + 3_000_000_000_000,
      nextAttemptBy: 'retry',
      advice: rate,
    });
    // A welcome clears the device from the list.
    source.decide('dev-bad', 'welcome', { at: T0 + 30_000 });
    const after = JSON.parse(await cli(['peripherals', '--failing', '--json'])) as { failing: FailingPeripheral[] };
    assert.deepEqual(after.failing.map((f) => f.dev), ['dev-far']);
  });

  it('peripherals DEV: connections, lease, failures with advice, the events of that device', async () => {
    const out = await cli(['peripherals', 'dev-ok', '--utc']);
    assert.equal(
      normalise(out),
      [
        'Device  dev-ok',
        'Connected  mqtt mqtt:1, welcomed since 2023-11-14 22:13:20Z (<AGO>), remote 127.0.0.1:50000',
        'Lease  expires 2096-10-02 07:06:40Z (<IN>), welcomed online',
        'Failing  no rejects in the last hour since its last welcome',
        'Times  UTC',
        '',
        'Recent events:',
        'SEQ  TIME  TRANSPORT  DEVICE  OUTCOME  REASON  LATENCY  OFFLINE  REMOTE',
        '1  2023-11-14 22:13:20Z  mqtt  dev-ok  welcome  -  0.39 ms  no  127.0.0.1:50000',
        '(DEVICE -: no device id yet; REASON -: not a reject; REMOTE -: not reported; TIME in UTC)',
      ].join('\n'),
    );
    const far = await cli(['peripherals', 'dev-far', '--utc']);
    assert.equal(
      normalise(far).split('\n').slice(0, 5).join('\n'),
      [
        'Device  dev-far',
        'Connected  no (no open MQTT connection, no recent BLE welcome)',
        'Failing  2 reject(s) since 2023-11-14 22:13:25Z (1 not-allowed-here, 1 rate-limited); last rate-limited <AGO>, next try <IN> (retry)',
        `Meaning  ${REASON_ADVICE['rate-limited'].meaning}`,
        `Action  ${REASON_ADVICE['rate-limited'].action}`,
      ].join('\n'),
    );
    const story = JSON.parse(await cli(['peripherals', 'dev-far', '--json'])) as PeripheralStory;
    assert.deepEqual(Object.keys(story), ['dev', 'connections', 'failing', 'events']);
    assert.deepEqual(story.connections, []);
    assert.equal(story.failing?.failures, 2);
    assert.deepEqual(story.events.map((e) => [e.seq, e.reason, e.latencyMs]), [[5, 'not-allowed-here', 1234.568], [6, 'rate-limited', 0.05]]);
    const none = await cli(['peripherals', 'dev-nobody']);
    assert.match(none, /no events for dev-nobody in the daemon's ring/);
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['peripherals', 'dev-ok', '--failing'], io), 2);
    assert.match(io.err(), /DEV and --failing do not combine/);
  });

  it('status: times with how long ago or how soon, the failing count, the zone', async () => {
    const out = await cli(['status', '--utc']);
    assert.equal(
      normalise(out),
      [
        'Gateway  gw-test-1 (version 0.1.0, NOT production), pid <PID>',
        'State  running, up 5s (since 2023-11-14 22:13:20Z)',
        'Session  held, credential expires 2023-11-15 22:13:20Z (<AGO>)',
        'Backend  online, circuit closed, 0 queued, 0 in flight',
        'TPM  software, ready',
        'MQTT  tcp 127.0.0.1:1883; 1 connection(s)',
        'BLE  disabled',
        'Decisions  1 welcome, 0 reject, 0 offline',
        'Failing  2 peripheral(s) failing: gatehouse peripherals --failing',
        'Limits  rate 20/min per connection, 20/min per device, 480000/min in all',
        'Times  UTC',
      ].join('\n'),
    );
    const doc = JSON.parse(await cli(['status', '--json'])) as { failing: number };
    assert.equal(doc.failing, 2);
  });

  it('status: the v2 data plane (queue, uploader, commands) when the daemon runs one', async () => {
    source.uplink = {
      queue: { records: 12, bytes: 3456, oldestAgeSec: 42, acks: 2, busy: 5, expired: 1 },
      uploader: { circuit: 'open', uploaded: 300, duplicates: 4, refused: 3, acksUploaded: 7, failures: 2, lastSuccessAt: 1_700_000_000_000, lastError: 'connect: backend unreachable' },
      commands: { pending: 1, received: 9, relayed: 8, acked: 6, expired: 2, refused: 0 },
    };
    const lines = normalise(await cli(['status', '--utc'])).split('\n');
    assert.ok(lines.includes('Queue  12 record(s), 3.4 KiB, oldest 42s; 2 ack(s); 5 busy, 1 expired unsent'), lines.join('\n'));
    assert.ok(lines.includes('Uploader  circuit open, 300 uploaded, 4 duplicate(s), 3 refused, 7 ack(s); last ok 2023-11-14 22:13:20Z (<AGO>); 2 failure(s), last: connect: backend unreachable'), lines.join('\n'));
    assert.ok(lines.includes('Commands  1 pending, 8 relayed, 6 acked, 2 expired, 0 refused'), lines.join('\n'));
    const doc = JSON.parse(await cli(['status', '--json'])) as { uplink: unknown };
    assert.deepEqual(doc.uplink, source.uplink);
  });
});
