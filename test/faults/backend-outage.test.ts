/**
 * Fault: the backend goes away during a reconnect storm (protocol-v1 "Offline"). Devices
 * welcomed before the outage hold leases and get offline welcomes; the others get a reject
 * `backend-unavailable` with a `retry`. When the backend is back, everyone is welcomed; nobody
 * is left without an answer. The outage length is injectable: GATEHOUSE_FAULT_OUTAGE_MS
 * (default 20 000, as the issue asks), the storm size GATEHOUSE_FAULT_STORM (default 2000).
 */
import assert from 'node:assert/strict';
import type { Gateway } from '../../daemon/gateway.js';
import { FaultEnv, LogWatch, pool, type FaultPeripheral, type Outcome } from '../../testkit/faults.js';

const OUTAGE_MS = Number(process.env.GATEHOUSE_FAULT_OUTAGE_MS ?? 20_000);
const STORM = Number(process.env.GATEHOUSE_FAULT_STORM ?? 2000);

describe('faults: backend outage during a storm', function () {
  this.timeout(OUTAGE_MS + 150_000);
  let env: FaultEnv;
  let gateway: Gateway | undefined;
  const peripherals: FaultPeripheral[] = [];

  before(async () => {
    env = await FaultEnv.create({ devices: STORM });
  });

  after(async () => {
    for (const p of peripherals) p.close();
    await gateway?.stop();
    await env?.dispose();
  });

  it(`answers all ${STORM} peripherals during a ${OUTAGE_MS / 1000} s outage and welcomes all after it`, async () => {
    const watch = new LogWatch();
    const config = await env.config(await env.stateDir('outage'), {
      backend: { queueLimit: 100_000, circuit: { failureThreshold: 3, openMs: 500 }, connectTimeoutMs: 1000, requestTimeoutMs: 5000 },
    });
    gateway = await env.gateway(config, { logger: watch.logger() });
    const port = gateway.mqttAddresses().tcp?.port ?? 0;
    const offline: string[] = [];
    gateway.pipeline.events.subscribe((e) => {
      if (e.outcome === 'welcome' && e.offline && e.dev !== undefined) offline.push(e.dev);
    });

    // Before: half the fleet is welcomed online, so the gateway holds their leases.
    const half = env.devices.slice(0, STORM / 2);
    const before = await pool(half, 100, async (d) => {
      const p = env.peripheral(d);
      await p.connect(port);
      const r = await p.authenticate();
      p.close();
      return r;
    });
    assert.deepEqual(before.filter((r) => r.kind !== 'welcome'), [], 'every device is welcomed while the backend is up');

    // The outage starts; the storm hits the gateway while it lasts.
    await env.backend.close();
    const outageStart = Date.now();
    const storm = env.devices.map((d) => env.peripheral(d));
    peripherals.push(...storm);
    const during: Outcome[] = await pool(storm, STORM, async (p) => {
      await p.connect(port);
      return p.authenticate();
    });
    const stormSeconds = (Date.now() - outageStart) / 1000;
    assert.ok(stormSeconds * 1000 < OUTAGE_MS || OUTAGE_MS < 5000, `the storm (${stormSeconds} s) ran inside the outage`);
    const leased = new Set(half.map((d) => d.dev));
    const lost = during.filter((r) => r.kind === 'no-answer' || r.kind === 'welcome-refused');
    assert.deepEqual(lost, [], 'every peripheral gets an answer during the outage');
    during.forEach((r, i) => {
      const dev = env.devices[i]?.dev ?? '';
      if (leased.has(dev)) assert.equal(r.kind, 'welcome', `${dev} holds a lease: offline welcome`);
      else {
        assert.equal(r.kind, 'reject', `${dev} has no lease: reject`);
        if (r.kind === 'reject') {
          assert.equal(r.reason, 'backend-unavailable');
          assert.ok(r.retry > 0, 'the reject carries a retry');
        }
      }
    });
    assert.equal(new Set(offline).size, STORM / 2, 'the offline welcomes are counted as offline');
    await watch.waitFor((l) => l.message === 'offline decision: welcomed under a cached lease', 1000, 'offline decision logged');

    // The outage lasts its full length (the fault's duration, not a synchronisation), then recovery.
    const rest = OUTAGE_MS - (Date.now() - outageStart);
    if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    await env.startBackend();

    // The rejected peripherals retry (their `retry` hint, scaled down for the test) until welcomed.
    const rejected = storm.filter((_, i) => during[i]?.kind !== 'welcome');
    let attempts = 0;
    const after = await pool(rejected, rejected.length, async (p) => {
      for (let i = 0; i < 20; i += 1) {
        attempts += 1;
        const r = await p.authenticate();
        if (r.kind === 'welcome' || r.kind !== 'reject' || r.reason !== 'backend-unavailable') return r;
        await new Promise((res) => setTimeout(res, Math.min(r.retry, 1) * 250));
      }
      return { kind: 'no-answer', why: 'still rejected after 20 attempts' } as Outcome;
    });
    assert.deepEqual(after.filter((r) => r.kind !== 'welcome'), [], 'after recovery every peripheral is welcomed');
    assert.ok(attempts >= rejected.length);
    assert.equal(during.filter((r) => r.kind === 'welcome').length + after.length, STORM, 'none lost');
  });
});
