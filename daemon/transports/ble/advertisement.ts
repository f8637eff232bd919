/**
 * Checks on advertisement data as noble hands it up. Advertisements come from anyone in radio
 * range: fields of the wrong type or size are dropped and flagged, never trusted. Pure.
 */
import { normaliseUuid, type BleAdvertisement } from './port.js';

const UUID_RE = /^(?:[0-9a-f]{4}|[0-9a-f]{8}|[0-9a-f]{32})$/;
const MAX_SERVICE_UUIDS = 32;
const MAX_LOCAL_NAME = 64;
// AD structures fit 31 bytes legacy, 254 extended: anything larger did not come off the air.
const MAX_AD_FIELD_BYTES = 254;

/**
 * Check and bound what noble parsed off the air: advertisement data comes from anyone in radio
 * range. Fields of the wrong type or size are dropped and flagged, never trusted.
 */
export function sanitiseAdvertisement(raw: unknown): { advertisement: BleAdvertisement; malformed: boolean } {
  const advertisement: BleAdvertisement = { serviceUuids: [] };
  if (typeof raw !== 'object' || raw === null) return { advertisement, malformed: true };
  const ad = raw as Record<string, unknown>;
  let malformed = false;
  if (ad.serviceUuids !== undefined) {
    if (!Array.isArray(ad.serviceUuids)) malformed = true;
    else {
      for (const u of ad.serviceUuids.slice(0, MAX_SERVICE_UUIDS)) {
        const n = typeof u === 'string' ? normaliseUuid(u) : '';
        if (UUID_RE.test(n)) {
          if (!advertisement.serviceUuids.includes(n)) advertisement.serviceUuids.push(n);
        } else malformed = true;
      }
      if (ad.serviceUuids.length > MAX_SERVICE_UUIDS) malformed = true;
    }
  }
  if (ad.localName !== undefined) {
    // Printable ASCII/UTF-8 only: the name goes to logs and the status socket.
    if (typeof ad.localName === 'string' && ad.localName.length <= MAX_LOCAL_NAME && !/\p{Cc}/u.test(ad.localName)) {
      advertisement.localName = ad.localName;
    } else malformed = true;
  }
  if (ad.manufacturerData !== undefined && ad.manufacturerData !== null) {
    if (!(ad.manufacturerData instanceof Uint8Array) || ad.manufacturerData.length > MAX_AD_FIELD_BYTES) malformed = true;
  }
  if (ad.serviceData !== undefined) {
    if (!Array.isArray(ad.serviceData)) malformed = true;
    else if (
      ad.serviceData.some(
        (d: unknown) =>
          typeof d !== 'object' ||
          d === null ||
          typeof (d as { uuid?: unknown }).uuid !== 'string' ||
          !((d as { data?: unknown }).data instanceof Uint8Array) ||
          ((d as { data: Uint8Array }).data.length > MAX_AD_FIELD_BYTES),
      )
    )
      malformed = true;
  }
  return { advertisement, malformed };
}
