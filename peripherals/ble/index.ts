/**
 * The BLE transport's public surface for the composition root. Importing this loads no noble:
 * `NobleCentral` loads it in `start()`.
 */
export { BleError, isBleError, type BleErrorCode } from './errors.js';
export { chunkPayloadSize, frameMessage, maxChunkBytes, MAX_ATT_MTU, MAX_FRAMED_MESSAGE_BYTES, MIN_ATT_MTU, Reassembler } from './framing.js';
export { NobleCentral, type NobleCentralOptions } from './noble-adapter.js';
export type { BleAdapterState, BleAdvertisement, BleCallOptions, BleCentral, BleCentralEvents, BleDiscovery } from './port.js';
export {
  BleTransport,
  GATEHOUSE_CHARACTERISTIC_UUID,
  GATEHOUSE_SERVICE_UUID,
  type BleExchangeEvent,
  type BleSkipReason,
  type BleTransportEvents,
  type BleTransportOptions,
  type BleTransportStats,
} from './transport.js';
export type { DenyListOptions } from './deny-list.js';
