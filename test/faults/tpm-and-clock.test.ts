/**
 * Faults of time and of the TPM, on an injected clock (JumpClock): swtpm killed while the
 * session key is being renewed (the renewal fails, the old session keeps serving, the renewal
 * succeeds once the TPM is back), and wall-clock steps of ±1 h (an NTP step on the host, seen by
 * the gateway and the backend alike).
 */
import assert from 'node:assert/strict';
import type { Gateway } from '../../daemon/gateway.js';
import { monotonicClock } from '../../common/clock.js';
import { FaultEnv, LogWatch, type FaultPeripheral } from '../../testkit/faults.js';
import { JumpClock } from '../../testkit/jump-clock.js';

const HOUR = 3_600_000;

describe('faults: TPM and clock', function () {
  this.timeout(120_000);
  let env: FaultEnv;
  const clock = new JumpClock();
  let gateway: Gateway | undefined;
  const open: FaultPeripheral[] = [];

  before(async () => {
    env = await FaultEnv.create({ devices: 8, backendClock: clock });
  });

  afterEach(async () => {
    for (const p of open.splice(0)) p.close();
    await gateway?.stop();
    gateway = undefined;
  });

  after(async () => {
    clock.dispose();
    await env?.dispose();
  });

  it('recovers when swtpm is killed during session renewal', async () => {
    const watch = new LogWatch();
    // The shortest session the config allows (300 s): renewal is due at half-life, 150 s.
    const config = await env.config(await env.stateDir('renewal'), { backend: { sessionLifetimeSec: 300 } });
    gateway = await env.gateway(config, { clock, logger: watch.logger() });
    const port = gateway.mqttAddresses().tcp?.port ?? 0;
    const p = env.peripheral(env.devices[0] ?? assert.fail('no device'));
    open.push(p);
    await p.connect(port);
    assert.deepEqual(await p.authenticate(), { kind: 'welcome' });
    const first = { ...gateway.sessionStats() };
    assert.equal(first?.tpmSignatures, 1);

    await env.swtpm.kill();
    const killedAt = watch.lines.length;
    clock.jump(151_000);
    await watch.waitFor((l) => l.message === 'gateway session renewal failed; retrying', 30_000, 'renewal failure', killedAt);
    // The old session is valid for another 149 s: service goes on while the TPM is away.
    assert.deepEqual(await p.authenticate(), { kind: 'welcome' }, 'welcomed while the TPM is down');

    const mark = watch.lines.length;
    await env.swtpm.restart();
    await watch.waitFor((l) => l.message === 'gateway session renewed', 60_000, 'renewal after the TPM is back', mark);
    const after = gateway.sessionStats();
    assert.ok((after?.renewals ?? 0) >= 2, 'renewed once more after the start');
    assert.ok((after?.notAfter ?? 0) > (first?.notAfter ?? 0), `a new credential with a later expiry: ${JSON.stringify([first, after])}`);
    assert.ok((after?.tpmSignatures ?? 0) >= 2, 'the renewal was signed by the TPM');
    assert.deepEqual(await p.authenticate(), { kind: 'welcome' }, 'welcomed under the renewed session');
  });

  it('keeps welcoming across wall-clock steps of +1 h and -1 h; challenge lifetimes do not move with them', async () => {
    const config = await env.config(await env.stateDir('clock'));
    // As shipped: wall time steps (an NTP step on the host, seen by gateway and backend alike),
    // elapsed time (challenge TTLs, rate limits) is monotonic.
    gateway = await env.gateway(config, { clock, elapsedClock: monotonicClock });
    const port = gateway.mqttAddresses().tcp?.port ?? 0;
    const [a, b] = [env.peripheral(env.devices[1] ?? assert.fail()), env.peripheral(env.devices[2] ?? assert.fail())];
    open.push(a, b);
    await a.connect(port);
    await b.connect(port);
    assert.deepEqual(await a.authenticate(), { kind: 'welcome' });

    // A challenge issued just before a +1 h step is still fresh after it: 1 h of wall time did not
    // pass for it (with TTLs on the wall clock it would be stale-challenge now).
    const fresh = await b.challenge();
    assert.ok(fresh !== undefined);
    clock.jump(HOUR);
    assert.deepEqual(await b.answer(fresh), { kind: 'welcome' }, 'answered across +1 h');
    assert.deepEqual(await a.authenticate(), { kind: 'welcome' }, 'welcomed after +1 h');

    // Back to the start, then an hour before it: nothing expires, and a challenge issued before the
    // step is answerable after it (its 30 s run on the monotonic clock, not lengthened by 1 h).
    clock.jump(-HOUR);
    assert.deepEqual(await a.authenticate(), { kind: 'welcome' }, 'welcomed after stepping back');
    const early = await b.challenge();
    assert.ok(early !== undefined);
    clock.jump(-HOUR);
    assert.deepEqual(await b.answer(early), { kind: 'welcome' }, 'answered across -1 h');
    assert.deepEqual(await a.authenticate(), { kind: 'welcome' }, 'welcomed after -1 h');
    assert.equal(gateway.sessionStats()?.tpmSignatures, 1, 'no renewal was needed');
    clock.jump(HOUR);
  });
});
