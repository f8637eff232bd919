/** A winston logger that writes nothing: the default when no logger is injected. */
import winston, { type Logger } from 'winston';

export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
