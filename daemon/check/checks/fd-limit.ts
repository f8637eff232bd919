import { MQTT_TUNING } from '../../transports/mqtt/options.js';
import type { Check } from '../types.js';

/** Descriptors the daemon holds besides its connections (listeners, backend link, SQLite, TPM, logs), measured ~40. */
export const BASE_DESCRIPTORS = 64;

/**
 * fd.limit: each MQTT connection costs a descriptor. Past RLIMIT_NOFILE the kernel answers
 * EMFILE and libuv accepts and closes connections with nothing logged (measured: a 10,000 storm
 * under LimitNOFILE=8192 lost 1,835 connections that way).
 */
export const fdLimit: Check = {
  id: 'fd.limit',
  description: 'Descriptor limit (RLIMIT_NOFILE) fits mqtt.maxConnections',
  run(ctx) {
    if (!ctx.config.ok || ctx.descriptors === undefined) return { status: 'skip', message: 'no config or no descriptor facts' };
    const facts = ctx.descriptors();
    if (facts.limit === undefined) return { status: 'skip', message: 'RLIMIT_NOFILE unknown here (no /proc/self/limits)' };
    const max = ctx.config.config.mqtt.maxConnections;
    const needed = max + MQTT_TUNING.refusalSlots + MQTT_TUNING.descriptorReserve + BASE_DESCRIPTORS;
    const of = facts.whose === 'daemon' ? 'the daemon' : 'this process (the daemon has the unit\'s LimitNOFILE)';
    const open = facts.open === undefined ? '' : `, ${facts.open} open`;
    if (facts.limit < needed) {
      return {
        status: 'warn',
        message: `RLIMIT_NOFILE of ${of} is ${facts.limit}${open}; mqtt.maxConnections ${max} needs about ${needed}: connections past ~${Math.max(0, facts.limit - (needed - max))} are refused`,
        action: `raise LimitNOFILE in a drop-in (systemctl edit gatehouse: [Service] LimitNOFILE=${needed}) or lower mqtt.maxConnections; see docs/operations.md "Capacity"`,
      };
    }
    return { status: 'ok', message: `RLIMIT_NOFILE ${facts.limit}${open}; ${needed} needed for mqtt.maxConnections ${max}` };
  },
};
