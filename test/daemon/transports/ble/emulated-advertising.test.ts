/**
 * The emulated radio parses advertising data like noble's own GAP layer. noble's parser
 * (lib/hci-socket/gap.js, which opens no socket) is the oracle here; production code loads
 * noble only through daemon/transports/ble/noble-adapter.ts.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { buildAdvertisingData, parseAdvertisingData } from '../../../../peripherals/reference/ble-emulated-advertising.js';

interface GapLike {
  prototype: { parseServices(this: unknown, address: string, eir: Buffer, previouslyDiscovered: boolean, type: number, tx: unknown): unknown };
}

const nobleGap = createRequire(import.meta.url)('@abandonware/noble/lib/hci-socket/gap.js') as GapLike;

function nobleParse(eir: Uint8Array): Record<string, unknown> {
  const ad = nobleGap.prototype.parseServices.call({ _discoveries: {} }, 'aa:bb:cc:dd:ee:ff', Buffer.from(eir), false, 0, undefined) as Record<string, unknown>;
  // noble resets serviceSolicitationUuids (sic) on non-scan-response events: not part of what we emulate.
  const { serviceSolicitationUuids: _s, ...rest } = ad;
  return rest;
}

describe('peripherals/reference/ble-emulated-advertising', () => {
  const svc = Buffer.from('84987abc71fe493ca15d1ddd7d599687', 'hex').reverse();
  const cases: Array<[string, Uint8Array]> = [
    ['well-formed', buildAdvertisingData({ serviceUuids128: ['84987abc-71fe-493c-a15d-1ddd7d599687'], localName: 'gh-1', manufacturerData: Uint8Array.of(1, 2) })],
    ['16-bit list, tx power, service data', Buffer.from([0x05, 0x03, 0x0f, 0x18, 0x0a, 0x18, 0x02, 0x0a, 0xf4, 0x05, 0x16, 0x0f, 0x18, 0x55, 0x66])],
    ['length overruns the buffer', Buffer.concat([Buffer.from([0x11, 0x07]), svc, Buffer.from([0x1e, 0xff, 0x01])])],
    ['zero length stops parsing', Buffer.from([0x00, 0x09, 0x41, 0x42])],
    ['128-bit list with trailing junk', Buffer.concat([Buffer.from([0x15, 0x07]), svc, Buffer.from([1, 2, 3, 4])])],
    ['name with control characters and invalid UTF-8', Buffer.from([0x06, 0x09, 0x62, 0x00, 0x07, 0xff, 0xfe])],
    ['32- and 128-bit service data', Buffer.concat([Buffer.from([0x07, 0x20, 1, 2, 3, 4, 9, 9]), Buffer.from([0x12, 0x21]), svc, Buffer.from([0x42])])],
    ['empty', new Uint8Array(0)],
  ];
  for (const [name, eir] of cases) {
    it(`matches noble's GAP parser: ${name}`, () => {
      assert.deepEqual({ ...parseAdvertisingData(eir) }, nobleParse(eir));
    });
  }
});
