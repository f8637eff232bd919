/**
 * Fault: the state directory stops taking writes — full (ENOSPC) or read-only (EROFS) — while
 * the daemon runs. Writing the lease cache then fails with a clear error naming the cause, and
 * service continues from memory: peripherals are welcomed, and the leases held in memory still
 * give offline welcomes when the backend goes away. As root a small tmpfs is mounted (full, then
 * remounted read-only); as root without mount rights (a container) the directory is made
 * immutable (chattr +i); without root only the read-only case runs, by chmod 0500.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import type { Gateway } from '../../daemon/gateway.js';
import { FaultEnv, LogWatch, type FaultPeripheral } from '../../testkit/faults.js';
import { JumpClock } from '../../testkit/jump-clock.js';
import { canMountTmpfs, fillToEnospc, mountTmpfs, unmountTmpfs } from '../../testkit/tmpfs.js';

type Mode = { name: string; code: string; errno: string; break: (dir: string) => Promise<void> };

describe('faults: state directory full or read-only', function () {
  this.timeout(120_000);
  let env: FaultEnv;
  const clock = new JumpClock();
  let gateway: Gateway | undefined;
  const mounts: string[] = [];
  const open: FaultPeripheral[] = [];

  before(async () => {
    env = await FaultEnv.create({ devices: 8, backendClock: clock });
  });

  afterEach(async () => {
    for (const p of open.splice(0)) p.close();
    await gateway?.stop();
    gateway = undefined;
    for (const m of mounts.splice(0)) unmountTmpfs(m);
  });

  after(async () => {
    clock.dispose();
    await env?.dispose();
  });

  const mount = canMountTmpfs();
  const modes: Mode[] = mount
    ? [
        {
          name: 'full (tmpfs at ENOSPC)',
          code: 'GH_STATE_NO_SPACE',
          errno: 'ENOSPC',
          break: async (dir) => {
            await fillToEnospc(dir);
          },
        },
        { name: 'read-only (tmpfs remounted ro)', code: 'GH_STATE_READ_ONLY', errno: 'EROFS', break: (dir) => Promise.resolve(execFileSync('mount', ['-o', 'remount,ro', dir])).then(() => undefined) },
      ]
    : process.getuid?.() === 0
      ? // Root without mount rights (a container): root ignores modes, but not the immutable flag.
        [{ name: 'read-only (chattr +i)', code: 'GH_STATE_READ_ONLY', errno: 'EPERM', break: (dir) => Promise.resolve(execFileSync('chattr', ['+i', dir])).then(() => undefined) }]
      : [{ name: 'read-only (chmod 0500)', code: 'GH_STATE_READ_ONLY', errno: 'EACCES', break: (dir) => chmod(dir, 0o500) }];

  for (const mode of modes) {
    it(`${mode.name}: a clear error, and service continues from memory`, async () => {
      const stateDir = await env.stateDir(mode.errno, (dir) => {
        if (!mount) return;
        mountTmpfs(dir, '1m');
        mounts.push(dir);
      });
      const watch = new LogWatch();
      // protocol v1 only: the v2 data plane keeps its queue (SQLite) open in the state directory,
      // and the kernel refuses a read-only remount of a mount with files open for writing.
      const config = await env.config(stateDir, { backend: { circuit: { failureThreshold: 1, openMs: 500 }, connectTimeoutMs: 1000 }, protocol: { versions: [1] } });
      gateway = await env.gateway(config, { clock, logger: watch.logger() });
      const port = gateway.mqttAddresses().tcp?.port ?? 0;

      await mode.break(stateDir);
      const ps = env.devices.slice(0, 4).map((d) => env.peripheral(d));
      open.push(...ps);
      for (const p of ps) {
        await p.connect(port);
        assert.deepEqual(await p.authenticate(), { kind: 'welcome' });
      }
      // The lease cache writes 30 s after a change: step the clock past it.
      const mark = watch.lines.length;
      clock.jump(31_000);
      const line = await watch.waitFor((l) => l.message === 'cannot persist leases', 30_000, 'lease write failure', mark);
      assert.equal(line.level, 'error');
      assert.equal(line.code, mode.code, `the error has a stable code: ${String(line.error)}`);
      assert.match(String(line.error), new RegExp(mode.errno), 'and names the cause');

      // Service continues: online, and offline from the leases held in memory.
      assert.deepEqual(await ps[0]?.authenticate(), { kind: 'welcome' });
      await env.backend.close();
      try {
        assert.deepEqual(await ps[1]?.authenticate(), { kind: 'welcome' }, 'offline welcome from the in-memory lease');
      } finally {
        await env.startBackend();
      }
      assert.ok((gateway.backendStats()?.offlineWelcomes ?? 0) >= 1);
      if (!mount && process.getuid?.() === 0) execFileSync('chattr', ['-i', stateDir]);
      else if (!mount) await chmod(stateDir, 0o700);
    });
  }
});
