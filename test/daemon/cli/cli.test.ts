import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { COMMANDS, main } from '../../../cli/main.js';
import { runEvents } from '../../../daemon/cli/events.js';
import { StatusServer } from '../../../daemon/status/server.js';
import { captureIO } from '../../../testkit/cli-io.js';
import { minimalConfigYaml } from '../../../testkit/config.js';
import { TestSource } from '../status/fixtures.js';

const exec = promisify(execFile);
const REPO = join(import.meta.dirname, '../../..');

describe('daemon/cli', () => {
  let dir: string;
  let sock: string;
  let source: TestSource;
  let server: StatusServer;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-cli-'));
    sock = join(dir, 'status.sock');
    source = new TestSource();
    server = new StatusServer({ socketPath: sock, source });
    await server.start();
  });
  afterEach(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the bin prints usage fast-path help and exits 0; no command is usage error 2', async () => {
    const r = await exec(process.execPath, ['--import', 'tsx', join(REPO, 'cli/gatehouse.ts'), '--help'], { cwd: REPO, timeout: 30000 });
    assert.match(r.stdout, /^Usage: gatehouse <command>/);
    for (const name of Object.keys(COMMANDS)) assert.match(r.stdout, new RegExp(`^  ${name} `, 'm'));
    const io = captureIO();
    assert.equal(await main([], io), 2);
    assert.match(io.err(), /^Usage:/);
  });

  it('the dispatcher imports nothing heavy: subcommands load lazily', async () => {
    const { readFile } = await import('node:fs/promises');
    const src = await readFile(join(REPO, 'cli/main.ts'), 'utf8');
    const imports = [...src.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    assert.deepEqual(imports.sort(), ['../common/cli-io.js', '../daemon/version.js']);
  });

  it('unknown commands and options name themselves (exit 2)', async () => {
    let io = captureIO();
    assert.equal(await main(['stauts'], io), 2);
    assert.match(io.err(), /unknown command "stauts"/);
    io = captureIO();
    assert.equal(await main(['status', '--jsno'], io), 2);
    assert.match(io.err(), /gatehouse status: unknown option --jsno/);
    io = captureIO();
    assert.equal(await main(['events', '--limit', 'ten', '--socket', sock], io), 2);
    assert.match(io.err(), /--limit must be an integer/);
    io = captureIO();
    assert.equal(await main(['check', '--only', 'clock.sane,bogus.check', '--offline'], io), 2);
    assert.match(io.err(), /unknown check "bogus\.check"/);
    io = captureIO();
    assert.equal(await main(['--frob'], io), 2);
    assert.match(io.err(), /unknown option --frob/);
  });

  it('every command answers --help with exit 0', async () => {
    for (const name of ['run', 'status', 'peripherals', 'events', 'check', 'config']) {
      const io = captureIO();
      assert.equal(await main([name, '--help'], io), 0, name);
      assert.match(io.out(), new RegExp(`^Usage: gatehouse ${name}`), name);
    }
    const io = captureIO();
    assert.equal(await main(['help', 'events'], io), 0);
    assert.match(io.out(), /--follow/);
  });

  it('a command whose module is missing or malformed fails alone (exit 1), the others still work', async () => {
    const commands = {
      ...COMMANDS,
      gone: { summary: 'missing module', module: './no-such-command.js' },
      shapeless: { summary: 'module without run()', module: '../daemon/cli/format.js' },
    };
    let io = captureIO();
    assert.equal(await main(['gone'], io, commands), 1);
    assert.match(io.err(), /^gatehouse gone: not available in this build/);
    io = captureIO();
    assert.equal(await main(['shapeless'], io, commands), 1);
    assert.match(io.err(), /gatehouse shapeless: the command module has no run\(\)/);
    io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['status'], io, commands), 0, io.err());
  });

  it('status: aligned key/values for people, the document with --json', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['status'], io), 0, io.err());
    const lines = io.out().trim().split('\n');
    assert.match(lines[0] ?? '', /^Gateway +gw-test-1 \(version 0\.1\.0, NOT production\), pid \d+$/);
    const valueColumn = (l: string): number => /^[A-Z][a-zA-Z]+ {2,}/.exec(l)?.[0].length ?? -1;
    assert.ok(lines.length >= 8 && lines.every((l) => valueColumn(l) === valueColumn(lines[0] ?? '')), io.out());
    const json = captureIO();
    assert.equal(await main(['status', '--json', '--socket', sock], json), 0);
    assert.equal((JSON.parse(json.out()) as { gateway: { id: string } }).gateway.id, 'gw-test-1');
  });

  it('peripherals: a table with a header', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['peripherals'], io), 0);
    const [header, row] = io.out().trim().split('\n');
    assert.match(header ?? '', /^DEVICE +TRANSPORT +STATE +SINCE +OFFLINE +LEASE EXPIRES +REMOTE +PROTO +AGE +FRAMES IN\/OUT +DROPS +CMDS$/);
    assert.match(row ?? '', /^dev-1 +mqtt +welcomed +\d+d \d+h ago +no +- +127\.0\.0\.1:50000 +v1 +- +- +- +-$/);
    assert.equal((header ?? '').indexOf('TRANSPORT'), (row ?? '').indexOf('mqtt'), 'columns aligned');
  });

  it('events: pages through the ring; --json is NDJSON', async () => {
    for (let i = 1; i <= 3; i++) source.decide(`dev-${i}`, i === 2 ? 'reject' : 'welcome');
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['events', '--limit', '2'], io), 0, io.err());
    const lines = io.out().trim().split('\n');
    assert.equal(lines.length, 5, 'header, three events, legend');
    assert.match(lines[2] ?? '', /^2 +\S+ \S+ +mqtt +dev-2 +reject +bad-signature +12 ms +no +-$/);
    const json = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['events', '--json', '--since', '1'], json), 0);
    assert.deepEqual(json.out().trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq), [2, 3]);
  });

  it('events --follow prints new events as they come and stops on the signal', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    const ac = new AbortController();
    const done = runEvents(['--follow', '--interval-ms', '20'], io, ac.signal);
    await io.waitForOut('SEQ');
    source.decide('dev-late', 'welcome');
    await io.waitForOut('dev-late');
    ac.abort();
    assert.equal(await done, 0);
  });

  it('events --follow exits 1 when the daemon goes away', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    const ac = new AbortController();
    const done = runEvents(['--follow', '--interval-ms', '20'], io, ac.signal);
    await io.waitForOut('SEQ');
    await server.stop();
    assert.equal(await done, 1);
    assert.match(io.err(), /gatehouse is not running|cannot reach gatehouse/);
  });

  it('check asks the daemon; --json; a failed check exits 1, warnings 3', async () => {
    let io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['check'], io), 0);
    assert.match(io.out(), /^OK {4}clock\.sane {2}fine$/m);
    source.checks = () =>
      Promise.resolve({
        status: 'warn',
        results: [{ id: 'credential.expiry', description: 'd', status: 'warn', message: 'expires soon', action: 'check the backend' }],
        summary: { ok: 0, warn: 1, fail: 0, skip: 0 },
      });
    io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['check'], io), 3);
    assert.match(io.out(), /WARN {2}credential\.expiry {2}expires soon\n +-> check the backend/);
    io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['check', '--json'], io), 3);
    assert.equal((JSON.parse(io.out()) as { status: string }).status, 'warn');
  });

  it('check without a daemon says so and suggests --offline; --offline runs locally', async () => {
    await server.stop();
    let io = captureIO({ GATEHOUSE_STATUS_SOCKET: sock });
    assert.equal(await main(['check'], io), 1);
    assert.match(io.err(), /not running[\s\S]*gatehouse check --offline/);
    const cfg = join(dir, 'gatehouse.yaml');
    await writeFile(cfg, minimalConfigYaml(`tpm:\n  kind: software\n`).replace('gateway:\n  id: gw-test-1', `gateway:\n  id: gw-test-1\n  stateDir: ${dir}`));
    io = captureIO();
    const code = await main(['check', '--offline', '--config', cfg, '--only', 'config.valid,clock.sane,state.writable,tpm.key'], io);
    assert.equal(code, 3, io.out() + io.err());
    assert.match(io.out(), /^OK {4}config\.valid/m);
    assert.match(io.out(), /^OK {4}state\.writable/m);
    assert.match(io.out(), /^WARN {2}tpm\.key +software key store/m);
  });

  it('the status socket permission error tells the operator what to do', async () => {
    const io = captureIO({ GATEHOUSE_STATUS_SOCKET: join(dir, 'nope.sock') });
    assert.equal(await main(['peripherals'], io), 1);
    assert.match(io.err(), /gatehouse is not running/);
  });

  it('config check: OK, every problem, --json, missing file', async () => {
    const good = join(dir, 'good.yaml');
    await writeFile(good, minimalConfigYaml());
    let io = captureIO({ GATEHOUSE_CONFIG: good });
    assert.equal(await main(['config', 'check'], io), 0);
    assert.equal(io.out(), `OK ${good}\n`);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, minimalConfigYaml('mqtt:\n  tcp:\n    port: 0\n  maxConections: 5\n'));
    io = captureIO();
    assert.equal(await main(['config', 'check', '--config', bad], io), 1);
    assert.match(io.err(), /2 problem\(s\):\n {2}mqtt\.maxConections: expected one of the known keys .*, got an unknown key\n {2}mqtt\.tcp\.port: expected integer 1\.\.65535, got 0\n$/);
    io = captureIO();
    assert.equal(await main(['config', 'check', '--config', bad, '--json'], io), 1);
    const doc = JSON.parse(io.out()) as { ok: boolean; issues: { path: string }[] };
    assert.equal(doc.ok, false);
    assert.equal(doc.issues.length, 2);
    io = captureIO();
    assert.equal(await main(['config', 'check', '--config', join(dir, 'absent.yaml')], io), 1);
    assert.match(io.err(), /absent\.yaml: no such file/);
    io = captureIO();
    assert.equal(await main(['config', 'frob'], io), 2);
  });

  it('run fails closed on a bad config, before anything listens', async () => {
    const io = captureIO();
    assert.equal(await main(['run', '--config', join(dir, 'absent.yaml')], io), 1);
    assert.match(io.err(), /refusing to start: .*absent\.yaml: no such file/);
  });
});
