/**
 * The BLE transport through real noble (lib/noble.js, built with `with-bindings`) over the
 * emulated radio, with the real pipeline; FakeVerifier stands in for the backend.
 */
import assert from 'node:assert/strict';
import { HCI_LOCAL_HOST_TERMINATED } from '../../../../peripherals/reference/ble-emulated-gatt.js';
import { GATEHOUSE_CHARACTERISTIC_UUID, GATEHOUSE_SERVICE_UUID } from '../../../../protocol/ble.js';
import type { Challenge } from '../../../../protocol/index.js';
import { addressOf, GW, makeRig, recordWriteLengths, resultOf, waitForEmitter, waitForEvent, type Rig } from './rig.js';

describe('daemon/transports/ble/transport (real noble, emulated radio)', function () {
  let rig: Rig | undefined;

  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  async function welcomed(r: Rig, n: number, mtu: number): Promise<void> {
    const p = r.addPeripheral(n, { mtu });
    const result = await resultOf(p);
    assert.equal(result.kind, 'welcome');
    assert.ok(result.kind === 'welcome' && result.check.ok, `welcome failed the peripheral's checks: ${JSON.stringify(result)}`);
    const e = await r.exchangeOf(addressOf(n));
    assert.equal(e.outcome, 'welcome');
    assert.equal(e.dev, `dev-${n}`);
    assert.deepEqual(r.radio.violations, []);
  }

  it('discovers, connects and completes a full exchange at MTU 23, verified by the peripheral', async () => {
    rig = await makeRig();
    await rig.transport.start();
    assert.equal(rig.transport.stats().scanning, true);
    const maxWrite = recordWriteLengths(rig.radio);
    await welcomed(rig, 1, 23);
    // The challenge and the welcome went out in chunks of at most MTU-3 = 20 bytes.
    assert.equal(Math.max(...maxWrite), 20);
    assert.ok(maxWrite.length > 10);
    // protocol-v1: G disconnects after the welcome.
    assert.equal(rig.radio.linkCount, 0);
    assert.equal(rig.pipeline.stats().outstandingChallenges, 0);
  });

  it("binds the challenge to the connection: its dev names the BLE connection, the hello's dev is learned", async () => {
    rig = await makeRig();
    await rig.transport.start();
    const p = rig.addPeripheral(12);
    const challenge = waitForEmitter<[Challenge]>(
      p,
      'challenge',
      () => true,
      'challenge',
    );
    const [c] = await challenge;
    const e = await rig.exchangeOf(p.address);
    assert.equal(c.dev, e.connection);
    assert.match(c.dev, /^ble:\d+$/);
    assert.equal(c.gw, GW);
    assert.equal(e.dev, 'dev-12');
    assert.equal(rig.backend.requests[0]?.dev, 'dev-12');
  });

  it('relays a reject the pipeline answers instead of a challenge, then disconnects', async () => {
    // The pipeline takes one global token per challenge and one per hello.
    rig = await makeRig({ pipeline: { rateLimits: { globalPerMin: 2 } } });
    await rig.transport.start();
    await welcomed(rig, 13, 23);
    const p = rig.addPeripheral(14);
    const result = await resultOf(p);
    assert.equal(result.kind === 'reject' && result.reason, 'rate-limited');
    const e = await rig.exchangeOf(p.address);
    assert.equal(e.outcome, 'reject');
    assert.equal(e.reason, 'rate-limited');
    assert.equal(e.dev, undefined, 'no device id is known before a hello');
    assert.equal(rig.radio.linkCount, 0);
    assert.equal(rig.backend.requests.length, 1);
  });

  it('rejects an unregistered device and holds its address off', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const p = rig.addPeripheral(3, { register: false });
    const result = await resultOf(p);
    assert.deepEqual(result.kind === 'reject' && result.reason, 'unknown-device');
    const e = await rig.exchangeOf(addressOf(3));
    assert.equal(e.outcome, 'reject');
    assert.equal(e.reason, 'unknown-device');
    assert.ok(e.holdOffMs >= 60_000);
  });

  it('cleans up when a peripheral vanishes mid-exchange', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const gone = rig.addPeripheral(4, { misbehave: { vanishAfterChallenge: true } });
    const e = await rig.exchangeOf(addressOf(4));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_DISCONNECTED');
    assert.equal(gone.results.length, 0);
    assert.equal(rig.transport.stats().active, 0);
    assert.equal(rig.pipeline.stats().outstandingChallenges, 0, 'the connection was closed in the pipeline');
    // The transport carries on.
    await welcomed(rig, 5, 23);
  });

  it('aborts the exchange on a gap in the hello chunk indices', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const p = rig.addPeripheral(6, { misbehave: { skipChunkIndex: 1 } });
    const disconnected = waitForEmitter<[number]>(
      p,
      'disconnect',
      () => true,
      'disconnect',
    );
    const e = await rig.exchangeOf(addressOf(6));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_FRAME_GAP');
    assert.deepEqual(await disconnected, [HCI_LOCAL_HOST_TERMINATED]);
    assert.equal(p.results.length, 0, 'no welcome or reject after an aborted exchange');
    assert.equal(rig.backend.requests.length, 0, 'nothing reached the backend');
  });

  it('aborts the exchange on a 2 KiB message', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const p = rig.addPeripheral(7, { misbehave: { oversizeHello: 2048 } });
    const e = await rig.exchangeOf(addressOf(7));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_FRAME_OVERSIZE');
    assert.equal(p.results.length, 0);
    assert.equal(rig.backend.requests.length, 0);
  });

  it('times out a peripheral that never answers a write, and moves on', async () => {
    rig = await makeRig({ operationTimeoutMs: 1_000 });
    await rig.transport.start();
    rig.addPeripheral(8, { misbehave: { stallWrites: true } });
    const e = await rig.exchangeOf(addressOf(8));
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_TIMEOUT');
    assert.equal(rig.radio.linkCount, 0);
  });

  it('survives malformed advertisement data', async () => {
    rig = await makeRig();
    const malformed: boolean[] = [];
    rig.central.on('discover', (d) => malformed.push(d.malformed));
    await rig.transport.start();
    const svc = Buffer.from('84987abc71fe493ca15d1ddd7d599687', 'hex').reverse();
    // Service list fine, a name with control characters, then a structure whose length overruns.
    const odd = Buffer.concat([Buffer.from([0x11, 0x07]), svc, Buffer.from([0x05, 0x09, 0x62, 0x00, 0x07, 0x1b]), Buffer.from([0x1e, 0xff, 0x01])]);
    // Garbage from the first byte: noble's parser stops, no service, never reported.
    const garbage = Buffer.from([0x00, 0xff, 0x3f, 0x07, 0x84, 0x98]);
    rig.addPeripheral(9, { misbehave: { advertisingData: garbage } });
    const p = rig.addPeripheral(10, { misbehave: { advertisingData: odd } });
    const result = await resultOf(p);
    assert.ok(result.kind === 'welcome' && result.check.ok, 'a peripheral is judged by its hello, not its advertisement');
    assert.ok(malformed.includes(true), 'the control characters were flagged');
    await welcomed(rig, 11, 23);
    assert.equal(rig.radio.connectAttempts.get(addressOf(9).replace(/:/g, '')) ?? 0, 0);
  });

  it('serves five peripherals at once with at most two links, welcoming all five', async () => {
    rig = await makeRig({ transport: { maxConcurrent: 2 } });
    await rig.transport.start();
    const ps = [21, 22, 23, 24, 25].map((n) => rig!.addPeripheral(n, { mtu: n % 2 === 0 ? 23 : 247 }));
    const results = await Promise.all(ps.map((p) => resultOf(p, 20_000)));
    for (const r of results) assert.ok(r.kind === 'welcome' && r.check.ok);
    const events = await Promise.all(ps.map((p) => rig!.exchangeOf(p.address)));
    assert.deepEqual(events.map((e) => e.outcome), Array(5).fill('welcome'));
    assert.equal(rig.radio.maxConcurrentLinks, 2);
    assert.equal(rig.transport.stats().maxActive, 2);
    assert.equal(rig.transport.stats().welcomed, 5);
    assert.deepEqual(rig.radio.violations, []);
  });

  it('pauses on poweredOff (aborting the exchange) and resumes on poweredOn', async () => {
    rig = await makeRig();
    const order: string[] = [];
    rig.transport.on('state', (s) => order.push(`state:${s}`));
    rig.transport.on('connected', (c) => order.push(`connected:${c.address}`));
    await rig.transport.start();
    const stuck = rig.addPeripheral(31, { misbehave: { stallWrites: true } });
    await waitForEvent<[{ address: string }]>(
      (l) => rig!.transport.on('connected', l),
      (c) => c.address === stuck.address,
      'connection to the stuck peripheral',
    );
    rig.radio.setAdapterState('poweredOff');
    const aborted = await rig.exchangeOf(stuck.address);
    assert.equal(aborted.outcome, 'failed');
    assert.ok(aborted.error === 'GH_BLE_ADAPTER_OFF' || aborted.error === 'GH_BLE_DISCONNECTED', String(aborted.error));
    if (!order.includes('state:poweredOff')) {
      await waitForEvent<[string]>((l) => rig!.transport.on('state', l), (s) => s === 'poweredOff', 'poweredOff');
    }
    assert.equal(rig.transport.stats().scanning, false);
    const later = rig.addPeripheral(32);
    rig.radio.setAdapterState('poweredOn');
    const result = await resultOf(later);
    assert.ok(result.kind === 'welcome' && result.check.ok);
    assert.ok(order.indexOf('state:poweredOn') < order.indexOf(`connected:${later.address}`), order.join(' '));
    assert.ok(order.indexOf('state:poweredOff') < order.indexOf('state:poweredOn'), order.join(' '));
    assert.equal(rig.transport.stats().scanning, true);
  });

  it('holds a failing address off instead of reconnecting on every advertisement', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const bad = rig.addPeripheral(41, { misbehave: { skipChunkIndex: 2 } });
    const failed = await rig.exchangeOf(bad.address);
    assert.equal(failed.error, 'GH_BLE_FRAME_GAP');
    assert.equal(failed.holdOffMs, 60_000);
    const skipped = waitForEvent<[{ address: string; reason: string }]>(
      (l) => rig!.transport.on('skipped', l),
      (s) => s.address === bad.address && s.reason === 'held-off',
      'held-off skip',
    );
    // The bad peripheral keeps advertising; a whole good exchange later it was still left alone.
    await skipped;
    await welcomed(rig, 42, 23);
    assert.equal(rig.radio.connectAttempts.get(bad.address.replace(/:/g, '')), 1);
  });

  it('drops discoveries when the queue is full and still serves everyone as they advertise again', async () => {
    rig = await makeRig({ transport: { maxConcurrent: 1, maxQueued: 0 } });
    let queueFull = 0;
    rig.transport.on('skipped', (s) => {
      if (s.reason === 'queue-full') queueFull++;
    });
    await rig.transport.start();
    const ps = [51, 52, 53].map((n) => rig!.addPeripheral(n));
    const results = await Promise.all(ps.map((p) => resultOf(p)));
    for (const r of results) assert.ok(r.kind === 'welcome' && r.check.ok);
    assert.ok(queueFull > 0, 'some discoveries met a full queue');
    assert.equal(rig.radio.maxConcurrentLinks, 1);
  });

  it('fails a peripheral whose characteristic does not notify (GATT mismatch)', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const p = rig.addPeripheral(61);
    p.services = () => [
      { uuid: GATEHOUSE_SERVICE_UUID, characteristics: [{ uuid: GATEHOUSE_CHARACTERISTIC_UUID, properties: ['write'] }] },
    ];
    const e = await rig.exchangeOf(p.address);
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_GATT_MISMATCH');
    assert.equal(rig.radio.linkCount, 0);
    assert.deepEqual(rig.radio.violations, [], 'the gateway never subscribed to a characteristic without notify');
  });

  it('stop() aborts an exchange in progress and drops the link', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const stuck = rig.addPeripheral(71, { misbehave: { stallWrites: true } });
    await waitForEvent<[{ address: string }]>((l) => rig!.transport.on('connected', l), (c) => c.address === stuck.address, 'connection');
    const ended = rig.exchangeOf(stuck.address);
    await rig.transport.stop();
    const e = await ended;
    assert.equal(e.error, 'GH_BLE_ABORTED');
    assert.equal(rig.radio.linkCount, 0);
    assert.equal(rig.transport.stats().active, 0);
  });

  it('retries a scan start the controller never confirmed', async () => {
    rig = await makeRig({ operationTimeoutMs: 1_000, transport: { scanRetryMs: 10 } });
    const radio = rig.radio;
    const realStart = radio.startScanning.bind(radio);
    let calls = 0;
    radio.startScanning = (uuids, dup) => {
      if (++calls > 1) realStart(uuids, dup);
    };
    const failed = waitForEvent<[Error]>((l) => rig!.transport.on('error', l), () => true, 'scan error');
    await rig.transport.start();
    assert.equal((await failed)[0].message.includes('startScanning'), true);
    await welcomed(rig, 81, 23);
    assert.equal(calls, 2);
  });

  it('reconnects a peripheral after a power cycle that reported no disconnects', async () => {
    rig = await makeRig({ radio: { powerOffReportsDisconnects: false }, transport: { denyList: { baseMs: 0 } } });
    await rig.transport.start();
    const misbehave = { stallWrites: true };
    const p = rig.addPeripheral(91, { misbehave });
    await waitForEvent<[{ address: string }]>((l) => rig!.transport.on('connected', l), (c) => c.address === p.address, 'connection');
    const aborted = rig.exchangeOf(p.address);
    rig.radio.setAdapterState('poweredOff');
    assert.equal((await aborted).error, 'GH_BLE_ADAPTER_OFF');
    misbehave.stallWrites = false;
    rig.radio.setAdapterState('poweredOn');
    const result = await resultOf(p);
    assert.ok(result.kind === 'welcome' && result.check.ok, JSON.stringify(result));
    assert.equal(p.connections, 2);
  });

  it('reassembles a hello sent in 1-byte chunks, its index wrapping past 127', async () => {
    rig = await makeRig();
    await rig.transport.start();
    const p = rig.addPeripheral(101, { misbehave: { helloChunkPayload: 1 } });
    const [hello] = await waitForEmitter<[Uint8Array]>(
      p,
      'hello',
      () => true,
      'hello',
    );
    assert.ok(hello.length > 128, `hello of ${hello.length} bytes needs more than 128 chunks`);
    const result = await resultOf(p);
    assert.ok(result.kind === 'welcome' && result.check.ok);
  });

  it('ends an exchange at its deadline when the peripheral never answers the challenge', async () => {
    rig = await makeRig({ transport: { exchangeTimeoutMs: 1_000 } });
    await rig.transport.start();
    const p = rig.addPeripheral(111, { misbehave: { ignoreChallenge: true } });
    const e = await rig.exchangeOf(p.address);
    assert.equal(e.outcome, 'failed');
    assert.equal(e.error, 'GH_BLE_TIMEOUT');
    assert.equal(rig.radio.linkCount, 0);
    assert.equal(rig.pipeline.stats().outstandingChallenges, 0, 'the unanswered challenge was dropped with the connection');
  });

  it('drops a challenge the pipeline issues after the exchange was already aborted', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let issued: Promise<Uint8Array> | undefined;
    rig = await makeRig({
      transport: { exchangeTimeoutMs: 1_000 },
      wrapPipeline: (p) => ({
        challenge: (conn, dev) => p.challenge(conn, dev),
        hello: (conn, bytes, dev) => p.hello(conn, bytes, dev),
        connectionClosed: (conn) => p.connectionClosed(conn),
        reject: (conn, dev, reason, version) => p.reject(conn, dev, reason, version),
        connectionChallenge: (conn) => (issued = gate.then(() => p.connectionChallenge(conn))),
      }),
    });
    await rig.transport.start();
    const p = rig.addPeripheral(121);
    const e = await rig.exchangeOf(p.address);
    assert.equal(e.error, 'GH_BLE_TIMEOUT');
    assert.ok(issued, 'the transport asked for a challenge');
    release();
    await issued;
    assert.equal(rig.pipeline.stats().outstandingChallenges, 0);
  });

  it('drops a connection that completes after its connect call timed out', async () => {
    rig = await makeRig({ operationTimeoutMs: 1_000 });
    await rig.transport.start();
    const release = rig.radio.holdConnections();
    const p = rig.addPeripheral(131);
    const e = await rig.exchangeOf(p.address);
    assert.equal(e.error, 'GH_BLE_TIMEOUT');
    const dropped = waitForEmitter<[number]>(
      p,
      'disconnect',
      () => true,
      'the late link to be dropped',
    );
    release();
    assert.deepEqual(await dropped, [HCI_LOCAL_HOST_TERMINATED]);
    assert.equal(rig.radio.linkCount, 0);
    assert.equal(p.connections, 1);
  });
});

