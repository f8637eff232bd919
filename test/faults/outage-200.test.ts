/**
 * Fault (issue #16, data plane acceptance): the backend is stopped for 60 s while 200 protocol-v2
 * devices stream telemetry. Each device is the reference v2 peripheral on its own mqtt.js
 * connection to the gateway (the daemon's composition, in process, with swtpm); the backend is
 * the reference backend over HTTPS on its SQLite store. The backend goes away right after it
 * committed a batch and before it answered it; for the whole outage the devices' frames are still
 * receipted and the gateway's queue grows; the backend comes back on the same port and data, and
 * then every receipted (dev, sid, seq) is in the backend's store exactly once, with its body, none
 * missing, and the batch whose answer was lost is resent and counted as duplicates, not stored
 * again. GATEHOUSE_FAULT_DP_DEVICES (default 200) and GATEHOUSE_FAULT_DP_OUTAGE_MS (default
 * 60 000) scale it.
 */
import assert from 'node:assert/strict';
import type { Gateway } from '../../daemon/gateway.js';
import type { MqttReferencePeripheralV2 } from '../../peripherals/reference/mqtt-peripheral-v2.js';
import { FaultEnv, pool } from '../../testkit/faults.js';
import { StreamingDevice, stopBackendAfterNextStore, storedFrames } from '../../testkit/v2-fleet.js';
import { waitUntil } from '../../testkit/wait.js';

const DEVICES = Number(process.env.GATEHOUSE_FAULT_DP_DEVICES ?? 200);
const OUTAGE_MS = Number(process.env.GATEHOUSE_FAULT_DP_OUTAGE_MS ?? 60_000);
/** Each device's telemetry interval. */
const PERIOD_MS = 1000;

describe(`faults: backend outage of ${OUTAGE_MS / 1000} s while ${DEVICES} v2 devices stream telemetry`, function () {
  this.timeout(OUTAGE_MS + 300_000);
  let env: FaultEnv;
  let gateway: Gateway | undefined;
  const open: MqttReferencePeripheralV2[] = [];
  let stop = false;
  let streams: Promise<unknown> = Promise.resolve();

  before(async () => {
    env = await FaultEnv.create({ devices: DEVICES });
  });

  after(async () => {
    stop = true;
    await streams.catch(() => undefined);
    await Promise.allSettled(open.map((p) => p.close()));
    await gateway?.stop();
    await env?.dispose();
  });

  it('receipts continue and the queue grows during the outage; afterwards every receipted frame is stored exactly once', async () => {
    const config = await env.config(await env.stateDir('outage-200'), {
      backend: { circuit: { failureThreshold: 3, openMs: 1000 }, connectTimeoutMs: 1000, requestTimeoutMs: 5000 },
    });
    gateway = await env.gateway(config);
    const port = gateway.mqttAddresses().tcp?.port ?? 0;
    const stats = (): NonNullable<ReturnType<Gateway['dataPlaneStats']>> => {
      const s = gateway?.dataPlaneStats();
      assert.ok(s !== undefined, 'the gateway runs a data plane');
      return s;
    };

    const devices = await pool(env.devices, 20, (d) => StreamingDevice.open(env, d, port, open));
    streams = Promise.all(devices.map((d) => d.stream(() => stop, PERIOD_MS)));
    // A stream that fails (a denied frame, a missing receipt) fails the test now, not at the end.
    const failed = streams.then(() => undefined);
    failed.catch(() => undefined);
    const settled = (): number => devices.reduce((n, d) => n + d.settled.length, 0);
    await Promise.race([waitUntil(() => devices.every((d) => d.settled.length >= 2), 'every device streaming', 60_000), failed]);
    await waitUntil(() => stats().uploader.uploaded > 0, 'the first uploads', 30_000);

    // The outage: the backend stops right after its next commit, before answering it.
    const outage = await Promise.race([stopBackendAfterNextStore(env), failed.then(() => assert.fail('streams ended'))]);
    await outage.stopped;
    const depthAtStart = stats().queue.records;
    const receiptsBefore = settled();

    // It lasts its full length (the scenario, not a synchronisation), then the backend comes back.
    await Promise.race([new Promise((r) => setTimeout(r, Math.max(0, outage.at + OUTAGE_MS - Date.now()))), failed]);
    const depthAtEnd = stats().queue.records;
    const during = devices.map((d) => d.settled.filter((f) => f.at >= outage.at).length);
    const uploadFailures = stats().uploader.failures;
    await env.startBackend();
    const outageMs = Date.now() - outage.at;
    assert.ok(outageMs >= OUTAGE_MS, `the backend was away ${outageMs} ms`);
    assert.ok(during.every((n) => n > 0), `every device had frames receipted during the outage (fewest: ${Math.min(...during)})`);
    const receiptedDuring = during.reduce((a, b) => a + b, 0);
    assert.ok(depthAtEnd > depthAtStart && depthAtEnd >= receiptedDuring, `the queue grew and holds every frame receipted during the outage: ${depthAtStart} → ${depthAtEnd} records, ${receiptedDuring} receipted during the outage`);
    assert.ok(uploadFailures > 0, 'the uploader saw the outage');

    stop = true;
    await streams;
    await waitUntil(() => stats().queue.records === 0, 'the queue drained after recovery', 180_000);

    // The backend's store: each receipted frame once, with its body; nothing else.
    const stored = await storedFrames(env.backend.store);
    const receipted = devices.flatMap((d) => d.settled);
    const missing = receipted.filter((f) => !stored.has(f.key));
    const twice = [...stored].filter(([, bodies]) => bodies.length !== 1);
    const wrong = receipted.filter((f) => stored.get(f.key)?.[0] !== f.body);
    assert.deepEqual(missing.slice(0, 5), [], `${missing.length} of ${receipted.length} receipted frames missing at the backend`);
    assert.deepEqual(twice.slice(0, 5), [], `${twice.length} frames stored more than once`);
    assert.deepEqual(wrong.slice(0, 5), [], 'each stored with the body that was sent');
    assert.equal(stored.size, receipted.length, 'the backend stored nothing that was not receipted');

    // The batch whose answer the outage cut was sent again: counted as duplicates, not stored twice.
    const up = stats().uploader;
    assert.ok(outage.accepted > 0);
    assert.ok(up.duplicates >= outage.accepted, `the resent batch is answered as duplicates (${up.duplicates} of ${outage.accepted})`);
    // Each record is answered once (then it leaves the queue): accepted if that request stored it,
    // a duplicate if an unanswered one had.
    assert.equal(up.uploaded + up.duplicates, stored.size, 'every stored row answered once');
    assert.equal(up.refused, 0);
    console.log(`      ${DEVICES} devices, ${receipted.length} frames (${receiptedDuring} during the ${(outageMs / 1000).toFixed(1)} s outage), queue ${depthAtStart} → ${depthAtEnd}, receipts before ${receiptsBefore}, ${up.duplicates} duplicates, ${up.requests} upload requests`);
  });
});
