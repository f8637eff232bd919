/**
 * Fault (issue #16, data plane acceptance): the uplink queue cannot grow any more while v2 devices
 * stream telemetry through `gatehouse run` (a child process). SQLite's next commit of `uplink.db`
 * fails; the receipts then say `busy` with a `retry`; each device keeps its frame's content and
 * sends it again after `retry`, and is told busy again while there is no room. Once there is room
 * the content is receipted, and at the backend every receipted frame is stored exactly once and
 * every content sent is there once: nothing lost, nothing doubled, no busy frame stored.
 *
 * The disk really fills when this process may mount (root with mount rights): the state directory
 * is a 2 MiB tmpfs, filled to its last block by a ballast (SQLITE_FULL from ENOSPC, logged as
 * GH_STATE_NO_SPACE), and room returns when the ballast is deleted. Without mount rights (or with
 * GATEHOUSE_FAULT_NO_MOUNT=1) the closest real thing: the daemon's file-size limit (RLIMIT_FSIZE,
 * set on the running daemon with prlimit) is lowered to the queue's WAL size, so its next write
 * fails with EFBIG (SQLITE_IOERR_WRITE, logged as GH_STATE_WRITE), and is raised again for room.
 * That shows the same busy, resend and no loss for a write the disk refuses, but not that a full
 * disk is told apart (GH_STATE_NO_SPACE).
 */
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { QUEUE_FILE } from '../../daemon/uplink/queue.js';
import type { MqttReferencePeripheralV2 } from '../../peripherals/reference/mqtt-peripheral-v2.js';
import { FaultEnv, LogWatch, exited, killIfRunning, startDaemon } from '../../testkit/faults.js';
import { canMountTmpfs, fillToEnospc, mountTmpfs, unmountTmpfs } from '../../testkit/tmpfs.js';
import { StreamingDevice, storedFrames } from '../../testkit/v2-fleet.js';
import { waitUntil } from '../../testkit/wait.js';

const DEVICES = 4;

/** How the queue's writes are refused, and room given back. */
interface NoRoom {
  name: string;
  /** Mount what the state directory needs (tmpfs only). */
  prepare(dir: string, mounts: string[]): void;
  fill(stateDir: string, daemon: ChildProcess): Promise<void>;
  free(stateDir: string, daemon: ChildProcess): Promise<void>;
  /** The logged error's code and what its message names. */
  code: RegExp;
  cause: RegExp;
}

const tmpfs = (): NoRoom => {
  let ballast: string[] = [];
  return {
    name: 'the disk fills up (2 MiB tmpfs at ENOSPC)',
    prepare: (dir, mounts) => {
      mountTmpfs(dir, '2m');
      mounts.push(dir);
    },
    fill: async (stateDir) => {
      ballast = await fillToEnospc(stateDir);
    },
    free: async () => {
      await Promise.all(ballast.map((f) => rm(f, { force: true })));
    },
    code: /^GH_STATE_NO_SPACE$/,
    cause: /ENOSPC, SQLITE_FULL/,
  };
};

const fileSizeLimit = (): NoRoom => ({
  name: 'the daemon may not grow its files (RLIMIT_FSIZE, EFBIG)',
  prepare: () => undefined,
  fill: (stateDir, daemon) => {
    const wal = statSync(join(stateDir, `${QUEUE_FILE}-wal`)).size;
    execFileSync('prlimit', ['--pid', String(daemon.pid), `--fsize=${wal}:unlimited`]);
    return Promise.resolve();
  },
  free: (_, daemon) => {
    execFileSync('prlimit', ['--pid', String(daemon.pid), '--fsize=unlimited:unlimited']);
    return Promise.resolve();
  },
  code: /^GH_STATE_(NO_SPACE|WRITE)$/,
  cause: /SQLITE_(FULL|IOERR)/,
});

