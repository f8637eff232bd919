/**
 * Read, parse and validate the config file. Any failure is a ConfigError: the daemon fails
 * closed on it (nothing listens) and `gatehouse config check` prints every issue.
 */
import { readFile, stat } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError, formatIssue } from './errors.js';
import type { GatehouseConfig } from './schema.js';
import type { ConfigIssue } from './schema-dsl.js';
import { validateConfig } from './validate.js';

/** A config is a few KiB; anything this large is not one. */
export const MAX_CONFIG_BYTES = 256 * 1024;

/**
 * Parse YAML text as strictly as the daemon does (duplicate keys are errors), without
 * validating it against the schema: for callers that merge it over another config first.
 */
export function parseConfigYaml(text: string, file = '<config>'): unknown {
  const doc = parseDocument(text, {
    // Duplicate keys are an error, not "last wins": an operator's second `port:` must not be silently ignored.
    uniqueKeys: true,
    prettyErrors: true,
    strict: true,
  });
  if (doc.errors.length > 0) {
    const issues: ConfigIssue[] = doc.errors.map((e) => {
      const line = e.linePos?.[0];
      return {
        path: line === undefined ? '' : `line ${line.line} column ${line.col}`,
        expected: 'valid YAML',
        actual: e.code,
        message: e.message.split('\n')[0] ?? e.code,
      };
    });
    throw new ConfigError('GH_CONFIG_SYNTAX', `${file}: not valid YAML: ${issues.map(formatIssue).join('; ')}`, { issues, file });
  }
  const data: unknown = doc.toJS({ maxAliasCount: 50 });
  return data ?? {};
}

/** Parse YAML text and validate it. `file` names the source in messages. */
export function parseConfigText(text: string, file = '<config>'): GatehouseConfig {
  const result = validateConfig(parseConfigYaml(text, file));
  if (!result.ok) {
    const lines = result.issues.map((i) => `  ${formatIssue(i)}`).join('\n');
    throw new ConfigError('GH_CONFIG_INVALID', `${file}: ${result.issues.length} problem(s):\n${lines}`, { issues: result.issues, file });
  }
  return result.config;
}

/** Read and validate the config file at `file`. */
export async function loadConfig(file: string): Promise<GatehouseConfig> {
  return parseConfigText(await readConfigText(file), file);
}

/** The text of the config file at `file`: a regular file of at most MAX_CONFIG_BYTES. */
export async function readConfigText(file: string): Promise<string> {
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new ConfigError('GH_CONFIG_UNREADABLE', `${file}: not a regular file`, { file });
    if (st.size > MAX_CONFIG_BYTES) {
      throw new ConfigError('GH_CONFIG_UNREADABLE', `${file}: ${st.size} bytes, larger than ${MAX_CONFIG_BYTES}`, { file });
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError('GH_CONFIG_MISSING', `${file}: no such file (create it; see docs/configuration.md)`, { file, cause: err });
    }
    throw new ConfigError('GH_CONFIG_UNREADABLE', `${file}: cannot read (${code ?? 'error'})`, { file, cause: err });
  }
  return text;
}
