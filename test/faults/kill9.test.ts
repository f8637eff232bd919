/**
 * Fault: the daemon (`gatehouse run`, a child process) is killed with SIGKILL in the middle of a
 * storm. Restarted on the same config and state directory, it serves every peripheral, and every
 * state file it left (written atomically: temp + fsync + rename) parses.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { FaultEnv, exited, pool, startDaemon, type FaultPeripheral, type Outcome } from '../../testkit/faults.js';

const STORM = 600;
const KILL_AFTER = 150;

describe('faults: daemon killed with SIGKILL mid-storm', function () {
  this.timeout(170_000);
  let env: FaultEnv;
  let daemon: ChildProcess | undefined;
  const open: FaultPeripheral[] = [];

  before(async () => {
    env = await FaultEnv.create({ devices: STORM });
  });

  after(async () => {
    for (const p of open) p.close();
    if (daemon !== undefined && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGKILL');
      await exited(daemon);
    }
    await env?.dispose();
  });

  it(`restarts and serves all ${STORM} peripherals; its state files parse`, async () => {
    const stateDir = await env.stateDir('kill9');
    const config = await env.config(stateDir, { log: { level: 'info', format: 'json' } });
    const configFile = join(env.dir, 'kill9.yaml');
    await writeFile(configFile, stringify(config), { mode: 0o600 });

    const first = await startDaemon(configFile);
    daemon = first.child;
    let welcomed = 0;
    let killed: Promise<number | null> | undefined;
    const storm1 = env.devices.map((d) => env.peripheral(d));
    open.push(...storm1);
    const results1: Outcome[] = await pool(storm1, STORM, async (p) => {
      try {
        await p.connect(first.port);
      } catch (err) {
        return { kind: 'no-answer', why: (err as Error).message };
      }
      const r = await p.authenticate(20_000);
      if (r.kind === 'welcome' && ++welcomed === KILL_AFTER) {
        first.child.kill('SIGKILL');
        killed = exited(first.child);
      }
      return r;
    });
    assert.ok(killed !== undefined, 'the daemon was killed mid-storm');
    await killed;
    assert.equal(first.child.signalCode, 'SIGKILL');
    const cut = results1.filter((r) => r.kind !== 'welcome').length;
    assert.ok(cut > 0, `the kill cut exchanges short (${cut} without a welcome)`);
    for (const p of storm1) p.close();

    const second = await startDaemon(configFile);
    daemon = second.child;
    const storm2 = env.devices.map((d) => env.peripheral(d));
    open.push(...storm2);
    const results2 = await pool(storm2, STORM, async (p) => {
      await p.connect(second.port);
      return p.authenticate(30_000);
    });
    assert.deepEqual(results2.filter((r) => r.kind !== 'welcome'), [], 'the restarted daemon welcomes everyone');
    for (const p of storm2) p.close();

    second.child.kill('SIGTERM');
    assert.equal(await exited(second.child), 0, 'clean stop after the restart');
    const files = (await readdir(stateDir)).filter((f) => f.endsWith('.json'));
    const db = new Database(join(stateDir, 'leases.db'), { readonly: true, fileMustExist: true });
    const leases = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM leases').get()?.n ?? 0;
    db.close();
    assert.equal(leases, env.devices.length, 'every welcomed device\'s lease persisted at stop');
    for (const f of files) {
      const text = await readFile(join(stateDir, f), 'utf8');
      assert.doesNotThrow(() => JSON.parse(text), `${f} parses`);
    }
    const leftovers = (await readdir(stateDir)).filter((f) => f.includes('.tmp'));
    assert.deepEqual(leftovers, [], 'no temp files left by the atomic writes');
  });
});
