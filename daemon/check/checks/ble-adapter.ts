import type { Check } from '../types.js';

/** ble.adapter: the adapter noble sees is powered on (when BLE is enabled). */
export const bleAdapter: Check = {
  id: 'ble.adapter',
  description: 'BLE adapter powered on',
  run(ctx) {
    if (!ctx.config.ok) return { status: 'skip', message: 'no valid config' };
    if (!ctx.config.config.ble.enabled) return { status: 'skip', message: 'BLE disabled (ble.enabled: false)' };
    if (ctx.ble === undefined) return { status: 'skip', message: 'only the running daemon knows (run without --offline)' };
    const state = ctx.ble().adapterState;
    switch (state) {
      case 'poweredOn':
        return { status: 'ok', message: 'poweredOn' };
      case 'poweredOff':
        return { status: 'fail', message: 'adapter powered off', action: 'rfkill unblock bluetooth; power it on (btmgmt power on) with bluetoothd stopped' };
      case 'unauthorized':
        return { status: 'fail', message: 'no permission for the raw HCI socket', action: 'the service needs CAP_NET_RAW (shipped unit grants it); stop bluetoothd if it holds the adapter' };
      case 'unsupported':
        return { status: 'fail', message: 'no usable BLE adapter', action: 'check the adapter (hciconfig -a / btmgmt info) and its firmware' };
      default:
        return { status: 'warn', message: `adapter state ${state}`, action: 'wait a few seconds and re-run; if it persists check the adapter and the daemon log' };
    }
  },
};
