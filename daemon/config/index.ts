export { CONFIG_SCHEMA, DEFAULT_CONFIG_PATH, type GatehouseConfig } from './schema.js';
export type { ConfigIssue } from './schema-dsl.js';
export { ConfigError, formatIssue } from './errors.js';
export { validateConfig, crossFieldIssues, type ValidationResult } from './validate.js';
export { loadConfig, parseConfigText, MAX_CONFIG_BYTES } from './load.js';
