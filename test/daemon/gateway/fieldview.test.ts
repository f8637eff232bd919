/**
 * The field tech's commands against the real daemon (a child process on swtpm, the reference
 * backend, peripherals over MQTT on loopback): one device welcomed online, one that keeps
 * failing its signature. REMOTE carries the MQTT peer's address and port, LEASE EXPIRES the
 * lease of the online welcome, --failing the failing device with its advice, DEV its story.
 */
import assert from 'node:assert/strict';
import { main } from '../../../cli/main.js';
import type { PeripheralStory } from '../../../daemon/cli/peripherals.js';
import { EXIT_NO_BLE } from '../../../daemon/cli/scan.js';
import { REASON_ADVICE } from '../../../daemon/status/reason-advice.js';
import type { FailingPeripheral, PeripheralInfo, StatusReport } from '../../../daemon/status/types.js';
import type { DecisionEvent } from '../../../daemon/pipeline/types.js';
import { MqttReferencePeripheral } from '../../../peripherals/reference/mqtt-peripheral.js';
import { ReferencePeripheral } from '../../../peripherals/reference/peripheral.js';
import { Ed25519Signer } from '../../../protocol/index.js';
import { captureIO } from '../../../testkit/cli-io.js';
import { normaliseCliText } from '../../../testkit/cli-text.js';
import { killAllChildren } from '../../../testkit/daemon.js';
import { authenticate, device, mqttPeripheral, startDaemon, startRig, stopDaemon, type Rig, type RunningDaemon } from './fixture.js';

