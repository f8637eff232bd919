/**
 * `gatehouse demo --config FILE`: an operator's partial YAML merged over the demo's generated
 * config and validated by the daemon's own schema, every problem at once. The keys that wire the
 * demo's parts together (its backend, TPM, state directories) are the demo's to set: an
 * override of one is a problem like any other, so the refusal lists it with the rest.
 */
import { ConfigError, formatIssue } from '../daemon/config/errors.js';
import { parseConfigYaml, readConfigText } from '../daemon/config/load.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import type { ConfigIssue } from '../daemon/config/schema-dsl.js';
import { validateConfig } from '../daemon/config/validate.js';

/** Set by the demo from what it starts; an override would point the gateway elsewhere. */
export const WIRED_KEYS: readonly string[] = [
  'gateway.id',
  'gateway.stateDir',
  'gateway.runtimeDir',
  'tpm.kind',
  'tpm.tcti',
  'backend.url',
  'backend.caFile',
  'backend.backendPublicKey',
  'backend.backendKid',
];

export type ConfigInput = Record<string, unknown>;

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Read the overrides file (same size bound and YAML strictness as the daemon's config). */
export async function readOverrides(file: string): Promise<ConfigInput> {
  const data = parseConfigYaml(await readConfigText(file), file);
  if (!isMapping(data)) {
    const issues: ConfigIssue[] = [{ path: '', expected: 'a mapping of config sections', actual: Array.isArray(data) ? 'a list' : typeof data }];
    throw new ConfigError('GH_CONFIG_INVALID', `${file}: ${issues.map(formatIssue).join('; ')}`, { issues, file });
  }
  return data;
}

/**
 * `over` merged into `base`, mapping by mapping: a key of `over` replaces the same key of `base`
 * unless both are mappings, which merge in turn. Neither input is changed.
 */
export function mergeInput(base: ConfigInput, over: ConfigInput): ConfigInput {
  const out: ConfigInput = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isMapping(b) && isMapping(v) ? mergeInput(b, v) : v;
  }
  return out;
}

function wiredIssues(over: ConfigInput): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const path of WIRED_KEYS) {
    const [section, key] = path.split('.') as [string, string];
    const s = over[section];
    if (isMapping(s) && Object.prototype.hasOwnProperty.call(s, key)) {
      issues.push({ path, expected: 'no override (the demo sets it to what it starts)', actual: 'an override', message: 'use `gatehouse run --config` to point a gateway elsewhere' });
    }
  }
  return issues;
}

export type MergeResult = { ok: true; input: ConfigInput; config: GatehouseConfig } | { ok: false; issues: ConfigIssue[] };

/** `over` merged over `base` and validated; every problem, wired keys included, at once. */
export function applyOverrides(base: ConfigInput, over: ConfigInput): MergeResult {
  const input = mergeInput(base, over);
  const wired = wiredIssues(over);
  const r = validateConfig(input);
  if (!r.ok) return { ok: false, issues: [...wired, ...r.issues] };
  if (wired.length > 0) return { ok: false, issues: wired };
  return { ok: true, input, config: r.config };
}

/** The refusal as the CLI prints it: a count, then one indented line per issue. */
export function describeIssues(file: string, issues: readonly ConfigIssue[]): string {
  return `${file}: ${issues.length} problem(s):\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`;
}
