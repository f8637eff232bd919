/**
 * `gatehouse demo` as a child process, the way evaluators run it: every signal and a `kill -9`
 * leave no swtpm, backend or demo process behind (checked by the pids the demo's pid file names,
 * and by scanning /proc for anything still naming the demo's directory); SIGHUP reloads and the
 * demo keeps serving; `--config` overrides reach the running gateway and bad ones are refused
 * with every problem; a backend outage tried through `--backend-process` gives offline welcomes.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { GatehouseChild, killAllChildren, runCli } from '../../testkit/daemon.js';
import { Swtpm } from '../../testkit/swtpm.js';
import { tempDirEach } from '../../testkit/temp-dir.js';
import { unixRequest } from '../../testkit/unix-http.js';
import { captureIO } from '../../testkit/cli-io.js';
import { freePort } from '../../demo/embedded.js';
import { HELP, run } from '../../demo/demo.js';
import { PID_FILE, processGone, readPids, waitUntil, type DemoPids } from '../../demo/leftovers.js';
import type { StatusReport } from '../../daemon/status/types.js';

/** Swtpm, PKI, backend, gateway and two peripherals under tsx on a shared 2-core machine. */
const START_MS = 60_000;
const STOP_MS = 20_000;
/** How long the kernel and init get to end and reap a child after its parent died. */
const GONE_MS = 10_000;