describe('daemon as a child process: the field tech view', function () {
  this.timeout(120_000);
  let rig: Rig;
  let daemon: RunningDaemon | undefined;
  let sock: string;

  before(async () => {
    rig = await startRig('fv', { devices: 2 });
    sock = rig.system.config.status.socketPath;
    daemon = await startDaemon(rig.system.configFile);
  });

  after(async () => {
    if (daemon !== undefined) await stopDaemon(daemon).catch(() => undefined);
    await killAllChildren();
    await daemon?.ns.close();
    await rig?.close();
  });

  async function cli(args: string[]): Promise<string> {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(args, io), 0, io.err());
    return io.out();
  }

  /** Ports, the welcomed and failing device ids, local times replaced. */
  function norm(text: string, good: string, bad: string): string {
    return normaliseCliText(text)
      .replaceAll(good, '<GOOD>')
      .replaceAll(bad, '<BAD>')
      .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<PORT>')
      .replace(/mqtt:\d+/g, 'mqtt:<N>')
      .replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/g, '<TIME>')
      .replace(/^\d+ {2}<TIME>/gm, '<SEQ>  <TIME>')
      .replace(/\d+(?:\.\d+)? (?:ms|s)\b/g, '<LATENCY>');
  }

  it('peripherals, --failing, DEV, events --dev and status show what the daemon decided', async () => {
    const good = device(rig.system, 0);
    const badDev = device(rig.system, 1);
    const p = mqttPeripheral(rig.system, good, rig.mqttPort);
    // The right id with a key the backend does not hold for it: bad-signature, twice.
    const wrongKey = Ed25519Signer.fromSeed(new Uint8Array(32).fill(7), badDev.dev);
    const impostors = [0, 1].map(() => new MqttReferencePeripheral({
      url: `mqtt://127.0.0.1:${rig.mqttPort}`,
      peripheral: new ReferencePeripheral({ dev: badDev.dev, signer: wrongKey, backendKeys: rig.system.backendKeys }),
      timeoutMs: 20_000,
    }));
    try {
      const welcomed = await authenticate(p);
      assert.equal(welcomed.kind, 'authenticated', JSON.stringify(welcomed));
      for (const x of impostors) {
        const r = await authenticate(x);
        assert.deepEqual(r.kind === 'rejected' ? r.reason : r.kind, 'bad-signature');
      }
      const [g, b] = [good.dev, badDev.dev];

      // peripherals: REMOTE and LEASE EXPIRES are filled for the device welcomed online.
      const list = await cli(['peripherals']);
      const rows = norm(list, g, b).split('\n');
      assert.equal(rows[0], 'DEVICE  TRANSPORT  STATE  SINCE  OFFLINE  LEASE EXPIRES  REMOTE  PROTO  AGE  FRAMES IN/OUT  DROPS  CMDS');
      assert.ok(rows.includes('<GOOD>  mqtt  welcomed  <AGO>  no  <IN>  127.0.0.1:<PORT>  v1  -  -  -  -'), list);
      const doc = JSON.parse(await cli(['peripherals', '--json'])) as { peripherals: PeripheralInfo[] };
      const mine = doc.peripherals.find((x) => x.dev === g);
      assert.match(mine?.remote ?? '', /^127\.0\.0\.1:\d+$/);
      const now = Date.now() / 1000;
      assert.ok(mine?.leaseExp !== undefined && mine.leaseExp > now, JSON.stringify(mine));

      // --failing: the impostor, twice, with the advice.
      const failing = await cli(['peripherals', '--failing']);
      assert.equal(
        norm(failing, g, b),
        [
          'DEVICE  TRANSPORT  FAILURES  LAST REASON  LAST TRY  NEXT TRY  REMOTE',
          '<BAD>  mqtt  2  bad-signature  <AGO>  now  127.0.0.1:<PORT>',
          '(NEXT TRY now: the gateway imposes no wait)',
          '',
          `bad-signature: ${REASON_ADVICE['bad-signature'].meaning}`,
          `  -> ${REASON_ADVICE['bad-signature'].action}`,
        ].join('\n'),
      );
      const fj = (JSON.parse(await cli(['peripherals', '--failing', '--json'])) as { failing: FailingPeripheral[] }).failing;
      assert.deepEqual(fj.map((f) => [f.dev, f.failures, f.lastReason, f.reasons]), [[b, 2, 'bad-signature', { 'bad-signature': 2 }]]);

      // DEV: the failing device's story, and its events (the daemon filters).
      const story = await cli(['peripherals', b, '--utc']);
      assert.equal(
        norm(story, g, b),
        [
          'Device  <BAD>',
          // Both impostor connections are still open: a bad signature does not close it.
          'Connected  mqtt mqtt:<N>, pending since <TIME> (<AGO>), remote 127.0.0.1:<PORT>',
          'Lease  none yet (not welcomed)',
          'Connected  mqtt mqtt:<N>, pending since <TIME> (<AGO>), remote 127.0.0.1:<PORT>',
          'Lease  none yet (not welcomed)',
          'Failing  2 reject(s) since <TIME> (2 bad-signature); last bad-signature <AGO>, next try now',
          `Meaning  ${REASON_ADVICE['bad-signature'].meaning}`,
          `Action  ${REASON_ADVICE['bad-signature'].action}`,
          'Times  UTC',
          '',
          'Recent events:',
          'SEQ  TIME  TRANSPORT  DEVICE  OUTCOME  REASON  LATENCY  OFFLINE  REMOTE',
          '<SEQ>  <TIME>  mqtt  <BAD>  challenge  -  <LATENCY>  no  127.0.0.1:<PORT>',
          '<SEQ>  <TIME>  mqtt  <BAD>  reject  bad-signature  <LATENCY>  no  127.0.0.1:<PORT>',
          '<SEQ>  <TIME>  mqtt  <BAD>  challenge  -  <LATENCY>  no  127.0.0.1:<PORT>',
          '<SEQ>  <TIME>  mqtt  <BAD>  reject  bad-signature  <LATENCY>  no  127.0.0.1:<PORT>',
          '(DEVICE -: no device id yet; REASON -: not a reject; REMOTE -: not reported; TIME in UTC)',
        ].join('\n'),
      );
      const sj = JSON.parse(await cli(['peripherals', b, '--json'])) as PeripheralStory;
      assert.ok(sj.events.every((e) => e.dev === b && Math.round(e.latencyMs * 1000) / 1000 === e.latencyMs), JSON.stringify(sj.events));

      // events --dev: only the welcomed device's; JSON latency to the microsecond, the lease's exp.
      const ev = (await cli(['events', '--dev', g, '--json'])).trim().split('\n').map((l) => JSON.parse(l) as DecisionEvent);
      assert.deepEqual(ev.map((e) => e.outcome), ['challenge', 'welcome']);
      assert.equal(ev[1]?.leaseExp, mine.leaseExp);
      for (const e of ev) assert.equal(Math.round(e.latencyMs * 1000) / 1000, e.latencyMs);

      // status: the failing count, the zone.
      const st = norm(await cli(['status', '--utc']), g, b);
      assert.match(st, /^Failing {2}1 peripheral\(s\) failing: gatehouse peripherals --failing$/m);
      assert.match(st, /^Session {2}held, credential expires <TIME> \(<IN>\)$/m);
      assert.match(st, /^Times {2}UTC$/m);
      assert.equal((JSON.parse(await cli(['status', '--json'])) as StatusReport).failing, 1);
    } finally {
      await p.close();
      for (const x of impostors) await x.close();
    }
  });

  it('scan: BLE is off in this config, so one line says so and the exit code is 4', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['scan'], io), EXIT_NO_BLE);
    assert.equal(io.err(), 'gatehouse scan: no BLE: BLE is disabled in the config (ble.enabled: false)\n');
    assert.equal(io.out(), '');
  });
});
