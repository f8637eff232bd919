/**
 * sd_notify(3) for Type=notify: READY=1, STATUS=…, WATCHDOG=1, STOPPING=1 as datagrams to
 * $NOTIFY_SOCKET. A no-op when the variable is unset (not under systemd, or in tests).
 * Notification never throws: a failed send is logged and the daemon carries on.
 */
import type { Logger } from 'winston';
import { silentLogger } from '../../common/log/logger.js';
import { AF_UNIX, MSG_DONTWAIT, MSG_NOSIGNAL, SOCK_CLOEXEC, SOCK_DGRAM, libc, sockaddrUn } from './libc.js';

export interface SystemdNotifier {
  /** True when $NOTIFY_SOCKET names a socket we can send to. */
  readonly enabled: boolean;
  /** Sends `READY=1` (and STATUS when given): the unit becomes active. */
  ready(status?: string): boolean;
  /** Sends `STATUS=…`, shown by `systemctl status`. */
  status(text: string): boolean;
  /** Sends `STOPPING=1`. */
  stopping(status?: string): boolean;
  /** Sends `WATCHDOG=1` once. */
  watchdog(): boolean;
  /**
   * Pings the watchdog every half of $WATCHDOG_USEC from an unref'd timer, so a blocked event
   * loop stops the pings and systemd restarts us. Returns the stop function (a no-op when
   * no watchdog is configured).
   */
  startWatchdog(): () => void;
  /** The ping interval, or undefined when systemd set no watchdog for this process. */
  readonly watchdogIntervalMs: number | undefined;
}

export interface NotifierOptions {
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  /** Our pid, for WATCHDOG_PID (defaults to process.pid). */
  pid?: number;
}

/** Reads WATCHDOG_USEC/WATCHDOG_PID as sd_watchdog_enabled(3) does. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^[1-9][0-9]{0,15}$/.test(usec)) return undefined;
  const forPid = env.WATCHDOG_PID;
  if (forPid !== undefined && forPid !== String(pid)) return undefined;
  // sd_watchdog_enabled(3): "send WATCHDOG=1 ... at half the watchdog interval".
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/** State strings are newline-separated KEY=VALUE; a newline inside a value would inject a key. */
function clean(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 1024);
}

export function createSystemdNotifier(opts: NotifierOptions = {}): SystemdNotifier {
  const env = opts.env ?? process.env;
  const log = opts.logger ?? silentLogger();
  const pid = opts.pid ?? process.pid;
  const target = env.NOTIFY_SOCKET;
  const enabled = target !== undefined && (target.startsWith('/') || target.startsWith('@'));
  if (target !== undefined && target !== '' && !enabled) {
    log.warn('NOTIFY_SOCKET is not a unix socket path; notifications disabled', { notifySocket: target });
  }
  const interval = watchdogIntervalMs(env, pid);

  function send(state: string): boolean {
    if (!enabled || target === undefined) return false;
    let fd = -1;
    try {
      const c = libc();
      const { addr, len } = sockaddrUn(target);
      fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw new Error(`socket() failed, errno ${c.errno()}`);
      const msg = Buffer.from(state, 'utf8');
      // MSG_DONTWAIT: a stuck receiver must never block the event loop.
      const n = c.sendto(fd, msg, msg.length, MSG_DONTWAIT | MSG_NOSIGNAL, addr, len);
      if (n !== msg.length) throw new Error(`sendto() failed, errno ${c.errno()}`);
      return true;
    } catch (err) {
      log.warn('sd_notify failed', { state: state.split('\n')[0], error: err instanceof Error ? err.message : String(err) });
      return false;
    } finally {
      if (fd >= 0) libc().close(fd);
    }
  }

  return {
    enabled,
    watchdogIntervalMs: interval,
    ready: (status) => send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${clean(status)}`),
    status: (text) => send(`STATUS=${clean(text)}`),
    stopping: (status) => send(status === undefined ? 'STOPPING=1' : `STOPPING=1\nSTATUS=${clean(status)}`),
    watchdog: () => send('WATCHDOG=1'),
    startWatchdog() {
      if (!enabled || interval === undefined) return () => undefined;
      const timer = setInterval(() => send('WATCHDOG=1'), interval);
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
