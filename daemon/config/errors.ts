import { GatehouseError } from '../../common/errors.js';
import type { ConfigIssue } from './schema-dsl.js';

/**
 * The config cannot be used. The daemon fails closed on it: nothing listens.
 * Codes: GH_CONFIG_MISSING, GH_CONFIG_UNREADABLE, GH_CONFIG_SYNTAX, GH_CONFIG_INVALID.
 */
export class ConfigError extends GatehouseError {
  /** Every problem found (GH_CONFIG_INVALID and GH_CONFIG_SYNTAX). */
  readonly issues: readonly ConfigIssue[];
  /** The file, when one was read. */
  readonly file: string | undefined;

  constructor(
    code: string,
    message: string,
    options: { issues?: readonly ConfigIssue[]; file?: string; cause?: unknown } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.issues = options.issues ?? [];
    this.file = options.file;
  }
}

/** One line per issue: `path: expected X, got Y`. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.path === '' ? '(top level)' : issue.path;
  const base = `${where}: expected ${issue.expected}, got ${issue.actual}`;
  return issue.message === undefined ? base : `${base} (${issue.message})`;
}
