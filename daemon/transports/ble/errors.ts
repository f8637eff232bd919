/**
 * Errors of the BLE transport. Code branches on `code`, never on message text (CONTRIBUTING.md §6).
 */
import type { BleFrameErrorCode } from '../../../protocol/index.js';
import { CodedError } from '../../../common/errors.js';

/** Stable codes of the BLE area. */
export type BleErrorCode =
  /** noble could not be loaded or the adapter is unusable (no Bluetooth, no permission). */
  | 'GH_BLE_UNAVAILABLE'
  /** A noble call did not answer in time (noble sometimes never answers). */
  | 'GH_BLE_TIMEOUT'
  /** The peripheral disconnected (or vanished) while an operation was pending. */
  | 'GH_BLE_DISCONNECTED'
  /** The adapter left `poweredOn` while an operation was pending. */
  | 'GH_BLE_ADAPTER_OFF'
  /** The exchange was aborted (transport stopping, exchange deadline). */
  | 'GH_BLE_ABORTED'
  /** The peripheral lacks the Gatehouse service or characteristic, or its properties are wrong. */
  | 'GH_BLE_GATT_MISMATCH'
  /** noble reported an error (connect failed, scan refused). */
  | 'GH_BLE_OPERATION_FAILED'
  /** Chunk framing (protocol/ble.ts). */
  | BleFrameErrorCode;

/** An error of the BLE transport; `code` is a {@link BleErrorCode}. */
export class BleError extends CodedError<BleErrorCode> {}

/** True when `err` is a `BleError` with the given code. */
export function isBleError(err: unknown, code?: BleErrorCode): err is BleError {
  return err instanceof BleError && (code === undefined || err.code === code);
}
