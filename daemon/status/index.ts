export { StatusServer, type StatusServerOptions } from './server.js';
export { EventRing } from './events.js';
export { GatehouseMetrics, type MetricsOptions, type GaugeSources } from './metrics.js';
export { StatusError } from './errors.js';
export { prepareSocketPath, socketAnswers, groupId } from './socket-file.js';
export type { StatusSource, StatusReport, PeripheralInfo, EventPage } from './types.js';
