/** The default logger of the BLE area when none is injected: winston with no output. */
import winston, { type Logger } from 'winston';

/** A winston logger that writes nowhere (STYLE §8: loggers are injected, silent by default). */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
