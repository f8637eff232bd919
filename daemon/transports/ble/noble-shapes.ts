/**
 * The shapes of noble's objects that the BLE central uses, typed here because noble's own types
 * are loose, and the guards that check a loaded module against them. Types only and pure
 * functions: this file never loads noble (noble-adapter.ts does, CONTRIBUTING.md §1).
 */
import type { EventEmitter } from 'node:events';

/** The parts of noble's `Noble` object the central uses. */
export interface NobleLike extends EventEmitter {
  readonly state: string;
  startScanning(serviceUuids: string[], allowDuplicates: boolean): void;
  stopScanning(): void;
}

/** The parts of a noble `Peripheral` the central uses. */
export interface NoblePeripheralLike extends EventEmitter {
  id: string;
  address: unknown;
  connectable: unknown;
  rssi: unknown;
  advertisement: unknown;
  mtu: unknown;
  state: string;
  connect(): void;
  cancelConnect(): void;
  disconnect(): void;
  discoverServices(uuids: string[]): void;
}

/** The parts of a noble `Service` the central uses. */
export interface NobleServiceLike extends EventEmitter {
  uuid: string;
  discoverCharacteristics(uuids: string[]): void;
}

/** The parts of a noble `Characteristic` the central uses. */
export interface NobleCharacteristicLike extends EventEmitter {
  uuid: string;
  properties: unknown;
  write(data: Buffer, withoutResponse: boolean): void;
  notify(enable: boolean): void;
}

/** Whether `v` looks like noble's `Noble` object. */
export function isNoble(v: unknown): v is NobleLike {
  return typeof v === 'object' && v !== null && typeof (v as NobleLike).startScanning === 'function' && typeof (v as NobleLike).on === 'function';
}

/**
 * `mod` itself when `accept` takes it, else its `default` export when it has one: noble changed
 * its export shape between versions (module.exports vs. default).
 */
export function unwrapDefault(mod: unknown, accept: (v: unknown) => boolean): unknown {
  if (accept(mod)) return mod;
  if ((typeof mod === 'object' || typeof mod === 'function') && mod !== null && 'default' in mod) return (mod as { default: unknown }).default;
  return mod;
}
