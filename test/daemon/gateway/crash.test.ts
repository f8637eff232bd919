/**
 * kill -9 mid-exchange, then a restart on the same config and state (issue acceptance: "kill -9
 * then restart with state intact"): every state file still parses, the TPM key record is
 * byte-for-byte the same, the stale status socket does not stop the restart, peripherals are
 * welcomed again, and a lease persisted before the crash still serves an offline welcome.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { StatusReport } from '../../../daemon/status/types.js';
import { killAllChildren } from '../../../testkit/daemon.js';
import { unixRequest } from '../../../testkit/unix-http.js';
import { device, startDaemon, startRig, stopDaemon, StepPeripheral, type Rig, type RunningDaemon } from './fixture.js';

const STATE_FILES = ['session.json', 'revocations.json', 'tpm-key.json', 'tpm-key-auth.json'];
/** The lease store and the journal files SQLite keeps beside it while (or if killed while) open. */
const LEASE_FILES = ['leases.db', 'leases.db-wal', 'leases.db-shm', 'uplink.db', 'uplink.db-wal', 'uplink.db-shm'];

describe('daemon as a child process: kill -9 and restart', function () {
  this.timeout(120_000);
  let rig: Rig;
  let daemon: RunningDaemon | undefined;
  const peripherals: StepPeripheral[] = [];

  before(async () => {
    rig = await startRig('crash', { devices: 5 });
  });

  after(async () => {
    await Promise.all(peripherals.map((p) => p.close()));
    await killAllChildren();
    await daemon?.ns.close();
    await rig?.close();
  });

  function peripheral(i: number): StepPeripheral {
    const p = new StepPeripheral(rig.system, device(rig.system, i));
    peripherals.push(p);
    return p;
  }

  async function readState(): Promise<Map<string, unknown>> {
    const dir = rig.system.config.gateway.stateDir;
    const out = new Map<string, unknown>();
    for (const f of STATE_FILES) {
      const text = await readFile(join(dir, f), 'utf8');
      out.set(f, JSON.parse(text) as unknown);
    }
    // The leases as SQLite reads them (it recovers the WAL of a killed writer), by device.
    const db = new Database(join(dir, 'leases.db'), { readonly: true, fileMustExist: true });
    try {
      out.set('leases', db.prepare('SELECT dev, hex(bytes) AS lease FROM leases ORDER BY dev').all());
    } finally {
      db.close();
    }
    return out;
  }

  async function status(): Promise<StatusReport> {
    const r = await unixRequest(rig.system.config.status.socketPath, '/v1/status');
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as StatusReport;
  }

  it('keeps its state through kill -9 and welcomes peripherals again after the restart', async () => {
    const stateDir = rig.system.config.gateway.stateDir;
    const tpmRecord = await readFile(join(stateDir, 'tpm-key.json'), 'utf8');

    // Run 1: device 0 is welcomed; device 4 is welcomed, then revoked (the gateway closes its
    // connection after persisting the revocation cursor); a clean stop persists the lease.
    daemon = await startDaemon(rig.system.configFile);
    assert.equal((await peripheral(0).authenticate(rig.mqttPort)).kind, 'authenticated');
    const revoked = peripheral(4);
    assert.equal((await revoked.authenticate(rig.mqttPort)).kind, 'authenticated');
    await rig.system.backend.store.revokeDevice(device(rig.system, 4).dev);
    // revocationPollSec is 5 in the embedded config.
    await revoked.closedByGateway(30_000);
    assert.equal((await stopDaemon(daemon)).code, 0, daemon.child.stderr());
    daemon = undefined;
    const before = await readState();

    // Run 2: three exchanges mid-way (hellos PUBACKed, answers not yet read), then SIGKILL.
    daemon = await startDaemon(rig.system.configFile);
    const mid = [1, 2, 3].map(peripheral);
    await Promise.all(mid.map((p) => p.connect(rig.mqttPort)));
    const challenges = await Promise.all(mid.map((p) => p.challenge()));
    await Promise.all(mid.map((p, i) => p.hello(challenges[i] ?? new Uint8Array())));
    const exit = await daemon.child.kill();
    assert.equal(exit.signal, 'SIGKILL');
    await daemon.ns.close();
    daemon = undefined;

    // Every state file still parses; the TPM key record is untouched; no temp file is mistaken for state.
    const afterCrash = await readState();
    assert.equal(await readFile(join(stateDir, 'tpm-key.json'), 'utf8'), tpmRecord);
    assert.deepEqual(afterCrash.get('leases'), before.get('leases'));
    assert.equal((before.get('leases') as unknown[]).length, 1, 'the lease of device 0 (device 4 was revoked)');
    assert.ok(existsSync(rig.system.config.status.socketPath), 'the killed daemon left its socket file (the restart must cope)');
    const stale = (await readdir(stateDir)).filter((f) => !STATE_FILES.includes(f) && !LEASE_FILES.includes(f) && f !== 'software-identity-key.pem');
    for (const f of stale) assert.match(f, /\.tmp/, `unexpected file in the state dir: ${f}`);

    // Run 3: same config and state.
    daemon = await startDaemon(rig.system.configFile);
    const s = await status();
    assert.equal(s.session.held, true);
    await Promise.all(mid.map((p) => p.close()));
    const again = await Promise.all([0, 1, 2, 3].map((i) => peripheral(i).authenticate(rig.mqttPort)));
    assert.deepEqual(again.map((e) => e.kind), ['authenticated', 'authenticated', 'authenticated', 'authenticated'], JSON.stringify(again));
    // A new session key was made at start (it is never stored): the record names a new spk.
    const restarted = await readState();
    const spk = (m: Map<string, unknown>): unknown => (m.get('session.json') as { spk?: unknown }).spk;
    assert.notEqual(spk(restarted), spk(before));
    assert.equal(await readFile(join(stateDir, 'tpm-key.json'), 'utf8'), tpmRecord);

    // The lease persisted before the crash was loaded: with the backend gone, device 0 is welcomed offline.
    await Promise.all(peripherals.map((p) => p.close()));
    await rig.system.stopBackend();
    const offline = await peripheral(0).authenticate(rig.mqttPort);
    assert.equal(offline.kind, 'authenticated', JSON.stringify(offline));
    assert.equal((await status()).decisions.offline, 1);

    assert.equal((await stopDaemon(daemon)).code, 0, daemon.child.stderr());
    daemon = undefined;
  });
});
