export { ALL_CHECKS, runChecks, summarise, exitCodeFor, type RunChecksOptions } from './runner.js';
export { offlineCheckContext } from './context.js';
export { probeBackendTls } from './probes/backend-tls.js';
export { probeTpm } from './probes/tpm.js';
export { EARLIEST_SANE_YEAR } from './checks/clock-sane.js';
export type * from './types.js';
