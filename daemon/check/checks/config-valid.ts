import type { Check } from '../types.js';

/** config.valid: the config file parses and validates (everything else depends on it). */
export const configValid: Check = {
  id: 'config.valid',
  description: 'Config file is present and valid',
  run(ctx) {
    if (ctx.config.ok) return { status: 'ok', message: `valid: ${ctx.config.file}` };
    return {
      status: 'fail',
      message: ctx.config.error.split('\n')[0] ?? 'invalid',
      action: `run: gatehouse config check --config ${ctx.config.file}, fix every problem listed, then restart`,
    };
  },
};