describe('faults: the uplink queue cannot grow (busy, resend after retry, nothing lost)', function () {
  this.timeout(180_000);
  let env: FaultEnv;
  let daemon: ChildProcess | undefined;
  const open: MqttReferencePeripheralV2[] = [];
  const mounts: string[] = [];
  const noRoom = canMountTmpfs() ? tmpfs() : fileSizeLimit();

  before(async () => {
    env = await FaultEnv.create({ devices: DEVICES });
  });

  after(async () => {
    await Promise.allSettled(open.map((p) => p.close()));
    await killIfRunning(daemon);
    for (const m of mounts.splice(0)) unmountTmpfs(m);
    await env?.dispose();
  });

  it(`${noRoom.name}: receipts say busy, devices resend after retry, and nothing is lost once there is room`, async () => {
    const stateDir = await env.stateDir('no-room', (dir) => noRoom.prepare(dir, mounts));
    const config = await env.config(stateDir, { log: { level: 'info', format: 'json' }, dataPlane: { queue: { maxBytes: 67_108_864, maxAgeSec: 604_800, busyRetrySec: 1 } } });
    const configFile = join(env.dir, 'no-room.yaml');
    await writeFile(configFile, stringify(config), { mode: 0o600 });
    const started = await startDaemon(configFile);
    daemon = started.child;
    const watch = new LogWatch();
    watch.follow(started.child);
    const devices = await Promise.all(env.devices.map((d) => StreamingDevice.open(env, d, started.port, open)));
    const sent: string[] = [];
    const sendAll = (phase: string): Promise<void[]> =>
      Promise.all(
        devices.map((d) => {
          const body = `${d.dev}:${phase}`;
          sent.push(body);
          return d.send(body);
        }),
      );
    const storedCount = async (): Promise<number> => (await storedFrames(env.backend.store)).size;

    // With room: receipted and uploaded.
    for (let i = 0; i < 3; i++) await sendAll(`before-${i}`);
    await waitUntil(async () => (await storedCount()) === 3 * DEVICES, 'the first frames uploaded', 60_000, 100);

    // No more room: the next commit fails, and the receipts say busy.
    await noRoom.fill(stateDir, started.child);
    const mark = watch.lines.length;
    const during = sendAll('while-full');
    during.catch(() => undefined);
    const line = await watch.waitFor((l) => String(l.message).startsWith('uplink queue commit failed'), 30_000, 'the failed commit', mark);
    assert.match(String(line.code), noRoom.code, String(line.message));
    assert.match(String(line.message), noRoom.cause);
    // Each device is told busy, waits retry, sends the same content again, and is told busy again.
    await waitUntil(() => devices.every((d) => d.busyReceipts >= 2), 'every device resent after retry and was busy again', 30_000);
    assert.equal(devices.reduce((n, d) => n + d.settled.length, 0), 3 * DEVICES, 'nothing receipted without room');

    // Room again: the contents the devices kept are receipted, and streaming goes on.
    await noRoom.free(stateDir, started.child);
    await during;
    for (let i = 0; i < 2; i++) await sendAll(`after-${i}`);
    const receipted = devices.flatMap((d) => d.settled);
    await waitUntil(async () => (await storedCount()) >= receipted.length, 'every receipted frame uploaded', 60_000, 100);

    const stored = await storedFrames(env.backend.store);
    for (const f of receipted) assert.deepEqual(stored.get(f.key), [f.body], `${f.key} stored once, with its body`);
    assert.equal(stored.size, receipted.length, 'no busy frame was stored');
    const bodies = [...stored.values()].flat().sort();
    assert.deepEqual(bodies, [...sent].sort(), 'every content sent is at the backend exactly once');
    const busy = devices.reduce((n, d) => n + d.busyReceipts, 0);
    const failed = watch.lines.filter((l) => String(l.message).startsWith('uplink queue commit failed')).length;
    console.log(`      ${receipted.length} frames receipted, ${busy} busy receipts, ${failed} failed commits (${String(line.code)}, ${String(line.message).match(noRoom.cause)?.[0] ?? ''})`);

    started.child.kill('SIGTERM');
    assert.equal(await exited(started.child), 0, 'clean stop');
    daemon = undefined;
  });
});
