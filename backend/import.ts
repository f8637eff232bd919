/**
 * Bulk device import for the admin CLI: CSV (RFC 4180, header row) or JSON (an array, or one
 * object per line). Every record is checked before anything is written; any bad record means
 * nothing is imported and the report names each bad line.
 */
import { createPublicKey } from 'node:crypto';
import type { Policy } from '../protocol/index.js';
import { RegistryError } from './errors.js';
import { ed25519RawFromKeyObject } from '../protocol/index.js';
import type { NewDevice } from './registry.js';
import type { BackendStore } from './store.js';

/** Largest import file and record count accepted. */
export const IMPORT_LIMITS = { bytes: 16 * 1024 * 1024, records: 100_000 } as const;

export interface ImportProblem {
  line: number;
  message: string;
}

export type ImportFormat = 'csv' | 'json';

/** Raw 32-byte Ed25519 key from hex (64 digits), base64/base64url (32 bytes) or an SPKI PEM. */
export function parseDevicePublicKey(text: string): Uint8Array {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return new Uint8Array(Buffer.from(t, 'hex'));
  if (t.startsWith('-----BEGIN PUBLIC KEY-----')) {
    try {
      const key = createPublicKey(t);
      if (key.asymmetricKeyType === 'ed25519') return ed25519RawFromKeyObject(key);
    } catch (cause) {
      throw new RegistryError('GH_REGISTRY_BAD_KEY', 'the PEM is not a public key', { cause });
    }
    throw new RegistryError('GH_REGISTRY_BAD_KEY', 'the PEM key is not Ed25519');
  }
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === 32) return new Uint8Array(b);
  }
  throw new RegistryError('GH_REGISTRY_BAD_KEY', 'public key must be 64 hex digits, base64 of 32 bytes, or an Ed25519 PEM');
}

/** A device's gateway list from a CLI/CSV string: entries separated by `,`, `;` or spaces. */
export function splitGateways(text: string): string[] {
  return text.split(/[\s,;]+/).filter((s) => s.length > 0);
}

interface RawRecord {
  line: number;
  fields: Record<string, unknown>;
}

/** RFC 4180 CSV into records keyed by the header row, each with the line it starts on. */
function parseCsv(text: string): { records: RawRecord[]; problems: ImportProblem[] } {
  const rows: { line: number; cells: string[] }[] = [];
  const problems: ImportProblem[] = [];
  let i = 0;
  let line = 1;
  while (i < text.length) {
    const startLine = line;
    const cells: string[] = [];
    let cell = '';
    let quoted = false;
    let atCellStart = true;
    for (; i < text.length; i++) {
      const c = text[i] as string;
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') {
          cell += '"';
          i++;
        } else if (c === '"') {
          quoted = false;
        } else {
          if (c === '\n') line++;
          cell += c;
        }
      } else if (c === '"' && atCellStart) {
        quoted = true;
        atCellStart = false;
      } else if (c === ',') {
        cells.push(cell);
        cell = '';
        atCellStart = true;
      } else if (c === '\n' || c === '\r') {
        if (c === '\r' && text[i + 1] === '\n') i++;
        i++;
        line++;
        break;
      } else {
        cell += c;
        atCellStart = false;
      }
    }
    if (quoted) problems.push({ line: startLine, message: 'unterminated quoted field' });
    cells.push(cell);
    if (cells.length === 1 && cells[0]?.trim() === '') continue; // blank line
    rows.push({ line: startLine, cells });
  }
  const header = rows.shift();
  if (header === undefined) return { records: [], problems: [{ line: 1, message: 'empty file' }] };
  // `publicKey` (the JSON field's name) is accepted for `public_key`.
  const names = header.cells.map((h) => h.trim().toLowerCase()).map((n) => (n === 'publickey' ? 'public_key' : n));
  for (const [k, n] of names.entries()) {
    if (names.indexOf(n) !== k) problems.push({ line: header.line, message: `column "${n}" appears twice` });
  }
  for (const required of ['dev', 'public_key', 'gateways']) {
    if (!names.includes(required)) problems.push({ line: header.line, message: `header lacks column "${required}"` });
  }
  for (const n of names) {
    if (!['dev', 'public_key', 'gateways', 'policy'].includes(n)) problems.push({ line: header.line, message: `unknown column "${n}"` });
  }
  const records: RawRecord[] = [];
  for (const r of rows) {
    // The optional policy column may be left off the end of a row.
    const policyLast = names[names.length - 1] === 'policy' && r.cells.length === names.length - 1;
    if (r.cells.length !== names.length && !policyLast) {
      problems.push({ line: r.line, message: `${r.cells.length} fields, header has ${names.length}` });
      continue;
    }
    const fields: Record<string, unknown> = {};
    names.forEach((n, k) => (fields[n] = r.cells[k]));
    records.push({ line: r.line, fields });
  }
  return { records, problems };
}

