import type { Check } from '../types.js';

/** Anything before this is a clock that was never set (a Pi without RTC before NTP sync boots in 1970). */
export const EARLIEST_SANE_YEAR = 2024;
const LATEST_SANE_YEAR = 2100;

/** clock.sane: the gateway signs timestamps (session notAfter, RFC 9421 `created`); a 1970 clock must not. */
export const clockSane: Check = {
  id: 'clock.sane',
  description: 'System clock is set',
  run(ctx) {
    const now = ctx.now();
    const year = now.getUTCFullYear();
    if (Number.isNaN(year) || year < EARLIEST_SANE_YEAR) {
      return {
        status: 'fail',
        message: `system clock reads ${Number.isNaN(year) ? 'an invalid date' : now.toISOString()}: the gateway must not sign with it`,
        action: 'wait for time sync (timedatectl status: "System clock synchronized: yes"), check NTP reachability, or fit an RTC',
      };
    }
    if (year > LATEST_SANE_YEAR) {
      return { status: 'warn', message: `system clock reads ${now.toISOString()}`, action: 'check the time source (timedatectl status)' };
    }
    return { status: 'ok', message: now.toISOString() };
  },
};
