import { adviceFor } from '../../status/reason-advice.js';
import type { Check } from '../types.js';

/** Devices named in the one-line message at most (the rest are counted). */
const NAMED = 3;

/**
 * peripherals.failing: no peripheral keeps being rejected. A WARN names the devices, the most
 * recent first, with what the most recent one's reason means to do (the advice table that
 * `gatehouse peripherals --failing` prints).
 */
export const peripheralsFailing: Check = {
  id: 'peripherals.failing',
  description: 'no peripheral keeps being rejected',
  run(ctx) {
    if (ctx.failing === undefined) return { status: 'skip', message: 'only the running daemon knows (run without --offline)' };
    const list = ctx.failing();
    const first = list[0];
    if (first === undefined) return { status: 'ok', message: 'no rejects in the last hour' };
    const named = list.slice(0, NAMED).map((f) => `${f.dev} (${f.failures}x ${f.lastReason})`).join(', ');
    const more = list.length > NAMED ? ` and ${list.length - NAMED} more` : '';
    return {
      status: 'warn',
      message: `${list.length} peripheral(s) failing: ${named}${more}`,
      action: `${first.lastReason}: ${adviceFor(first.lastReason).action}; all of them: gatehouse peripherals --failing`,
    };
  },
};
