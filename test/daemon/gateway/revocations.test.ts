/**
 * Revocation polls blocked (security finding): an attacker who cuts the gateway off from the
 * backend also stops the revocation feed. The real daemon (a child process on swtpm, the
 * reference backend, a peripheral over MQTT): once `backend.revocations.maxFailedPolls` polls
 * failed in a row, the offline welcome a cached lease would have given is refused and the status
 * socket and /metrics say so; once a poll succeeds again, the status says offline welcomes are
 * allowed again.
 */
import assert from 'node:assert/strict';
import type { StatusReport } from '../../../daemon/status/types.js';
import { killAllChildren } from '../../../testkit/daemon.js';
import { unixRequest } from '../../../testkit/unix-http.js';
import { authenticate, deriveConfig, device, mqttPeripheral, sectionOf, startDaemon, startRig, stopDaemon, type Rig, type RunningDaemon } from './fixture.js';

describe('daemon as a child process: revocation polls blocked', function () {
  this.timeout(120_000);
  let rig: Rig;
  let daemon: RunningDaemon | undefined;

  before(async () => {
    rig = await startRig('rv', { devices: 1 });
  });

  after(async () => {
    if (daemon !== undefined) await stopDaemon(daemon).catch(() => undefined);
    await killAllChildren();
    await daemon?.ns.close();
    await rig?.close();
  });

  async function get(path: string): Promise<string> {
    const r = await unixRequest(rig.system.config.status.socketPath, path);
    assert.equal(r.status, 200, r.body);
    return r.body;
  }

  async function status(): Promise<StatusReport> {
    return JSON.parse(await get('/v1/status')) as StatusReport;
  }

  /** Asks the status socket until `cond` holds (bounded; each ask is a round trip to the daemon). */
  async function until(cond: (s: StatusReport) => boolean, what: string, ms = 30_000): Promise<StatusReport> {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = await status();
      if (cond(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}; last status ${JSON.stringify(s.backend)}`);
    }
  }

  it('refuses the offline welcome of a cached lease after maxFailedPolls failed polls, shows it in status and /metrics, and recovers after a successful poll', async () => {
    const config = await deriveConfig(rig, 'revocations.yaml', (c) => {
      const backend = sectionOf(c, 'backend');
      backend.revocationPollSec = 1;
      backend.revocations = { maxFailedPolls: 2 };
      backend.circuit = { ...(backend.circuit as Record<string, unknown> | undefined), openMs: 100 };
    });
    daemon = await startDaemon(config);
    const dev = device(rig.system, 0);
    const online = mqttPeripheral(rig.system, dev, rig.mqttPort);
    assert.equal((await authenticate(online)).kind, 'authenticated', 'online welcome: the lease is cached');
    await online.close();
    const healthy = await status();
    assert.deepEqual(healthy.backend.revocations, { stale: false, failedPollsInARow: 0, offlineWelcomes: 'allowed' });

    await rig.system.stopBackend();
    try {
      const stale = await until((s) => s.backend.revocations?.stale === true, 'revocation feed stale');
      assert.equal(stale.backend.revocations?.offlineWelcomes, 'refused');
      assert.ok((stale.backend.revocations?.failedPollsInARow ?? 0) >= 2);
      assert.equal(stale.state, 'degraded');
      const p = mqttPeripheral(rig.system, dev, rig.mqttPort);
      const refused = await authenticate(p);
      await p.close();
      assert.equal(refused.kind, 'rejected', JSON.stringify(refused));
      assert.ok(refused.kind === 'rejected' && refused.reason === 'backend-unavailable');
      const metrics = await get('/metrics');
      assert.match(metrics, /^gatehouse_revocations_stale 1$/m);
      assert.match(metrics, /^gatehouse_offline_refused_stale_total 1$/m);
      assert.equal((await status()).decisions.offline, 0, 'no offline welcome was given');
    } finally {
      await rig.system.restartBackend();
    }
    const back = await until((s) => s.backend.revocations?.stale === false, 'revocation feed heard again');
    assert.deepEqual(back.backend.revocations, { stale: false, failedPollsInARow: 0, offlineWelcomes: 'allowed' });
    assert.match(await get('/metrics'), /^gatehouse_revocations_stale 0$/m);
    assert.equal((await stopDaemon(daemon)).code, 0, daemon.child.stderr());
    daemon = undefined;
  });
});
