import { CodedError } from '../../common/errors.js';
import type { ConfigIssue } from './schema-dsl.js';

export type ConfigErrorCode =
  /** The config file does not exist. */
  | 'GH_CONFIG_MISSING'
  /** The config file cannot be read. */
  | 'GH_CONFIG_UNREADABLE'
  /** The config file is not valid YAML. */
  | 'GH_CONFIG_SYNTAX'
  /** The config fails validation; `issues` lists every problem. */
  | 'GH_CONFIG_INVALID';

/** The config cannot be used. The daemon fails closed on it: nothing listens. */
export class ConfigError extends CodedError<ConfigErrorCode> {
  /** Every problem found (GH_CONFIG_INVALID and GH_CONFIG_SYNTAX). */
  readonly issues: readonly ConfigIssue[];
  /** The file, when one was read. */
  readonly file: string | undefined;

  constructor(
    code: ConfigErrorCode,
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
