import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../daemon/config/errors.js';
import { loadConfig, parseConfigText } from '../../../daemon/config/load.js';
import { validateConfig } from '../../../daemon/config/validate.js';
import { type ConfigIssue } from '../../../daemon/config/schema-dsl.js';
import { minimalConfigObject, minimalConfigYaml } from '../../../testkit/config.js';

function issuesOf(input: unknown): ConfigIssue[] {
  const r = validateConfig(input);
  assert.equal(r.ok, false, 'expected the config to be refused');
  return r.ok ? [] : r.issues;
}

function paths(issues: ConfigIssue[]): string[] {
  return issues.map((i) => i.path).sort();
}

describe('daemon/config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fills every default around the required options', () => {
    const c = parseConfigText(minimalConfigYaml());
    assert.equal(c.gateway.id, 'gw-test-1');
    assert.equal(c.gateway.production, false);
    assert.equal(c.tpm.kind, 'tpm');
    assert.equal(c.tpm.tcti, 'device:/dev/tpmrm0');
    assert.equal(c.backend.batch.maxSize, 64);
    assert.equal(c.backend.caFile, undefined);
    assert.equal(c.mqtt.tcp.port, 1883);
    assert.equal(c.status.socketPath, '/run/gatehouse/status.sock');
    assert.equal(c.log.level, 'info');
  });

  it('reports all errors at once, each with path, expected and actual', () => {
    const input = minimalConfigObject();
    input.gateway = { id: 'bad id!', production: 'yes' };
    input.mqtt = { tcp: { port: 70000 }, maxConnections: 1.5 };
    input.log = { level: 'verbose' };
    const issues = issuesOf(input);
    assert.deepEqual(paths(issues), ['gateway.id', 'gateway.production', 'log.level', 'mqtt.maxConnections', 'mqtt.tcp.port']);
    const port = issues.find((i) => i.path === 'mqtt.tcp.port');
    assert.deepEqual(port, { path: 'mqtt.tcp.port', expected: 'integer 1..65535', actual: '70000' });
    const level = issues.find((i) => i.path === 'log.level');
    assert.equal(level?.expected, '"error" | "warn" | "info" | "debug"');
    assert.equal(level?.actual, '"verbose"');
  });

  it('names unknown keys, at the top and nested', () => {
    const input: Record<string, unknown> = minimalConfigObject();
    input.mqqt = {};
    (input.backend as Record<string, unknown>).batchSize = 5;
    const issues = issuesOf(input);
    assert.deepEqual(paths(issues), ['backend.batchSize', 'mqqt']);
    assert.ok(issues.every((i) => i.actual === 'an unknown key'));
    assert.match(issues.find((i) => i.path === 'mqqt')?.expected ?? '', /gateway, tpm, backend/);
  });

  it('requires the options without defaults', () => {
    const issues = issuesOf({});
    assert.deepEqual(paths(issues), ['backend.backendKid', 'backend.backendPublicKey', 'backend.url', 'gateway.id']);
    assert.ok(issues.every((i) => i.actual === 'nothing'));
  });

  it('checks value semantics: https only, a 32-byte key, absolute paths', () => {
    const input = minimalConfigObject();
    input.backend = { url: 'http://backend.example', backendPublicKey: Buffer.alloc(31).toString('base64url'), backendKid: 'k', caFile: 'relative.pem' };
    assert.deepEqual(paths(issuesOf(input)), ['backend.backendPublicKey', 'backend.caFile', 'backend.url']);
  });

  it('runs cross-field checks', () => {
    const input = minimalConfigObject();
    input.gateway = { id: 'gw-1', production: true };
    input.tpm = { kind: 'software' };
    input.mqtt = { tls: { enabled: true, port: 1883 }, tcp: { host: '0.0.0.0' } };
    Object.assign(input.backend as object, { batch: { maxSize: 200, maxWaitMs: 1000 }, queueLimit: 100, requestTimeoutMs: 1000, connectTimeoutMs: 3000 });
    input.ble = { denyList: { baseBackoffSec: 100, maxBackoffSec: 10 } };
    const issues = issuesOf(input);
    assert.deepEqual(paths(issues), [
      'backend.batch.maxSize',
      'backend.batch.maxWaitMs',
      'backend.connectTimeoutMs',
      'ble.denyList.baseBackoffSec',
      'mqtt.tcp.host',
      'mqtt.tls.certFile',
      'mqtt.tls.keyFile',
      'mqtt.tls.port',
      'tpm.kind',
    ]);
    assert.match(issues.find((i) => i.path === 'mqtt.tls.certFile')?.message ?? '', /needs certFile and keyFile/);
  });

  it('accepts a complete TLS listener and software keys outside production', () => {
    const input = minimalConfigObject();
    input.tpm = { kind: 'software' };
    input.mqtt = { tls: { enabled: true, certFile: '/etc/gatehouse/mqtt.crt', keyFile: '/etc/gatehouse/mqtt.key' } };
    const r = validateConfig(input);
    assert.ok(r.ok, JSON.stringify(r));
  });

  it('fails closed on a missing file, a directory, bad YAML and duplicate keys', async () => {
    await assert.rejects(loadConfig(join(dir, 'absent.yaml')), (e: unknown) => e instanceof ConfigError && e.code === 'GH_CONFIG_MISSING');
    await assert.rejects(loadConfig(dir), (e: unknown) => e instanceof ConfigError && e.code === 'GH_CONFIG_UNREADABLE');
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'gateway:\n  id: [unclosed\n');
    await assert.rejects(loadConfig(bad), (e: unknown) => e instanceof ConfigError && e.code === 'GH_CONFIG_SYNTAX' && /line \d+/.test(e.message));
    const dup = join(dir, 'dup.yaml');
    await writeFile(dup, minimalConfigYaml('mqtt:\n  tcp:\n    port: 1\n    port: 2\n'));
    await assert.rejects(loadConfig(dup), (e: unknown) => e instanceof ConfigError && e.code === 'GH_CONFIG_SYNTAX');
    const scalar = join(dir, 'scalar.yaml');
    await writeFile(scalar, 'just a string\n');
    await assert.rejects(loadConfig(scalar), (e: unknown) => e instanceof ConfigError && e.code === 'GH_CONFIG_INVALID');
  });

  it('loads a valid file, also through a symlink, and an empty section means defaults', async () => {
    const good = join(dir, 'good.yaml');
    await writeFile(good, minimalConfigYaml('ble:\n'));
    const link = join(dir, 'link.yaml');
    await symlink(good, link);
    const c = await loadConfig(link);
    assert.equal(c.ble.enabled, false);
  });

  it('the shipped example config is valid', async () => {
    const c = await loadConfig(join(import.meta.dirname, '../../../systemd/gatehouse.example.yaml'));
    assert.equal(c.gateway.production, true);
    assert.equal(c.tpm.kind, 'tpm');
  });
});
