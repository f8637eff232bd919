/**
 * A welcomed v1 MQTT connection lasts no longer than its lease (security finding 3): the
 * transport closes it at min(lease exp, protocol.maxSessionAgeSec), counts it and logs it. Real
 * aedes on loopback, the real pipeline, the reference peripheral on mqtt.js; the backend is the
 * FakeVerifier (leases expire an hour after they are issued); the transport's timers run on an
 * injected clock, so the hour passes without waiting.
 */
import assert from 'node:assert/strict';
import { ManualClock } from '../../../../testkit/manual-clock.js';
import type { FakeSessionProvider, FakeVerifier } from '../../../fakes/FakeVerifier.js';
import { closed, fakeBackend, peripheralFor, startHarness, type Harness } from './harness.js';

/** The FakeVerifier's lease lifetime. */
const LEASE_SECONDS = 3600;

describe('daemon/transports/mqtt v1 welcome expiry (lease exp, protocol.maxSessionAgeSec)', function () {
  this.timeout(30_000);
  let backend: FakeVerifier;
  let sessions: FakeSessionProvider;
  let h: Harness | undefined;

  before(async () => {
    ({ backend, sessions } = await fakeBackend());
    backend.addDevice('exp-a');
    backend.addDevice('exp-b');
  });

  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  async function welcomed(dev: string): Promise<ReturnType<typeof peripheralFor>> {
    const signer = backend.devices.get(dev);
    assert.ok(signer);
    const p = peripheralFor((h as Harness).url, signer, backend.backendKeys());
    await p.connect();
    assert.equal((await p.authenticate()).kind, 'authenticated');
    return p;
  }

  it('closes a welcomed v1 connection when its lease expires, not before, and counts it', async () => {
    const clock = new ManualClock(Date.now());
    h = await startHarness(backend, sessions, { transport: { clock } });
    const p = await welcomed('exp-a');
    // The lease was issued this second or the one before the welcome: life is 3599 or 3600 s.
    clock.advance((LEASE_SECONDS - 2) * 1000);
    await p.client.publishAsync('devices/exp-a/t', 'before expiry', { qos: 1 });
    assert.ok(p.client.connected, 'still welcomed before the lease expires');
    assert.equal(h.transport.stats().closedExpired, 0);
    clock.advance(2000);
    await closed(p.client);
    assert.equal(h.transport.stats().closedExpired, 1);
    await p.close();
  });

  it('closes it at protocol.maxSessionAgeSec when that comes before the lease expires', async () => {
    const clock = new ManualClock(Date.now());
    h = await startHarness(backend, sessions, { transport: { clock }, pipeline: { maxSessionAgeSec: 120 } });
    const p = await welcomed('exp-b');
    clock.advance(119_000);
    await p.client.publishAsync('devices/exp-b/t', 'at 119 s', { qos: 1 });
    assert.ok(p.client.connected);
    clock.advance(1000);
    await closed(p.client);
    assert.equal(h.transport.stats().closedExpired, 1);
    // The device may authenticate again (a new lease, a new life).
    const again = await welcomed('exp-b');
    assert.ok(again.client.connected);
    await again.close();
    await p.close();
  });

  it('a connection that closed before its expiry leaves no timer behind', async () => {
    const clock = new ManualClock(Date.now());
    h = await startHarness(backend, sessions, { transport: { clock } });
    const p = await welcomed('exp-a');
    assert.ok(clock.pending >= 1, 'the expiry timer is armed');
    await p.close();
    const deadline = Date.now() + 10_000;
    while (h.transport.stats().connections > 0) {
      if (Date.now() > deadline) throw new Error('the transport never saw the close');
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(clock.pending, 0, 'no auth or expiry timer left');
    clock.advance(LEASE_SECONDS * 1000);
    assert.equal(h.transport.stats().closedExpired, 0);
  });
});
