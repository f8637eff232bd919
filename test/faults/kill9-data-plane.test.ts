/**
 * Fault: the daemon (`gatehouse run`, a child process) is killed with SIGKILL while protocol-v2
 * peripherals stream telemetry through it (the backend gone for the second half, so the queue
 * holds receipted frames at the kill). The queue file it leaves passes `PRAGMA
 * integrity_check`; restarted on the same config and state directory, it uploads what it had
 * committed, so every frame that got a receipt before the kill is stored by the reference
 * backend, exactly once.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { QUEUE_FILE } from '../../daemon/uplink/queue.js';
import { MemoryCommandStore } from '../../peripherals/reference/command-store.js';
import { MqttReferencePeripheralV2 } from '../../peripherals/reference/mqtt-peripheral-v2.js';
import { ReferencePeripheralV2 } from '../../peripherals/reference/session-v2.js';
import { FaultEnv, exited, killIfRunning, startDaemon } from '../../testkit/faults.js';

const DEVICES = 6;
/** Receipts (all devices) after which the daemon is killed. */
const KILL_AFTER = 300;
const BATCH = 8;

function integrity(file: string): string {
  const db = new Database(file, { fileMustExist: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

describe('faults: daemon killed with SIGKILL mid-stream (v2 data plane)', function () {
  this.timeout(170_000);
  let env: FaultEnv;
  let daemon: ChildProcess | undefined;
  const open: MqttReferencePeripheralV2[] = [];

  before(async () => {
    env = await FaultEnv.create({ devices: DEVICES });
  });

  after(async () => {
    await Promise.allSettled(open.map((p) => p.close()));
    await killIfRunning(daemon);
    await env?.dispose();
  });

  it('every receipted frame reaches the backend exactly once after a restart; the queue file passes integrity_check', async () => {
    const stateDir = await env.stateDir('kill9-dp');
    const config = await env.config(stateDir, { log: { level: 'info', format: 'json' } });
    const configFile = join(env.dir, 'kill9-dp.yaml');
    await writeFile(configFile, stringify(config), { mode: 0o600 });
    const backendKeys = new Map([[env.backend.kid, env.backend.publicKeyRaw]]);

    const first = await startDaemon(configFile);
    daemon = first.child;
    const peripherals = await Promise.all(
      env.devices.map(async (d) => {
        const peripheral = new ReferencePeripheralV2({ dev: d.dev, signer: d.signer, devicePublicKey: d.signer.publicKeyRaw, backendKeys, commandStore: new MemoryCommandStore() });
        const p = new MqttReferencePeripheralV2({ url: `mqtt://127.0.0.1:${first.port}`, peripheral, timeoutMs: 5000 });
        open.push(p);
        await p.connect();
        const r = await p.authenticate();
        assert.equal(r.kind, 'established', `${d.dev}: ${r.kind}`);
        return p;
      }),
    );

    // Each peripheral streams batches and records the seqs its receipts settle; the daemon dies mid-stream.
    const receipted = new Map<string, Set<number>>(env.devices.map((d) => [d.dev, new Set<number>()]));
    let total = 0;
    let killed: Promise<number | null> | undefined;
    // Halfway, the backend goes away: what is receipted after that is only in the queue when the kill comes.
    let outage: Promise<void> | undefined;
    await Promise.all(
      peripherals.map(async (p) => {
        const mine = receipted.get(p.dev) as Set<number>;
        try {
          for (let b = 0; killed === undefined; b++) {
            for (let i = 0; i < BATCH; i++) await p.pub(`devices/${p.dev}/t`, new TextEncoder().encode(`b${b}-${i}`));
            let settled = 0;
            while (settled < BATCH) {
              const r = await p.nextReceipt();
              settled += r.settled.length + r.resend.length;
              for (const seq of r.settled) mine.add(seq);
              total += r.settled.length;
              if (total >= KILL_AFTER / 2 && outage === undefined) outage = env.backend.close();
              if (total >= KILL_AFTER && killed === undefined) {
                first.child.kill('SIGKILL');
                killed = exited(first.child);
              }
            }
          }
        } catch {
          // The connection died with the daemon: what was receipted so far is what counts.
        }
      }),
    );
    assert.ok(killed !== undefined, 'the daemon was killed mid-stream');
    await killed;
    assert.equal(first.child.signalCode, 'SIGKILL');
    await Promise.allSettled(open.splice(0).map((p) => p.close()));
    assert.ok(total >= KILL_AFTER, `${total} receipts before the kill`);

    const queueFile = join(stateDir, QUEUE_FILE);
    assert.equal(integrity(queueFile), 'ok', 'the queue file left by kill -9 passes integrity_check');
    const left = new Database(queueFile, { readonly: true, fileMustExist: true });
    const queued = left.prepare<[], { n: number }>('SELECT count(*) AS n FROM telemetry').get()?.n ?? 0;
    left.close();
    assert.ok(queued > 0, 'receipted frames were still in the queue at the kill');
    await outage;
    await env.startBackend();

    const second = await startDaemon(configFile);
    daemon = second.child;
    const storedSeqs = async (dev: string): Promise<number[]> => (await env.backend.store.telemetryLast(100_000, dev)).map((r) => r.seq);
    const missing = async (): Promise<number> => {
      let n = 0;
      for (const [dev, seqs] of receipted) {
        const stored = new Set(await storedSeqs(dev));
        for (const s of seqs) if (!stored.has(s)) n += 1;
      }
      return n;
    };
    const deadline = Date.now() + 60_000;
    while ((await missing()) > 0) {
      if (Date.now() > deadline) throw new Error(`receipted frames still missing at the backend: ${await missing()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const [dev] of receipted) {
      const seqs = await storedSeqs(dev);
      // One session per device here, so (dev, seq) names a frame: each is stored once.
      assert.equal(new Set(seqs).size, seqs.length, `${dev}: no frame stored twice`);
    }

    second.child.kill('SIGTERM');
    assert.equal(await exited(second.child), 0, 'clean stop after the restart');
    daemon = undefined;
    assert.equal(integrity(queueFile), 'ok', 'the queue file passes integrity_check after the restart');
    const db = new Database(queueFile, { readonly: true, fileMustExist: true });
    try {
      assert.equal(db.prepare<[], { n: number }>('SELECT count(*) AS n FROM telemetry').get()?.n, 0, 'the queue drained');
    } finally {
      db.close();
    }
  });
});
