/**
 * The advertising side of the EMULATED radio (see ble-emulated-bindings.ts): building AD
 * structures for emulated peripherals and parsing them the way noble's GAP layer does.
 */

/** noble's UUID form: lowercase hex, no dashes. */
export function nobleUuid(uuid: string): string {
  return uuid.replace(/-/g, '').toLowerCase();
}

/** The advertisement object noble's GAP layer builds. */
export interface ParsedAdvertisement {
  localName: string | undefined;
  txPowerLevel: number | undefined;
  manufacturerData: Buffer | undefined;
  serviceData: Array<{ uuid: string; data: Buffer }>;
  serviceUuids: string[];
  solicitationServiceUuids: string[];
}

/**
 * Parse AD structures the way noble's `lib/hci-socket/gap.js` does (same field types, same
 * stop-at-the-first-bad-length behaviour), so malformed bytes reach noble as they would on air.
 */
export function parseAdvertisingData(eir: Uint8Array): ParsedAdvertisement {
  const buf = Buffer.from(eir);
  const ad: ParsedAdvertisement = {
    localName: undefined,
    txPowerLevel: undefined,
    manufacturerData: undefined,
    serviceData: [],
    serviceUuids: [],
    solicitationServiceUuids: [],
  };
  const reversedHex = (b: Buffer): string => Buffer.from(b).reverse().toString('hex');
  let i = 0;
  while (i + 1 < buf.length) {
    const length = buf.readUInt8(i);
    if (length < 1 || i + length + 1 > buf.length) break;
    const type = buf.readUInt8(i + 1);
    const bytes = buf.subarray(i + 2, i + 1 + length);
    switch (type) {
      case 0x02:
      case 0x03:
        for (let j = 0; j < bytes.length - 1; j += 2) ad.serviceUuids.push(bytes.readUInt16LE(j).toString(16));
        break;
      case 0x06:
      case 0x07:
        for (let j = 0; j < bytes.length - 15; j += 16) ad.serviceUuids.push(reversedHex(bytes.subarray(j, j + 16)));
        break;
      case 0x08:
      case 0x09:
        ad.localName = bytes.toString('utf8');
        break;
      case 0x0a:
        if (bytes.length > 0) ad.txPowerLevel = bytes.readInt8(0);
        break;
      case 0x16:
        ad.serviceData.push({ uuid: reversedHex(bytes.subarray(0, 2)), data: Buffer.from(bytes.subarray(2)) });
        break;
      case 0x20:
        ad.serviceData.push({ uuid: reversedHex(bytes.subarray(0, 4)), data: Buffer.from(bytes.subarray(4)) });
        break;
      case 0x21:
        ad.serviceData.push({ uuid: reversedHex(bytes.subarray(0, 16)), data: Buffer.from(bytes.subarray(16)) });
        break;
      case 0xff:
        ad.manufacturerData = Buffer.from(bytes);
        break;
    }
    i += length + 1;
  }
  return ad;
}

/** Build AD structures: flags, complete 128-bit service UUID list, complete local name. */
export function buildAdvertisingData(fields: { serviceUuids128?: string[]; localName?: string; manufacturerData?: Uint8Array }): Uint8Array {
  const parts: Buffer[] = [Buffer.from([0x02, 0x01, 0x06])]; // flags: LE general discoverable, BR/EDR not supported
  const uuids = fields.serviceUuids128 ?? [];
  if (uuids.length > 0) {
    const body = Buffer.concat(uuids.map((u) => Buffer.from(nobleUuid(u), 'hex').reverse()));
    parts.push(Buffer.from([body.length + 1, 0x07]), body);
  }
  if (fields.localName !== undefined) {
    const name = Buffer.from(fields.localName, 'utf8');
    parts.push(Buffer.from([name.length + 1, 0x09]), name);
  }
  if (fields.manufacturerData !== undefined) {
    parts.push(Buffer.from([fields.manufacturerData.length + 1, 0xff]), Buffer.from(fields.manufacturerData));
  }
  return Buffer.concat(parts);
}
