/**
 * Config validation: every problem at once, each with its path, expected and actual value,
 * then cross-field checks (CONTRIBUTING.md §7). Unknown keys are errors that name the key.
 */
import { CONFIG_SCHEMA, type GatehouseConfig } from './schema.js';
import { renderActual, type ConfigIssue, type Fields, type Node } from './schema-dsl.js';

export type ValidationResult = { ok: true; config: GatehouseConfig } | { ok: false; issues: ConfigIssue[] };

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function join(prefix: string, key: string): string {
  return prefix === '' ? key : `${prefix}.${key}`;
}

function walkSection(fields: Fields, input: unknown, path: string, issues: ConfigIssue[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // An absent section takes all its defaults; `section:` with no value (YAML null) too.
  const given = input === undefined || input === null ? {} : input;
  if (!isMapping(given)) {
    issues.push({ path, expected: 'a mapping', actual: renderActual(input) });
    return out;
  }
  for (const key of Object.keys(given)) {
    if (!Object.prototype.hasOwnProperty.call(fields, key)) {
      const known = Object.keys(fields).join(', ');
      issues.push({ path: join(path, key), expected: `one of the known keys (${known})`, actual: 'an unknown key' });
    }
  }
  for (const [key, node] of Object.entries(fields)) {
    const value = Object.prototype.hasOwnProperty.call(given, key) ? given[key] : undefined;
    out[key] = walkNode(node, value, join(path, key), issues);
  }
  return out;
}

function walkNode(node: Node, value: unknown, path: string, issues: ConfigIssue[]): unknown {
  if (node.kind === 'section') return walkSection(node.fields, value, path, issues);
  if (value === undefined || value === null) {
    if (node.default !== undefined) return structuredClone(node.default);
    if (node.optional) return undefined;
    issues.push({ path, expected: node.typeName, actual: 'nothing', message: 'required' });
    return undefined;
  }
  const r = node.check(value);
  if (!r.ok) {
    issues.push({ path, expected: r.expected, actual: renderActual(value) });
    return undefined;
  }
  return r.value;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Checks that span several options. Runs only on a config whose fields each passed. */
export function crossFieldIssues(c: GatehouseConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const tls = c.mqtt.tls;
  if (tls.enabled) {
    if (tls.certFile === undefined) {
      issues.push({ path: 'mqtt.tls.certFile', expected: 'absolute path', actual: 'nothing', message: 'the TLS listener needs certFile and keyFile' });
    }
    if (tls.keyFile === undefined) {
      issues.push({ path: 'mqtt.tls.keyFile', expected: 'absolute path', actual: 'nothing', message: 'the TLS listener needs certFile and keyFile' });
    }
    if (c.mqtt.tcp.enabled && tls.port === c.mqtt.tcp.port) {
      issues.push({ path: 'mqtt.tls.port', expected: `a port other than mqtt.tcp.port (${c.mqtt.tcp.port})`, actual: String(tls.port) });
    }
  }
  if (c.gateway.production && c.tpm.kind === 'software') {
    issues.push({ path: 'tpm.kind', expected: '"tpm" when gateway.production is true', actual: '"software"', message: 'the software key store is for demos and tests' });
  }
  if (c.gateway.production && c.mqtt.tcp.enabled && !isLoopback(c.mqtt.tcp.host)) {
    issues.push({
      path: 'mqtt.tcp.host',
      expected: 'a loopback address when gateway.production is true (use mqtt.tls for the network)',
      actual: JSON.stringify(c.mqtt.tcp.host),
    });
  }
  const b = c.backend;
  if (b.connectTimeoutMs > b.requestTimeoutMs) {
    issues.push({ path: 'backend.connectTimeoutMs', expected: `at most backend.requestTimeoutMs (${b.requestTimeoutMs})`, actual: String(b.connectTimeoutMs) });
  }
  if (b.batch.maxWaitMs >= b.requestTimeoutMs) {
    issues.push({ path: 'backend.batch.maxWaitMs', expected: `less than backend.requestTimeoutMs (${b.requestTimeoutMs})`, actual: String(b.batch.maxWaitMs) });
  }
  if (b.batch.maxSize > b.queueLimit) {
    issues.push({ path: 'backend.batch.maxSize', expected: `at most backend.queueLimit (${b.queueLimit})`, actual: String(b.batch.maxSize) });
  }
  if (b.revocationPollSec * 2 > b.sessionLifetimeSec) {
    issues.push({ path: 'backend.revocationPollSec', expected: `at most half of backend.sessionLifetimeSec (${b.sessionLifetimeSec})`, actual: String(b.revocationPollSec) });
  }
  if (c.ble.denyList.baseBackoffSec > c.ble.denyList.maxBackoffSec) {
    issues.push({ path: 'ble.denyList.baseBackoffSec', expected: `at most ble.denyList.maxBackoffSec (${c.ble.denyList.maxBackoffSec})`, actual: String(c.ble.denyList.baseBackoffSec) });
  }
  const rl = c.pipeline.rateLimits;
  if (rl.perConnectionPerMin > rl.globalPerMin) {
    issues.push({ path: 'pipeline.rateLimits.perConnectionPerMin', expected: `at most pipeline.rateLimits.globalPerMin (${rl.globalPerMin})`, actual: String(rl.perConnectionPerMin) });
  }
  if (rl.perDevicePerMin > rl.globalPerMin) {
    issues.push({ path: 'pipeline.rateLimits.perDevicePerMin', expected: `at most pipeline.rateLimits.globalPerMin (${rl.globalPerMin})`, actual: String(rl.perDevicePerMin) });
  }
  if (c.pipeline.maxPendingHellos > c.pipeline.maxOutstandingChallenges) {
    issues.push({ path: 'pipeline.maxPendingHellos', expected: `at most pipeline.maxOutstandingChallenges (${c.pipeline.maxOutstandingChallenges})`, actual: String(c.pipeline.maxPendingHellos) });
  }
  if (!c.mqtt.tcp.enabled && !c.mqtt.tls.enabled && !c.ble.enabled) {
    issues.push({ path: 'mqtt.tcp.enabled', expected: 'at least one of mqtt.tcp, mqtt.tls or ble enabled', actual: 'all disabled' });
  }
  return issues;
}

/** Validate a parsed document (plain data) against the schema. */
export function validateConfig(input: unknown): ValidationResult {
  const issues: ConfigIssue[] = [];
  if (!isMapping(input)) {
    return { ok: false, issues: [{ path: '', expected: 'a mapping of sections', actual: renderActual(input) }] };
  }
  const out = walkSection(CONFIG_SCHEMA.fields, input, '', issues);
  if (issues.length > 0) return { ok: false, issues };
  // Every field checked its own type above, so the shape matches the schema's type.
  const config = out as GatehouseConfig;
  const cross = crossFieldIssues(config);
  return cross.length > 0 ? { ok: false, issues: cross } : { ok: true, config };
}
