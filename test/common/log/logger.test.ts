import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { EventEmitter } from 'node:events';
import { createRootLogger, logError, reloadLevelOnSighup, setLogLevel, type LogLevel } from '../../../common/log/logger.js';
import { GatehouseError } from '../../../common/errors.js';

function capture(): { stream: PassThrough; lines: () => string[] } {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  return { stream, lines: () => chunks.join('').split('\n').filter((l) => l !== '') };
}

/** winston writes synchronously through the stream transport; one tick lets PassThrough emit. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('daemon/log', () => {
  it('prefixes sd-daemon priorities under journald', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'debug', format: 'text', env: { JOURNAL_STREAM: '8:1234' }, stream: c.stream });
    const mqtt = log.child({ area: 'mqtt' });
    mqtt.error('e1');
    mqtt.warn('w1');
    mqtt.info('i1', { conn: 'mqtt:1' });
    mqtt.debug('d1');
    await flush();
    assert.deepEqual(c.lines(), ['<3>ERROR mqtt: e1', '<4>WARN mqtt: w1', '<6>INFO mqtt: i1 conn=mqtt:1', '<7>DEBUG mqtt: d1']);
  });

  it('builds no record for a disabled level (nothing enters the pipeline), and follows level changes', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'info', format: 'text', env: {}, stream: c.stream });
    const child = log.child({ area: 'mqtt' });
    let records = 0;
    const write = log.write.bind(log);
    log.write = (chunk: unknown, ...rest: never[]): boolean => {
      records += 1;
      return write(chunk as never, ...rest);
    };
    const meta = { get conn(): string { throw new Error('a disabled line must not read its fields'); } };
    child.debug('connection accepted', meta);
    log.debug('root debug');
    assert.equal(records, 0);
    child.info('peripheral welcomed', { dev: 'd1' });
    assert.equal(records, 1);
    setLogLevel(log, 'debug');
    child.debug('now shown', { conn: 'mqtt:1' });
    assert.equal(records, 2);
    setLogLevel(log, 'warn');
    child.info('hidden again');
    assert.equal(records, 2);
    await flush();
    assert.equal(c.lines().length, 2);
    assert.match(c.lines()[1] ?? '', /DEBUG mqtt: now shown conn=mqtt:1$/);
  });

  it('writes JSON lines without prefixes outside systemd', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'info', format: 'json', env: {}, stream: c.stream });
    log.child({ area: 'ble' }).info('scan', { n: 2 });
    log.debug('hidden');
    await flush();
    const lines = c.lines();
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    assert.equal(rec.message, 'scan');
    assert.equal(rec.area, 'ble');
    assert.equal(rec.n, 2);
    assert.equal(rec.level, 'info');
    assert.equal(typeof rec.timestamp, 'string');
  });

  it('redacts secrets by field name at any depth and never prints raw bytes', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'debug', format: 'json', env: {}, stream: c.stream });
    const secret = 'S3CRET-VALUE-123';
    log.info('x', {
      privateKey: secret,
      gn: secret,
      pn: secret,
      sessionKey: secret,
      credential: secret,
      nested: { deeper: { signature: secret, nonce: secret, ok: 'visible' } },
      list: [{ secret }],
      blob: Buffer.from(secret),
      keyFile: '/etc/gatehouse/mqtt.key',
      keyStore: 'tpm',
      dev: 'dev-1',
    });
    await flush();
    const line = c.lines()[0] ?? '';
    assert.ok(!line.includes(secret), line);
    assert.ok(!line.includes(Buffer.from(secret).toString('base64')), line);
    const rec = JSON.parse(line) as Record<string, unknown>;
    assert.equal(rec.privateKey, '[redacted]');
    assert.equal(rec.gn, '[redacted]');
    assert.equal(rec.blob, `[${secret.length} bytes]`);
    assert.equal(rec.keyFile, '/etc/gatehouse/mqtt.key');
    assert.equal(rec.keyStore, 'tpm');
    assert.equal(rec.dev, 'dev-1');
    assert.deepEqual(rec.nested, { deeper: { signature: '[redacted]', nonce: '[redacted]', ok: 'visible' } });
  });

  it('logs the error message at error level and the stack only at debug', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'info', format: 'text', env: { JOURNAL_STREAM: '1:2' }, stream: c.stream });
    const err = new GatehouseError('GH_TEST_BOOM', 'boom', { cause: new Error('socket hang up') });
    logError(log, 'backend call failed', err);
    await flush();
    let lines = c.lines();
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /^<3>ERROR backend call failed error=boom code=GH_TEST_BOOM causes=/);
    assert.ok(!(lines[0] ?? '').includes('at '), 'no stack at error level');
    log.level = 'debug';
    logError(log, 'again', err);
    await flush();
    lines = c.lines();
    assert.equal(lines.length, 3);
    assert.match(lines[2] ?? '', /^<7>DEBUG again \(stack\) stack=/);
  });

  it('keeps the stack out of an error line even when an Error is passed as meta', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'debug', format: 'json', env: {}, stream: c.stream });
    log.error('failed', new Error('boom'));
    log.warn('odd', { stack: 'at secret (/x.js:1:1)' });
    await flush();
    const lines = c.lines();
    assert.equal(lines.length, 2);
    for (const l of lines) assert.ok(!l.includes('"stack"'), l);
    assert.match(lines[0] ?? '', /"message":"failed boom"/);
  });

  it('reloads the level on SIGHUP, children included', async () => {
    const c = capture();
    const log = createRootLogger({ level: 'info', format: 'text', env: { JOURNAL_STREAM: '1:2' }, stream: c.stream });
    const child = log.child({ area: 'status' });
    const proc = new EventEmitter();
    let stop = (): void => undefined;
    await new Promise<void>((resolve) => {
      stop = reloadLevelOnSighup(log, () => Promise.resolve<LogLevel>('debug').finally(() => setImmediate(resolve)), proc as unknown as NodeJS.Process);
      proc.emit('SIGHUP');
    });
    stop();
    child.debug('now visible');
    await flush();
    assert.ok(c.lines().includes('<7>DEBUG status: now visible'), c.lines().join('\n'));
    assert.equal(proc.listenerCount('SIGHUP'), 0);
  });
});
