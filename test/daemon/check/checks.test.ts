import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_CHECKS, exitCodeFor, runChecks } from '../../../daemon/check/runner.js';
import { type CheckContext, type CheckReport } from '../../../daemon/check/types.js';
import { parseConfigText } from '../../../daemon/config/load.js';
import { FailingTracker } from '../../../daemon/status/failing.js';
import { REASON_ADVICE } from '../../../daemon/status/reason-advice.js';
import { minimalConfigYaml } from '../../../testkit/config.js';

const NOW = new Date('2026-06-01T12:00:00Z');
const NOW_S = Math.floor(NOW.getTime() / 1000);

function byId(report: CheckReport): Record<string, { status: string; message: string; action?: string }> {
  return Object.fromEntries(report.results.map((r) => [r.id, r]));
}

describe('daemon/check', () => {
  let dir: string;
  let healthy: CheckContext;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-check-'));
    const config = parseConfigText(minimalConfigYaml(`  caFile: /etc/ca.pem\nble:\n  enabled: true\n`));
    config.gateway.stateDir = dir;
    healthy = {
      config: { ok: true, config, file: '/etc/gatehouse/gatehouse.yaml' },
      now: () => NOW,
      tpm: () => Promise.resolve({ reachable: true, keyPresent: true }),
      session: () => ({ notAfter: NOW_S + 20 * 3600, lifetimeSec: 86400 }),
      backend: () => Promise.resolve({ ok: true, detail: 'backend.example:8443: TLS ok' }),
      ble: () => ({ adapterState: 'poweredOn' }),
      mqtt: () => [{ name: 'tcp', address: '127.0.0.1', port: 1883, listening: true }],
      failing: () => [],
      descriptors: () => ({ limit: 16384, open: 40, whose: 'daemon' }),
    };
  });
  afterEach(async () => {
    await chmod(dir, 0o700).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('a healthy gateway passes every check (exit 0)', async () => {
    const report = await runChecks(healthy);
    assert.deepEqual(report.results.map((r) => r.id), ALL_CHECKS.map((c) => c.id));
    assert.deepEqual(report.results.filter((r) => r.status !== 'ok'), []);
    assert.equal(report.status, 'ok');
    assert.equal(exitCodeFor(report), 0);
    const ids = new Set(ALL_CHECKS.map((c) => c.id));
    assert.equal(ids.size, ALL_CHECKS.length, 'ids are unique');
    for (const c of ALL_CHECKS) assert.match(c.id, /^[a-z]+\.[a-z]+$/);
  });

  it('a 1970 clock fails, with what to do', async () => {
    const r = byId(await runChecks({ ...healthy, now: () => new Date(0) }, ALL_CHECKS, { only: ['clock.sane'] }));
    assert.equal(r['clock.sane']?.status, 'fail');
    assert.match(r['clock.sane']?.message ?? '', /1970-01-01/);
    assert.match(r['clock.sane']?.action ?? '', /timedatectl/);
  });

  it('a broken gateway: every failure with an action, warnings map to exit 3', async () => {
    const broken: CheckContext = {
      ...healthy,
      tpm: () => Promise.resolve({ reachable: false, keyPresent: false, detail: 'GH_TPM_NO_DEVICE', advice: 'enable the TPM' }),
      session: () => ({ notAfter: undefined, lifetimeSec: 86400, lastError: 'backend answered 403' }),
      backend: () => Promise.resolve({ ok: false, code: 'GH_CHECK_TLS_NAME', detail: 'certificate name mismatch' }),
      ble: () => ({ adapterState: 'poweredOff' }),
      mqtt: () => [{ name: 'tls', address: '0.0.0.0', port: 8883, listening: false }],
    };
    const report = await runChecks(broken);
    const r = byId(report);
    for (const id of ['tpm.key', 'backend.tls', 'backend.session', 'ble.adapter', 'mqtt.listeners']) {
      assert.equal(r[id]?.status, 'fail', id);
      assert.ok((r[id]?.action ?? '').length > 10, `${id} says what to do`);
    }
    assert.equal(r['tpm.key']?.action, 'enable the TPM');
    assert.match(r['backend.session']?.message ?? '', /403/);
    assert.equal(r['credential.expiry']?.status, 'skip');
    assert.equal(exitCodeFor(report), 1);

    const warnOnly = await runChecks({ ...healthy, session: () => ({ notAfter: NOW_S + 3600, lifetimeSec: 86400 }) });
    assert.equal(byId(warnOnly)['credential.expiry']?.status, 'warn');
    assert.equal(exitCodeFor(warnOnly), 3);
    const expired = await runChecks({ ...healthy, session: () => ({ notAfter: NOW_S - 1, lifetimeSec: 86400 }) }, ALL_CHECKS, { only: ['credential.expiry'] });
    assert.equal(expired.status, 'fail');
  });

  it('an invalid config fails config.valid and skips what depends on it', async () => {
    const report = await runChecks({ config: { ok: false, file: '/etc/g.yaml', error: '/etc/g.yaml: 1 problem(s):\n  gateway.id: expected id' }, now: () => NOW });
    const r = byId(report);
    assert.equal(r['config.valid']?.status, 'fail');
    assert.equal(r['config.valid']?.message, '/etc/g.yaml: 1 problem(s):');
    assert.match(r['config.valid']?.action ?? '', /gatehouse config check --config \/etc\/g\.yaml/);
    assert.equal(r['clock.sane']?.status, 'ok');
    for (const id of ['state.writable', 'tpm.key', 'backend.tls', 'mqtt.listeners', 'ble.adapter']) assert.equal(r[id]?.status, 'skip', id);
  });

  it('state.writable fails on a missing directory', async () => {
    if (!healthy.config.ok) throw new Error('unreachable');
    const cfg = structuredClone(healthy.config.config);
    cfg.gateway.stateDir = join(dir, 'absent');
    const r = byId(await runChecks({ ...healthy, config: { ok: true, config: cfg, file: 'f' } }, ALL_CHECKS, { only: ['state.writable'] }));
    assert.equal(r['state.writable']?.status, 'fail');
    assert.match(r['state.writable']?.message ?? '', /ENOENT/);
  });

  it('a TPM key without noDA warns, naming the fix', async () => {
    const report = await runChecks({ ...healthy, tpm: () => Promise.resolve({ reachable: true, keyPresent: true, noDA: false }) }, ALL_CHECKS, { only: ['tpm.key'] });
    const r = byId(report);
    assert.equal(r['tpm.key']?.status, 'warn');
    assert.match(r['tpm.key']?.message ?? '', /noDA/);
    assert.match(r['tpm.key']?.action ?? '', /gatehouse tpm provision --force/);
    assert.equal(exitCodeFor(report), 3);
    const withNoDA = byId(await runChecks({ ...healthy, tpm: () => Promise.resolve({ reachable: true, keyPresent: true, noDA: true }) }, ALL_CHECKS, { only: ['tpm.key'] }));
    assert.equal(withNoDA['tpm.key']?.status, 'ok');
  });

  it('a TPM key without an authValue warns, naming the fix', async () => {
    const report = await runChecks({ ...healthy, tpm: () => Promise.resolve({ reachable: true, keyPresent: true, noDA: true, authValue: false }) }, ALL_CHECKS, { only: ['tpm.key'] });
    const r = byId(report);
    assert.equal(r['tpm.key']?.status, 'warn');
    assert.match(r['tpm.key']?.message ?? '', /no authorization value.*tss/);
    assert.match(r['tpm.key']?.action ?? '', /gatehouse tpm provision --force/);
    assert.equal(exitCodeFor(report), 3);
    const withAuth = byId(await runChecks({ ...healthy, tpm: () => Promise.resolve({ reachable: true, keyPresent: true, noDA: true, authValue: true }) }, ALL_CHECKS, { only: ['tpm.key'] }));
    assert.equal(withAuth['tpm.key']?.status, 'ok');
  });

  it('the software key store warns', async () => {
    if (!healthy.config.ok) throw new Error('unreachable');
    const cfg = structuredClone(healthy.config.config);
    cfg.tpm.kind = 'software';
    const report = await runChecks({ ...healthy, config: { ok: true, config: cfg, file: 'f' } }, ALL_CHECKS, { only: ['tpm.key'] });
    assert.equal(report.status, 'warn');
  });

  it('peripherals.failing warns with the devices and the advice of the newest reason; skips offline', async () => {
    const tracker = new FailingTracker();
    const t = NOW.getTime();
    for (let i = 0; i < 5; i++) tracker.record({ seq: i, at: t - 5000 + i, transport: 'mqtt', connection: `mqtt:${i}`, dev: `dev-${i}`, outcome: 'reject', reason: i === 4 ? 'not-allowed-here' : 'bad-signature', latencyMs: 1, offline: false });
    const r = byId(await runChecks({ ...healthy, failing: () => tracker.list(t) }, ALL_CHECKS, { only: ['peripherals.failing'] }));
    assert.equal(r['peripherals.failing']?.status, 'warn');
    assert.equal(r['peripherals.failing']?.message, '5 peripheral(s) failing: dev-4 (1x not-allowed-here), dev-3 (1x bad-signature), dev-2 (1x bad-signature) and 2 more');
    assert.equal(r['peripherals.failing']?.action, `not-allowed-here: ${REASON_ADVICE['not-allowed-here'].action}; all of them: gatehouse peripherals --failing`);
    const { failing: _f, ...offline } = healthy;
    assert.equal(byId(await runChecks(offline, ALL_CHECKS, { only: ['peripherals.failing'] }))['peripherals.failing']?.status, 'skip');
  });

  it('a crashing or hanging check fails alone, without internal detail', async () => {
    const report = await runChecks(
      { ...healthy, tpm: () => Promise.reject(new Error('secret internal /dev/tpmrm0 detail')), backend: () => new Promise(() => undefined) },
      ALL_CHECKS,
      { timeoutMs: 50 },
    );
    const r = byId(report);
    assert.equal(r['tpm.key']?.status, 'fail');
    assert.ok(!JSON.stringify(r['tpm.key']).includes('secret'));
    assert.equal(r['backend.tls']?.status, 'fail');
    assert.match(r['backend.tls']?.message ?? '', /did not finish within 50 ms/);
    assert.equal(r['clock.sane']?.status, 'ok', 'the others still ran');
  });
});
