/**
 * A broken config fails closed (issue acceptance: "config errors listed all at once"): `gatehouse
 * run` exits 1 naming every bad path in one go, and nothing starts — no READY=1, no MQTT
 * listener on the configured port, no status socket, no state directory.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../../../demo/embedded.js';
import { TEST_BACKEND_KEY } from '../../../testkit/config.js';
import { killAllChildren, spawnDaemon } from '../../../testkit/daemon.js';
import { openNotifySocket, type NotifySocket } from '../../../testkit/notify-socket.js';
import { START_TIMEOUT_MS, tcpConnects } from './fixture.js';

describe('daemon as a child process: config errors', function () {
  this.timeout(90_000);
  let dir: string;
  let ns: NotifySocket;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-gw-config-'));
    ns = await openNotifySocket(1);
  });

  after(async () => {
    await killAllChildren();
    await ns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists every problem at once, exits 1, and starts nothing', async () => {
    const port = await freePort();
    const stateDir = join(dir, 'state');
    const runtimeDir = join(dir, 'run');
    const socketPath = join(runtimeDir, 'status.sock');
    const bad = {
      gateway: { id: 'gw-bad', stateDir, runtimeDir, colour: 'blue' }, // unknown key
      backend: { backendPublicKey: TEST_BACKEND_KEY, backendKid: 'backend-1' }, // url missing (required)
      mqtt: { tcp: { port }, maxConnections: 'many' }, // wrong type
      tpm: { handle: '0x01000000' }, // outside the persistent range
      status: { socketPath },
      log: { level: 'chatty' }, // not one of the levels
    };
    const file = join(dir, 'bad.yaml');
    await writeFile(file, stringify(bad), { mode: 0o600 });

    const child = spawnDaemon(file, { env: { NOTIFY_SOCKET: ns.path } });
    const exit = await child.exited(START_TIMEOUT_MS);
    assert.equal(exit.code, 1, child.stderr());
    const err = child.stderr();
    assert.match(err, /refusing to start/);
    assert.match(err, /5 problem\(s\)/);
    for (const path of ['gateway.colour', 'backend.url', 'mqtt.maxConnections', 'tpm.handle', 'log.level']) {
      assert.match(err, new RegExp(`^  ${path.replace('.', '\\.')}: expected `, 'm'), `${path} is named`);
    }
    assert.match(err, /got "many"/);

    // Nothing started: no readiness, no listener, no socket, no state.
    assert.deepEqual(ns.drain(), []);
    await assert.rejects(tcpConnects(port), /ECONNREFUSED/);
    assert.equal(existsSync(socketPath), false);
    assert.equal(existsSync(stateDir), false);
    assert.equal(existsSync(runtimeDir), false);
    assert.equal(child.stdout(), '');
  });

  it('refuses a config file that is not YAML, and one that does not exist, with exit 1', async () => {
    const notYaml = join(dir, 'not.yaml');
    await writeFile(notYaml, 'gateway: [unclosed\n  id: x\n', { mode: 0o600 });
    const a = spawnDaemon(notYaml);
    const b = spawnDaemon(join(dir, 'missing.yaml'));
    const [ea, eb] = await Promise.all([a.exited(START_TIMEOUT_MS), b.exited(START_TIMEOUT_MS)]);
    assert.equal(ea.code, 1, a.stderr());
    assert.match(a.stderr(), /not valid YAML/);
    assert.equal(eb.code, 1, b.stderr());
    assert.match(b.stderr(), /missing\.yaml: no such file/);
  });

  it('under journald (JOURNAL_STREAM) every line of the refusal carries the error priority <3>', async () => {
    const file = join(dir, 'journald.yaml');
    await writeFile(file, stringify({ gateway: { id: 'gw-j', colour: 'blue' } }), { mode: 0o600 });
    const child = spawnDaemon(file, { env: { JOURNAL_STREAM: '8:12345' } });
    const exit = await child.exited(START_TIMEOUT_MS);
    assert.equal(exit.code, 1, child.stderr());
    const lines = child.stderr().trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^<3>gatehouse run: refusing to start: /);
    assert.ok(lines.length > 1, 'the problems follow on their own lines');
    for (const l of lines) assert.match(l, /^<3>/, `every line has the prefix: ${l}`);
  });
});
