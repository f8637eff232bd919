/**
 * One winston root logger; areas take child loggers (`root.child({ area: 'mqtt' })`).
 * Under systemd (JOURNAL_STREAM set) each line starts with its sd-daemon(3) priority
 * prefix so journald keeps the level; otherwise readable text or JSON by config.
 */
import { Writable } from 'node:stream';
import { createLogger, format, transports, type Logger } from 'winston';
import { redactFields } from './redact.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';

/** sd-daemon(3) priorities: <3> err, <4> warning, <6> info, <7> debug. */
const PRIORITY: Record<string, number> = { error: 3, warn: 4, info: 6, http: 7, verbose: 7, debug: 7, silly: 7 };

export interface RootLoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Decides journald mode (JOURNAL_STREAM). Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Where lines go; stderr by default (journald captures it under systemd). */
  stream?: NodeJS.WritableStream;
}

const SYMBOL_LEVEL = Symbol.for('level');
const SYMBOL_MESSAGE = Symbol.for('message');
const SYMBOL_SPLAT = Symbol.for('splat');

/** Applies the redaction to every record and keeps stacks out of non-debug lines. */
const redactFormat = format((info) => {
  const plain: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) plain[k] = v;
  const safe = redactFields(plain);
  for (const k of Object.keys(info)) {
    if (k !== 'level' && k !== 'message') delete (info as Record<string, unknown>)[k];
  }
  Object.assign(info, safe);
  // CONTRIBUTING.md §8: stacks only at debug. winston copies an Error's stack into the record when one is
  // passed as meta (`log.error('x', err)`); drop it at any other level.
  if (info.level !== 'debug') delete (info as Record<string, unknown>).stack;
  if (typeof info.message !== 'string') info.message = String(info.message);
  delete (info as Record<string | symbol, unknown>)[SYMBOL_SPLAT];
  return info;
});

function renderFieldValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v);
}

/** `area: message key=value …` — one line, fields in insertion order. */
function textLine(info: Record<string | symbol, unknown>, timestamps: boolean): string {
  const { level, message, area, timestamp, ...rest } = info as Record<string, unknown>;
  const fields = Object.entries(rest)
    .filter(([k]) => typeof k === 'string')
    .map(([k, v]) => `${k}=${renderFieldValue(v)}`)
    .join(' ');
  const head = `${timestamps ? `${String(timestamp)} ` : ''}${String(level).toUpperCase()} ${area === undefined ? '' : `${String(area)}: `}${String(message)}`;
  return fields === '' ? head : `${head} ${fields}`;
}

function lineFormat(fmt: LogFormat, journald: boolean) {
  return format((info) => {
    const rec = info as unknown as Record<string | symbol, unknown>;
    let body: string;
    if (fmt === 'json') {
      const { timestamp: _t, ...rest } = info as Record<string, unknown>;
      body = JSON.stringify(journald ? rest : info);
    } else {
      body = textLine(rec, !journald);
    }
    const level = String(rec[SYMBOL_LEVEL] ?? info.level);
    // journald adds its own timestamps; the prefix carries the priority (sd-daemon(3)).
    rec[SYMBOL_MESSAGE] = journald ? `<${PRIORITY[level] ?? 6}>${body}` : body;
    return info;
  })();
}

/** True when stderr is connected to the journal (systemd sets JOURNAL_STREAM). */
export function underJournald(env: NodeJS.ProcessEnv): boolean {
  return typeof env.JOURNAL_STREAM === 'string' && env.JOURNAL_STREAM !== '';
}

/** Create the daemon's root logger. Children inherit level changes made with setLogLevel. */
export function createRootLogger(opts: RootLoggerOptions): Logger {
  const journald = underJournald(opts.env ?? process.env);
  const stream = opts.stream ?? process.stderr;
  return gateLevels(
    createLogger({
      level: opts.level,
      format: format.combine(format.timestamp(), redactFormat(), lineFormat(opts.format, journald)),
      transports: [new transports.Stream({ stream })],
      exitOnError: false,
    }),
  );
}

/**
 * winston's `logger.debug(msg, meta)` builds the record and writes it through its stream
 * pipeline before the transport drops it by level: a disabled line costs nearly what a logged one
 * does (the daemon's per-connection debug lines were ~3 % of its CPU in a reconnect storm). Each
 * level method of the root checks the level first; children (`Object.create(root)`) inherit it,
 * and the check runs at call time, so `setLogLevel` keeps working.
 */
function gateLevels(root: Logger): Logger {
  for (const level of Object.keys(root.levels)) {
    const write = (root as unknown as Record<string, (...args: unknown[]) => Logger>)[level];
    if (typeof write !== 'function') continue;
    Object.defineProperty(root, level, {
      configurable: true,
      writable: true,
      value: function gated(this: Logger, ...args: unknown[]): Logger {
        return this.isLevelEnabled(level) ? write.apply(this, args) : this;
      },
    });
  }
  return root;
}

/** A logger that writes nothing, for components given none. */
export function silentLogger(): Logger {
  return createLogger({
    silent: true,
    transports: [new transports.Stream({ stream: new Writable({ write: (_c, _e, cb) => cb() }), silent: true })],
  });
}

/** Change the level of the root (its children follow). */
export function setLogLevel(root: Logger, level: LogLevel): void {
  root.level = level;
}

/** Safe fields describing an error: message and code of it and of its cause chain, no stack. */
export function errorFields(err: unknown): Record<string, unknown> {
  const chain: string[] = [];
  let cur: unknown = err;
  let code: unknown;
  for (let i = 0; i < 5 && cur !== undefined && cur !== null; i++) {
    if (cur instanceof Error) {
      if (i === 0) code = (cur as { code?: unknown }).code;
      chain.push(i === 0 ? cur.message : `${cur.name}: ${cur.message}`);
      cur = cur.cause;
    } else {
      chain.push(String(cur));
      break;
    }
  }
  return {
    error: chain[0] ?? 'unknown error',
    ...(typeof code === 'string' ? { code } : {}),
    ...(chain.length > 1 ? { causes: chain.slice(1) } : {}),
  };
}

/** CONTRIBUTING.md §8: the error message at error level, the stack at debug. */
export function logError(logger: Logger, message: string, err: unknown, fields: Record<string, unknown> = {}): void {
  logger.error(message, { ...fields, ...errorFields(err) });
  if (logger.isDebugEnabled() && err instanceof Error && err.stack !== undefined) {
    logger.debug(`${message} (stack)`, { stack: err.stack });
  }
}

/**
 * Re-read the level on SIGHUP. `readLevel` re-reads the config; a failure keeps the old level
 * and is logged. Returns the function that removes the handler.
 */
export function reloadLevelOnSighup(
  root: Logger,
  readLevel: () => Promise<LogLevel>,
  proc: Pick<NodeJS.Process, 'on' | 'off'> = process,
): () => void {
  const onHup = (): void => {
    readLevel().then(
      (level) => {
        if (level !== root.level) root.info('log level changed', { from: root.level, to: level });
        setLogLevel(root, level);
      },
      (err: unknown) => logError(root, 'SIGHUP: config reload failed, log level unchanged', err),
    );
  };
  proc.on('SIGHUP', onHup);
  return () => {
    proc.off('SIGHUP', onHup);
  };
}