/** Live (not zombie) processes whose command line names `dir`. */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmd.includes(dir) && !processGone(pid)) found.push(`${pid}: ${cmd}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

async function assertNothingLeft(dir: string, pids: number[]): Promise<void> {
  for (const pid of pids) assert.ok(await waitUntil(() => processGone(pid), GONE_MS), `pid ${pid} still running after ${GONE_MS} ms`);
  assert.ok(await waitUntil(() => processesUnder(dir).length === 0, GONE_MS), `left running:\n${processesUnder(dir).join('\n')}`);
}

interface RunningDemo {
  demo: GatehouseChild;
  pids: DemoPids;
  socket: string;
  /** argv of `gatehouse peripheral mqtt …` for the demo's spare device outside-1. */
  outside: string[];
}

/** The demo directory of the running test, for the after-failure sweep. */
let lastDir: string | undefined;

async function startDemo(dir: string, args: string[] = []): Promise<RunningDemo> {
  lastDir = dir;
  const demo = new GatehouseChild(['demo', '--dir', dir, '--peripherals', '2', '--mqtt-port', String(await freePort()), ...args]);
  await demo.waitForStdout(/Serving until Ctrl-C/, START_MS);
  assert.match(demo.stdout(), /welcomed, and the welcome verified by the peripheral +2\/2/);
  // Each v2 peripheral sent 3 frames; every receipted one is in the backend's store.
  assert.match(demo.stdout(), /frames sent, receipted, stored at the backend +6, 6, 6$/m);
  assert.match(demo.stdout(), /command down, acked +(?:cid \d+ to demo-sensor-\d+: acked \(done at the backend\)|skipped: the backend runs as its own process)/);
  const pids = await readPids(dir);
  assert.ok(pids !== undefined && pids.demo === demo.pid && pids.swtpm !== undefined, `pid file: ${JSON.stringify(pids)}`);
  const m = /peripheral mqtt (--key \S+ --url \S+ --backend-kid \S+ --backend-key \S+)/.exec(demo.stdout());
  assert.ok(m?.[1] !== undefined, demo.stdout());
  return { demo, pids, socket: join(dir, 'run', 'status.sock'), outside: ['peripheral', 'mqtt', ...m[1].split(' ')] };
}

async function status(socket: string): Promise<StatusReport> {
  const r = await unixRequest(socket, '/v1/status');
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as StatusReport;
}

async function welcomeOutside(d: RunningDemo): Promise<void> {
  const r = await runCli(d.outside, { timeoutMs: 30_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^welcomed: gateway gw-demo authenticated to outside-1/m);
}

describe('gatehouse demo: help', () => {
  it('--help documents --config, --print-config, --backend-process and the signals', async () => {
    const io = captureIO();
    assert.equal(await run(['--help'], io), 0);
    for (const o of ['--config FILE', '--print-config', '--backend-process', 'SIGHUP reloads', 'kill -9']) assert.ok(io.out().includes(o), o);
    assert.equal(io.out(), HELP);
  });
});

describe('gatehouse demo as a child process', function () {
  this.timeout(120_000);
  const tmp = tempDirEach('gh-demo-');
  let leftover: Swtpm | undefined;

  afterEach(async () => {
    await killAllChildren();
    await leftover?.dispose();
    leftover = undefined;
    // A failed test must not leave what its demo started: kill by the directory in the command line.
    if (lastDir !== undefined) for (const line of processesUnder(lastDir)) process.kill(Number(line.split(':')[0]), 'SIGKILL');
    lastDir = undefined;
  });

  it('refuses bad --config overrides with every problem, before anything starts', async () => {
    const file = join(tmp.path, 'over.yaml');
    await writeFile(file, 'pipeline:\n  rateLimits:\n    perDevicePerMin: lots\n  nope: 1\nbackend:\n  url: https://elsewhere.example\nlog:\n  level: chatty\n');
    const r = await runCli(['demo', '--dir', join(tmp.path, 'demo'), '--config', file], { timeoutMs: 30_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /refusing to start: .*over\.yaml: 4 problem\(s\)/);
    for (const path of ['pipeline.rateLimits.perDevicePerMin', 'pipeline.nope', 'backend.url', 'log.level']) assert.match(r.stderr, new RegExp(`^  ${path.replace(/\./g, '\\.')}: expected`, 'm'), path);
    assert.ok(!existsSync(join(tmp.path, 'demo', 'swtpm')) && !existsSync(join(tmp.path, 'demo', PID_FILE)), 'nothing was started');

    await writeFile(file, 'log:\n  level: info\nlog:\n  level: debug\n');
    const dup = await runCli(['demo', '--dir', join(tmp.path, 'demo'), '--config', file], { timeoutMs: 30_000 });
    assert.equal(dup.code, 1, dup.stderr);
    assert.match(dup.stderr, /not valid YAML: .*DUPLICATE_KEY/);
  });

  it('--print-config shows the overrides in the effective config and exits, leaving nothing running', async () => {
    const file = join(tmp.path, 'over.yaml');
    await writeFile(file, 'pipeline:\n  rateLimits:\n    perDevicePerMin: 600\n');
    const dir = join(tmp.path, 'demo');
    const r = await runCli(['demo', '--dir', dir, '--config', file, '--print-config', '--mqtt-port', String(await freePort())], { timeoutMs: START_MS });
    assert.equal(r.code, 0, r.stderr);
    const printed = parseYaml(r.stdout.slice(r.stdout.indexOf('# gatehouse demo: the effective config'))) as { pipeline: { rateLimits: Record<string, number> }; backend: { url: string } };
    assert.deepEqual(printed.pipeline.rateLimits, { perConnectionPerMin: 20, perDevicePerMin: 600, globalPerMin: 480_000 });
    assert.match(printed.backend.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(!existsSync(join(dir, PID_FILE)));
    await assertNothingLeft(dir, []);
  });

  it('serves with --config overrides; SIGHUP reloads them and it keeps serving; a broken reload changes nothing; SIGTERM stops everything', async () => {
    const file = join(tmp.path, 'over.yaml');
    await writeFile(file, 'pipeline:\n  rateLimits:\n    perDevicePerMin: 600\n    perConnectionPerMin: 600\n');
    const dir = join(tmp.path, 'demo');
    const d = await startDemo(dir, ['--config', file]);
    const first = await status(d.socket);
    assert.deepEqual(first.rateLimits, { perConnectionPerMin: 600, perDevicePerMin: 600, globalPerMin: 480_000 });
    // The operator view of the data plane: the demo's 6 frames uploaded, its command relayed and acked.
    assert.equal(first.uplink?.queue.records, 0);
    assert.equal(first.uplink?.uploader.uploaded, 6);
    assert.deepEqual([first.uplink?.commands.relayed, first.uplink?.commands.acked, first.uplink?.commands.pending], [1, 1, 0]);
    const metrics = (await unixRequest(d.socket, '/metrics')).body;
    assert.match(metrics, /^gatehouse_uplink_records_total\{outcome="uploaded"\} 6$/m);
    assert.match(metrics, /^gatehouse_uplink_queue\{what="records"\} 0$/m);
    assert.match(metrics, /^gatehouse_commands_total\{event="acked"\} 1$/m);

    await writeFile(file, 'pipeline:\n  rateLimits:\n    perDevicePerMin: 900\n');
    d.demo.signal('SIGHUP');
    await d.demo.waitForStdout(/SIGHUP: reloaded .*over\.yaml: rate limits 20\/min per connection, 900\/min per device/, 10_000);
    assert.deepEqual((await status(d.socket)).rateLimits, { perConnectionPerMin: 20, perDevicePerMin: 900, globalPerMin: 480_000 });
    await welcomeOutside(d);

    await writeFile(file, 'pipeline:\n  rateLimits:\n    perDevicePerMin: 0\n');
    d.demo.signal('SIGHUP');
    await d.demo.waitForStdout(/SIGHUP: reload refused, nothing changed: .*over\.yaml: 1 problem\(s\):\n {2}pipeline\.rateLimits\.perDevicePerMin: expected/, 10_000);
    assert.equal((await status(d.socket)).rateLimits.perDevicePerMin, 900);
    assert.equal(d.demo.exit, undefined, 'still running');

    d.demo.signal('SIGTERM');
    const exit = await d.demo.exited(STOP_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, d.demo.stderr());
    assert.match(d.demo.stdout(), /Since the demo started\n {2}welcomed \(offline, under a cached lease\) +3 \(0\)/);
    assert.ok(!existsSync(join(dir, PID_FILE)), 'the pid file is removed on a clean stop');
    await assertNothingLeft(dir, [d.pids.swtpm ?? 0]);
  });

  it("kills a previous demo's leftover swtpm by its pid file; SIGINT stops everything", async () => {
    const dir = join(tmp.path, 'demo');
    leftover = await Swtpm.start({ stateDir: join(dir, 'swtpm') });
    const leftoverPid = leftover.pid ?? 0;
    await writeFile(join(dir, PID_FILE), JSON.stringify({ demo: 2_000_000_000, swtpm: leftoverPid }));
    const d = await startDemo(dir);
    assert.ok(d.demo.stdout().includes(`killed pid ${leftoverPid}, the swtpm a previous demo in ${dir} left running`), d.demo.stdout());
    assert.ok(processGone(leftoverPid));
    assert.notEqual(d.pids.swtpm, leftoverPid);

    d.demo.signal('SIGINT');
    assert.deepEqual(await d.demo.exited(STOP_MS), { code: 0, signal: null }, d.demo.stderr());
    await assertNothingLeft(dir, [d.pids.swtpm ?? 0]);
  });

  it('--backend-process: stopping the backend by hand gives offline welcomes to a peripheral welcomed before, counted in status and the final summary', async () => {
    const dir = join(tmp.path, 'demo');
    const d = await startDemo(dir, ['--backend-process']);
    const backend = d.pids.backend ?? 0;
    assert.ok(backend > 0 && !processGone(backend), JSON.stringify(d.pids));
    assert.ok(d.demo.stdout().includes(`stop it:         kill ${backend}`), d.demo.stdout());
    assert.match(d.demo.stdout(), /start it again: {2}node (?:--import tsx )?\S+ serve --data-dir \S+ --cert \S+ --key \S+ --host 127\.0\.0\.1 --port \d+/);

    await welcomeOutside(d); // online: the lease is cached
    process.kill(backend, 'SIGTERM');
    await d.demo.waitForStdout(new RegExp(`The backend process \\(pid ${backend}\\) ended`), 10_000);
    await welcomeOutside(d); // the backend is down: the offline rule, under the cached lease
    const s = await status(d.socket);
    assert.equal(s.decisions.offline, 1, JSON.stringify(s.decisions));
    assert.equal(s.decisions.welcome, 4, JSON.stringify(s.decisions));

    d.demo.signal('SIGTERM');
    assert.deepEqual(await d.demo.exited(STOP_MS), { code: 0, signal: null }, d.demo.stderr());
    assert.match(d.demo.stdout(), /welcomed \(offline, under a cached lease\) +4 \(1\)/);
    assert.match(d.demo.stdout(), /backend: retries, offline welcomes, offline rejects +\d+, 1, 0/);
    await assertNothingLeft(dir, [d.pids.swtpm ?? 0, backend]);
  });

  it('kill -9 of the demo: the kernel ends its swtpm and backend process (parent-death signal)', async () => {
    const dir = join(tmp.path, 'demo');
    const d = await startDemo(dir, ['--backend-process']);
    const children = [d.pids.swtpm ?? 0, d.pids.backend ?? 0];
    assert.ok(children.every((p) => p > 0 && !processGone(p)), JSON.stringify(d.pids));
    d.demo.signal('SIGKILL');
    assert.equal((await d.demo.exited(STOP_MS)).signal, 'SIGKILL');
    await assertNothingLeft(dir, children);
  });

  it('an uncaught error (its stdout closed under it, then a SIGHUP to report) kills the children and exits 1', async () => {
    const dir = join(tmp.path, 'demo');
    const d = await startDemo(dir, ['--backend-process']);
    const children = [d.pids.swtpm ?? 0, d.pids.backend ?? 0];
    d.demo.child.stdout?.destroy();
    d.demo.signal('SIGHUP');
    const exit = await d.demo.exited(STOP_MS);
    assert.deepEqual(exit, { code: 1, signal: null }, d.demo.stderr());
    assert.match(d.demo.stderr(), /gatehouse demo: unexpected error, stopped: .*EPIPE/);
    assert.ok(!existsSync(join(dir, PID_FILE)));
    await assertNothingLeft(dir, children);
  });
});
