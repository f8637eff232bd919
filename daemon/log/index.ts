export {
  createRootLogger,
  silentLogger,
  setLogLevel,
  errorFields,
  logError,
  reloadLevelOnSighup,
  underJournald,
  type LogLevel,
  type LogFormat,
  type RootLoggerOptions,
} from './logger.js';
export { redactFields, isSecretName, REDACTED } from './redact.js';
