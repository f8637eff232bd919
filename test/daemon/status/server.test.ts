import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, lstat, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { StatusError } from '../../../daemon/status/errors.js';
import { missingGroupLevel, StatusServer } from '../../../daemon/status/server.js';
import { CONFIG_SCHEMA } from '../../../daemon/config/schema.js';
import { groupId } from '../../../daemon/status/socket-file.js';
import { createRootLogger } from '../../../common/log/logger.js';
import { unixRequest } from '../../../testkit/unix-http.js';
import { SECRET_DETAIL, TestSource } from './fixtures.js';

const exec = promisify(execFile);

async function curl(args: string[], asNobody?: { gid: number }): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = ['curl', '--silent', '--show-error', '--max-time', '5', ...args];
  const [file, argv] = asNobody === undefined ? ['curl', base.slice(1)] : ['setpriv', ['--reuid=65534', `--regid=${asNobody.gid}`, '--clear-groups', ...base]];
  try {
    const r = await exec(file as string, argv as string[], { timeout: 10000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('daemon/status/server', () => {
  let dir: string;
  let sock: string;
  let source: TestSource;
  let server: StatusServer;
  let logged: string[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-status-'));
    sock = join(dir, 'status.sock');
    source = new TestSource();
    logged = [];
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => logged.push(c.toString('utf8')));
    const logger = createRootLogger({ level: 'debug', format: 'json', env: {}, stream });
    server = new StatusServer({ socketPath: sock, source, logger, group: 'gatehouse-no-such-group' });
    await server.start();
  });
  afterEach(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves /v1/status to curl over the socket, mode 0660', async () => {
    const st = await lstat(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    const r = await curl(['--unix-socket', sock, '-i', 'http://localhost/v1/status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 200 OK/);
    assert.match(r.stdout, /content-type: application\/json/i);
    assert.match(r.stdout, /cache-control: no-store/i);
    const body = JSON.parse(r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4)) as { gateway: { id: string } };
    assert.equal(body.gateway.id, 'gw-test-1');
  });

  it('gives the socket the configured group when it exists', async () => {
    await server.stop();
    server = new StatusServer({ socketPath: sock, source, group: 'staff-test', resolveGroup: (n) => Promise.resolve(n === 'staff-test' ? 4242 : undefined) });
    await server.start();
    const st = await lstat(sock);
    assert.equal(st.gid, 4242, 'chown to the group (the tests run as root)');
    assert.equal(st.mode & 0o777, 0o660);
  });

  it('a missing status group: one info line for a plain start with the default group; a warning when the group was named or under systemd', async () => {
    const dflt = CONFIG_SCHEMA.fields.status.fields.group.default;
    assert.equal(dflt, 'gatehouse-status');
    assert.equal(missingGroupLevel(dflt, dflt, {}), 'info', 'outside systemd, default group');
    assert.equal(missingGroupLevel(dflt, dflt, { JOURNAL_STREAM: '8:1234' }), 'warn', 'under systemd (journal)');
    assert.equal(missingGroupLevel(dflt, dflt, { INVOCATION_ID: 'abc' }), 'warn', 'under systemd (unit)');
    assert.equal(missingGroupLevel('ops', dflt, {}), 'warn', 'a group the operator named');
    const levels = async (level: 'warn' | 'info'): Promise<string[]> => {
      await server.stop();
      const stream = new PassThrough();
      const lines: string[] = [];
      stream.on('data', (c: Buffer) => lines.push(c.toString('utf8')));
      const logger = createRootLogger({ level: 'debug', format: 'json', env: {}, stream });
      server = new StatusServer({ socketPath: sock, source, logger, group: dflt, missingGroup: level, resolveGroup: () => Promise.resolve(undefined) });
      await server.start();
      return lines
        .map((l) => JSON.parse(l) as { level: string; message: string })
        .filter((l) => l.message.startsWith('status group does not exist'))
        .map((l) => l.level);
    };
    assert.deepEqual(await levels(missingGroupLevel(dflt, dflt, {})), ['info']);
    assert.deepEqual(await levels(missingGroupLevel(dflt, dflt, { INVOCATION_ID: 'abc' })), ['warn']);
  });

  it('resolves group names from a group file', async () => {
    const file = join(dir, 'group');
    await writeFile(file, 'root:x:0:\ngatehouse-status:x:997:alice,bob\nbroken-line\n');
    assert.equal(await groupId('gatehouse-status', file), 997);
    assert.equal(await groupId('root', file), 0);
    assert.equal(await groupId('absent', file), undefined);
    assert.equal(await groupId('root', join(dir, 'no-such-file')), undefined);
  });

  it('refuses a uid outside the socket group and admits one inside it', async () => {
    await chmod(dir, 0o755); // let uid 65534 reach the directory: only the socket mode decides now
    const outside = await curl(['--unix-socket', sock, 'http://localhost/v1/status'], { gid: 65534 });
    assert.notEqual(outside.code, 0);
    assert.match(outside.stderr, /Permission denied|Couldn't connect/i);
    const st = await lstat(sock);
    const inside = await curl(['--unix-socket', sock, 'http://localhost/v1/status'], { gid: st.gid });
    assert.equal(inside.code, 0, inside.stderr);
    assert.match(inside.stdout, /gw-test-1/);
  });

  it('serves peripherals, paged events and checks', async () => {
    const p = await unixRequest(sock, '/v1/peripherals');
    assert.equal(p.status, 200);
    assert.equal((JSON.parse(p.body) as { peripherals: unknown[] }).peripherals.length, 1);
    for (let i = 1; i <= 6; i++) source.decide(`dev-${i}`, i % 2 === 0 ? 'reject' : 'welcome');
    const e = JSON.parse((await unixRequest(sock, '/v1/events?since=0&limit=2')).body) as { events: { seq: number; dev: string }[]; next: number; truncated: boolean };
    // Ring of 4: events 1 and 2 were overwritten.
    assert.deepEqual(e.events.map((x) => x.seq), [3, 4]);
    assert.equal(e.truncated, true);
    const e2 = JSON.parse((await unixRequest(sock, `/v1/events?since=${e.next}`)).body) as { events: { seq: number }[]; next: number; truncated: boolean };
    assert.deepEqual(e2.events.map((x) => x.seq), [5, 6]);
    assert.equal(e2.truncated, false);
    const e3 = JSON.parse((await unixRequest(sock, `/v1/events?since=${e2.next}`)).body) as { events: unknown[]; next: number };
    assert.deepEqual(e3, { events: [], next: 6, truncated: false });
    const c = await unixRequest(sock, '/v1/check');
    assert.equal(c.status, 200);
    assert.equal((JSON.parse(c.body) as { status: string }).status, 'ok');
  });

  it('serves /v1/failing and filters /v1/events by device (dev checked, cursor past what it skipped)', async () => {
    assert.deepEqual(JSON.parse((await unixRequest(sock, '/v1/failing')).body), { failing: [] });
    source.decide('dev-a', 'reject', { reason: 'not-allowed-here' });
    source.decide('dev-b', 'welcome');
    source.decide('dev-a', 'reject', { reason: 'rate-limited', retry: 7 });
    const f = JSON.parse((await unixRequest(sock, '/v1/failing')).body) as { failing: { dev: string; failures: number; lastReason: string; advice: { action: string } }[] };
    assert.deepEqual(f.failing.map((x) => [x.dev, x.failures, x.lastReason]), [['dev-a', 2, 'rate-limited']]);
    assert.match(f.failing[0]?.advice.action ?? '', /next attempt time/);
    const e = JSON.parse((await unixRequest(sock, '/v1/events?dev=dev-a&limit=1')).body) as { events: { seq: number }[]; next: number };
    assert.deepEqual([e.events.map((x) => x.seq), e.next], [[1], 1]);
    const e2 = JSON.parse((await unixRequest(sock, `/v1/events?dev=dev-a&since=${e.next}`)).body) as { events: { seq: number }[]; next: number };
    assert.deepEqual([e2.events.map((x) => x.seq), e2.next], [[3], 3]);
    const none = JSON.parse((await unixRequest(sock, '/v1/events?dev=dev-zzz')).body) as { events: unknown[]; next: number };
    assert.deepEqual([none.events, none.next], [[], 3]);
    for (const bad of ['a%20b', 'x'.repeat(65), '']) {
      const r = await unixRequest(sock, `/v1/events?dev=${bad}`);
      assert.equal(r.status, 400, bad);
      assert.match((JSON.parse(r.body) as { detail: string }).detail, /dev must be a device id/);
    }
  });

  it('exposes Prometheus metrics from the private registry', async () => {
    source.decide('dev-1', 'welcome');
    source.decide('dev-2', 'reject');
    const m = await unixRequest(sock, '/metrics');
    assert.equal(m.status, 200);
    assert.match(String(m.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(m.body, /^gatehouse_decisions_total\{transport="mqtt",outcome="welcome",reason=""\} 1$/m);
    assert.match(m.body, /^gatehouse_decisions_total\{transport="mqtt",outcome="reject",reason="bad-signature"\} 1$/m);
    assert.match(m.body, /^gatehouse_decision_duration_seconds_bucket\{le="0\.025",transport="mqtt",outcome="welcome"\} 1$/m);
    assert.match(m.body, /^gatehouse_credential_expiry_timestamp_seconds 0$/m);
    assert.ok(!m.body.includes('dev-1'), 'no device ids as labels');
    let open = 3;
    source.metrics.setSources({ connections: () => ({ mqtt: open }), credentialNotAfter: () => 1_900_000_000 });
    const m2 = await unixRequest(sock, '/metrics');
    assert.match(m2.body, /^gatehouse_connections\{transport="mqtt"\} 3$/m);
    assert.match(m2.body, /^gatehouse_connections\{transport="ble"\} 0$/m);
    assert.match(m2.body, /^gatehouse_credential_expiry_timestamp_seconds 1900000000$/m);
    open = 1;
    assert.match((await unixRequest(sock, '/metrics')).body, /^gatehouse_connections\{transport="mqtt"\} 1$/m);
  });

  it('exposes the data plane in /metrics: queue depth, bytes, oldest age, records by outcome, commands', async () => {
    const u = {
      queue: { records: 12, bytes: 3456, oldestAgeSec: 42, acks: 2, busy: 5, expired: 1 },
      uploader: { circuit: 'closed' as const, uploaded: 300, duplicates: 4, refused: 3, acksUploaded: 7, failures: 2 },
      commands: { pending: 1, received: 9, relayed: 8, acked: 6, expired: 2, refused: 0 },
    };
    source.metrics.setSources({ uplink: () => u });
    const m = (await unixRequest(sock, '/metrics')).body;
    assert.match(m, /^gatehouse_uplink_queue\{what="records"\} 12$/m);
    assert.match(m, /^gatehouse_uplink_queue\{what="bytes"\} 3456$/m);
    assert.match(m, /^gatehouse_uplink_queue\{what="acks"\} 2$/m);
    assert.match(m, /^gatehouse_uplink_queue_oldest_age_seconds 42$/m);
    for (const [outcome, n] of [['uploaded', 300], ['duplicate', 4], ['refused', 3], ['busy', 5], ['expired', 1], ['acks_uploaded', 7]] as const) {
      assert.match(m, new RegExp(`^gatehouse_uplink_records_total\\{outcome="${outcome}"\\} ${n}$`, 'm'), outcome);
    }
    for (const [event, n] of [['received', 9], ['relayed', 8], ['acked', 6], ['expired', 2], ['refused', 0]] as const) {
      assert.match(m, new RegExp(`^gatehouse_commands_total\\{event="${event}"\\} ${n}$`, 'm'), event);
    }
    assert.match(m, /^gatehouse_commands_pending 1$/m);
    // Counters follow the data plane's totals at each scrape (copied, not added up twice).
    u.uploader.uploaded = 301;
    const again = (await unixRequest(sock, '/metrics')).body;
    assert.match(again, /^gatehouse_uplink_records_total\{outcome="uploaded"\} 301$/m);
  });

  it('answers problems: 404, 405 with Allow, 413 for a body, 400 for bad or unknown parameters', async () => {
    const nf = await unixRequest(sock, '/v1/nope');
    assert.equal(nf.status, 404);
    assert.equal(nf.headers['content-type'], 'application/problem+json');
    assert.deepEqual(JSON.parse(nf.body), { type: 'about:blank', title: 'Not Found', status: 404 });
    const post = await unixRequest(sock, '/v1/status', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const body = await unixRequest(sock, '/v1/status', { headers: { 'content-length': '5' }, body: 'hello' });
    assert.equal(body.status, 413);
    const bad = await unixRequest(sock, '/v1/events?since=-1');
    assert.equal(bad.status, 400);
    assert.match((JSON.parse(bad.body) as { detail: string }).detail, /since must be an integer/);
    const unknown = await unixRequest(sock, '/v1/status?verbose=1');
    assert.equal(unknown.status, 400);
    assert.match((JSON.parse(unknown.body) as { detail: string }).detail, /unknown query parameter "verbose"/);
  });

  it('answers 400 to a malformed request target', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect({ path: sock });
      let got = '';
      const guard = setTimeout(() => reject(new Error('no answer')), 5000);
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (got.includes('\r\n\r\n')) {
          clearTimeout(guard);
          s.destroy();
          resolve(got);
        }
      });
      s.on('error', reject);
      s.write('GET http://[ HTTP/1.1\r\nhost: localhost\r\n\r\n');
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
  });

  it('refuses an oversized request head with 431', async () => {
    const r = await curl(['--unix-socket', sock, '-o', '/dev/null', '-w', '%{http_code}', '-H', `x-big: ${'a'.repeat(10000)}`, 'http://localhost/v1/status']);
    assert.equal(r.stdout, '431');
  });

  it('answers a generic 500 on an internal failure and logs the cause', async () => {
    source.failing = true;
    for (const path of ['/v1/status', '/v1/peripherals']) {
      const r = await unixRequest(sock, path);
      assert.equal(r.status, 500);
      assert.deepEqual(JSON.parse(r.body), { type: 'about:blank', title: 'Internal Server Error', status: 500 });
      assert.ok(!r.body.includes('SECRET'));
    }
    assert.ok(logged.some((l) => l.includes('status request failed') && l.includes(SECRET_DETAIL)), 'the chain is logged');
  });

  it('cuts off a client that never finishes its request (408)', async () => {
    await server.stop();
    server = new StatusServer({ socketPath: sock, source, requestTimeoutMs: 200, timeoutCheckIntervalMs: 50 });
    await server.start();
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect({ path: sock });
      let got = '';
      const guard = setTimeout(() => {
        s.destroy();
        reject(new Error('the server kept a half-sent request open'));
      }, 10000);
      s.on('data', (c: Buffer) => (got += c.toString('latin1')));
      s.on('close', () => {
        clearTimeout(guard);
        resolve(got);
      });
      s.on('error', () => undefined);
      s.write('GET /v1/status HTTP/1.1\r\nhost: localhost\r\n');
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  it('answers HEAD without a body', async () => {
    const r = await unixRequest(sock, '/v1/status', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    assert.ok(Number(r.headers['content-length']) > 0);
  });

  it('answers 503 when checks take too long', async () => {
    await server.stop();
    source.checks = () => new Promise(() => undefined);
    server = new StatusServer({ socketPath: sock, source, checkTimeoutMs: 50 });
    await server.start();
    const r = await unixRequest(sock, '/v1/check');
    assert.equal(r.status, 503);
  });

  describe('socket path safety', () => {
    it('refuses to start while another daemon answers, and replaces a stale socket', async () => {
      const second = new StatusServer({ socketPath: sock, source });
      await assert.rejects(second.start(), (e: unknown) => e instanceof StatusError && e.code === 'GH_STATUS_SOCKET_IN_USE');
      // Simulate a crash: a bound socket file nobody listens on any more.
      await server.stop();
      await bindStale(sock);
      const third = new StatusServer({ socketPath: sock, source });
      await third.start();
      try {
        assert.equal((await unixRequest(sock, '/v1/status')).status, 200);
      } finally {
        await third.stop();
      }
    });

    it('refuses a symlink and a regular file at the path, leaving them alone', async () => {
      await server.stop();
      const target = join(dir, 'target');
      await writeFile(target, 'do not touch');
      await symlink(target, sock);
      await assert.rejects(new StatusServer({ socketPath: sock, source }).start(), (e: unknown) => e instanceof StatusError && e.code === 'GH_STATUS_SOCKET_SYMLINK');
      assert.ok((await lstat(sock)).isSymbolicLink());
      const plain = join(dir, 'plain.sock');
      await writeFile(plain, 'x');
      await assert.rejects(new StatusServer({ socketPath: plain, source }).start(), (e: unknown) => e instanceof StatusError && e.code === 'GH_STATUS_SOCKET_NOT_SOCKET');
      assert.ok((await lstat(plain)).isFile());
    });

    it('fails with GH_STATUS_LISTEN when the directory is missing', async () => {
      await assert.rejects(new StatusServer({ socketPath: join(dir, 'absent', 's.sock'), source }).start(), (e: unknown) => e instanceof StatusError && e.code === 'GH_STATUS_LISTEN');
    });
  });
});

/**
 * Leave a socket file with no listener behind, as a killed daemon does: a net.Server's close()
 * unlinks its file, so bind one in a child process that exits without closing.
 */
async function bindStale(path: string): Promise<void> {
  await exec(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`], { timeout: 10000 });
  const st = await lstat(path);
  assert.ok(st.isSocket(), 'stale socket left behind');
}