/** The line on which each top-level array element starts (a small JSON scanner). */
function arrayElementLines(text: string): number[] {
  const lines: number[] = [];
  let depth = 0;
  let line = 1;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (/\s/.test(c)) continue;
    if (depth === 1 && expectElement && c !== ']') {
      lines.push(line);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return lines;
}

function parseJsonRecords(text: string): { records: RawRecord[]; problems: ImportProblem[] } {
  const trimmed = text.trimStart();
  const problems: ImportProblem[] = [];
  const records: RawRecord[] = [];
  if (trimmed.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return { records, problems: [{ line: 1, message: `not valid JSON: ${(err as Error).message}` }] };
    }
    const lines = arrayElementLines(text);
    (value as unknown[]).forEach((v, k) => records.push({ line: lines[k] ?? 1, fields: v as Record<string, unknown> }));
    return { records, problems };
  }
  text.split('\n').forEach((l, k) => {
    if (l.trim() === '') return;
    try {
      records.push({ line: k + 1, fields: JSON.parse(l) as Record<string, unknown> });
    } catch {
      problems.push({ line: k + 1, message: 'not a JSON object' });
    }
  });
  return { records, problems };
}

function toDevice(r: RawRecord, format: ImportFormat): NewDevice {
  const f = r.fields;
  if (typeof f !== 'object' || f === null || Array.isArray(f)) throw new Error('record must be an object');
  const allowed = format === 'csv' ? ['dev', 'public_key', 'gateways', 'policy'] : ['dev', 'publicKey', 'gateways', 'policy'];
  for (const k of Object.keys(f)) if (!allowed.includes(k)) throw new Error(`unknown field "${k}"`);
  const dev = f['dev'];
  if (typeof dev !== 'string') throw new Error('dev is missing');
  const keyText = f[format === 'csv' ? 'public_key' : 'publicKey'];
  if (typeof keyText !== 'string') throw new Error('public key is missing');
  const publicKey = parseDevicePublicKey(keyText);
  const gwField = f['gateways'];
  const gateways = typeof gwField === 'string' ? splitGateways(gwField) : gwField;
  if (!Array.isArray(gateways) || gateways.some((g) => typeof g !== 'string')) throw new Error('gateways must be a list of gateway ids');
  let policy: Policy | undefined;
  const p = f['policy'];
  if (typeof p === 'string' && p.trim() !== '') {
    try {
      policy = JSON.parse(p) as Policy;
    } catch {
      throw new Error('policy is not valid JSON');
    }
  } else if (p !== undefined && p !== '' && p !== null) {
    policy = p as Policy;
  }
  return { id: dev, publicKey, gateways: gateways as string[], ...(policy !== undefined ? { policy } : {}) };
}

/**
 * Check every record of an import file against the registry; import them all in one
 * transaction only if none is bad. Returns the number imported, or the problems.
 */
export async function importDevices(registry: BackendStore, text: string, format: ImportFormat): Promise<{ imported: number } | { problems: ImportProblem[] }> {
  if (text.length > IMPORT_LIMITS.bytes) return { problems: [{ line: 1, message: `file over ${IMPORT_LIMITS.bytes} bytes` }] };
  const parsed = format === 'csv' ? parseCsv(text) : parseJsonRecords(text);
  const problems = [...parsed.problems];
  if (parsed.records.length > IMPORT_LIMITS.records) return { problems: [{ line: 1, message: `more than ${IMPORT_LIMITS.records} records` }] };
  const devices: NewDevice[] = [];
  const seen = new Map<string, number>();
  for (const r of parsed.records) {
    let d: NewDevice;
    try {
      d = toDevice(r, format);
    } catch (err) {
      problems.push({ line: r.line, message: (err as Error).message });
      continue;
    }
    const earlier = seen.get(d.id);
    if (earlier !== undefined) {
      problems.push({ line: r.line, message: `device "${d.id}" already appears on line ${earlier}` });
      continue;
    }
    seen.set(d.id, r.line);
    const problem = await registry.deviceProblem(d);
    if (problem !== undefined) problems.push({ line: r.line, message: problem });
    else devices.push(d);
  }
  if (problems.length > 0) return { problems: problems.sort((a, b) => a.line - b.line) };
  if (devices.length === 0) return { problems: [{ line: 1, message: 'no records' }] };
  return { imported: await registry.addDevices(devices) };
}
