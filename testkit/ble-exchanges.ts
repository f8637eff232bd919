/**
 * The exchange events of a BLE transport, recorded for a test: every event in order, and a wait
 * for the one of an address (already seen, or the next). Shared by the emulated-radio rig and the
 * HCI rig. Not a test file.
 */
import { EventEmitter } from 'node:events';
import type { BleExchangeEvent, BleTransport } from '../daemon/transports/ble/transport.js';
import { waitForEmitter } from './wait.js';

export interface ExchangeRecord {
  /** Every exchange event so far, in order. */
  exchanges: BleExchangeEvent[];
  /** The first exchange event of `address`, or fail after `ms`. */
  exchangeOf(address: string, ms: number): Promise<BleExchangeEvent>;
}

export function recordExchanges(transport: BleTransport): ExchangeRecord {
  const exchanges: BleExchangeEvent[] = [];
  const feed = new EventEmitter();
  transport.on('exchange', (e) => {
    exchanges.push(e);
    feed.emit('exchange', e);
  });
  return {
    exchanges,
    exchangeOf(address, ms) {
      const seen = exchanges.find((e) => e.address === address);
      if (seen) return Promise.resolve(seen);
      return waitForEmitter<[BleExchangeEvent]>(feed, 'exchange', (e) => e.address === address, `exchange of ${address}`, ms).then(([e]) => e);
    },
  };
}
