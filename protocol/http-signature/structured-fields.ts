/**
 * RFC 8941 structured fields, the subset RFC 9421 and RFC 9530 headers need: dictionaries of
 * items and inner lists, with parameters. Parsing is strict and bounded; decimals are refused,
 * not mis-read.
 */
import { HttpSignatureError } from './errors.js';

/** An RFC 8941 token (unquoted), kept apart from a string. */
export class SfToken {
  constructor(readonly value: string) {}
}
export type SfBareItem = string | number | boolean | Uint8Array | SfToken;
export type SfParams = Map<string, SfBareItem>;
export interface SfItem {
  value: SfBareItem;
  params: SfParams;
}
export interface SfInnerList {
  items: SfItem[];
  params: SfParams;
}
export type SfMember = SfItem | SfInnerList;

/** Bounds: a header field is small; anything larger is hostile. */
export const SF_LIMITS = { fieldChars: 8192, members: 16, innerItems: 32, params: 16, stringChars: 1024 } as const;

export function malformed(message: string): HttpSignatureError {
  return new HttpSignatureError('GH_HTTPSIG_MALFORMED', message);
}

const KEY_FIRST = /[a-z*]/;
const KEY_CHAR = /[a-z0-9_\-.*]/;
const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

class SfParser {
  #pos = 0;
  readonly #s: string;

  constructor(s: string) {
    this.#s = s;
  }

  #peek(): string | undefined {
    return this.#s[this.#pos];
  }
  #eof(): boolean {
    return this.#pos >= this.#s.length;
  }
  #skipSp(): void {
    while (this.#s[this.#pos] === ' ') this.#pos++;
  }
  #skipOws(): void {
    while (this.#s[this.#pos] === ' ' || this.#s[this.#pos] === '\t') this.#pos++;
  }

  // RFC 8941 §4.2.2
  dictionary(): Map<string, SfMember> {
    const dict = new Map<string, SfMember>();
    this.#skipSp();
    while (!this.#eof()) {
      const key = this.#key();
      let member: SfMember;
      if (this.#peek() === '=') {
        this.#pos++;
        member = this.#peek() === '(' ? this.innerList() : this.item();
      } else {
        member = { value: true, params: this.params() };
      }
      // RFC 8941 lets a later duplicate win; a signature header with two meanings is refused.
      if (dict.has(key)) throw malformed(`duplicate dictionary key "${key}"`);
      if (dict.size >= SF_LIMITS.members) throw malformed('too many dictionary members');
      dict.set(key, member);
      this.#skipOws();
      if (this.#eof()) return dict;
      if (this.#peek() !== ',') throw malformed(`expected "," at ${this.#pos}`);
      this.#pos++;
      this.#skipOws();
      if (this.#eof()) throw malformed('trailing comma');
    }
    return dict;
  }

  // RFC 8941 §4.2.1.2
  innerList(): SfInnerList {
    this.#pos++; // "("
    const items: SfItem[] = [];
    while (!this.#eof()) {
      this.#skipSp();
      if (this.#peek() === ')') {
        this.#pos++;
        return { items, params: this.params() };
      }
      if (items.length >= SF_LIMITS.innerItems) throw malformed('too many inner list items');
      items.push(this.item());
      const c = this.#peek();
      if (c !== ' ' && c !== ')') throw malformed(`expected " " or ")" at ${this.#pos}`);
    }
    throw malformed('unterminated inner list');
  }

  item(): SfItem {
    const value = this.#bareItem();
    return { value, params: this.params() };
  }

  // RFC 8941 §4.2.3.2
  params(): SfParams {
    const params: SfParams = new Map();
    while (this.#peek() === ';') {
      this.#pos++;
      this.#skipSp();
      const key = this.#key();
      let value: SfBareItem = true;
      if (this.#peek() === '=') {
        this.#pos++;
        value = this.#bareItem();
      }
      if (params.has(key)) throw malformed(`duplicate parameter "${key}"`);
      if (params.size >= SF_LIMITS.params) throw malformed('too many parameters');
      params.set(key, value);
    }
    return params;
  }

  // RFC 8941 §4.2.3.3
  #key(): string {
    const start = this.#pos;
    const first = this.#peek();
    if (first === undefined || !KEY_FIRST.test(first)) throw malformed(`bad key at ${this.#pos}`);
    this.#pos++;
    while (!this.#eof() && KEY_CHAR.test(this.#s[this.#pos] as string)) this.#pos++;
    if (this.#pos - start > 64) throw malformed('key too long');
    return this.#s.slice(start, this.#pos);
  }

  // RFC 8941 §4.2.3.1
  #bareItem(): SfBareItem {
    const c = this.#peek();
    if (c === undefined) throw malformed('missing value');
    if (c === '-' || (c >= '0' && c <= '9')) return this.#integer();
    if (c === '"') return this.#string();
    if (c === ':') return this.#bytes();
    if (c === '?') return this.#boolean();
    if (/[A-Za-z*]/.test(c)) return this.#token();
    throw malformed(`unexpected "${c}" at ${this.#pos}`);
  }

  #integer(): number {
    const m = /^-?[0-9]{1,15}/.exec(this.#s.slice(this.#pos, this.#pos + 16));
    if (!m) throw malformed(`bad integer at ${this.#pos}`);
    this.#pos += m[0].length;
    if (this.#peek() === '.') throw malformed('decimals are not supported');
    if (this.#peek() !== undefined && /[0-9]/.test(this.#peek() as string)) throw malformed('integer too long');
    return Number(m[0]);
  }

  #string(): string {
    this.#pos++;
    let out = '';
    while (!this.#eof()) {
      const ch = this.#s[this.#pos++] as string;
      if (ch === '\\') {
        const next = this.#s[this.#pos++];
        if (next !== '"' && next !== '\\') throw malformed('bad escape in string');
        out += next;
      } else if (ch === '"') {
        return out;
      } else {
        const code = ch.charCodeAt(0);
        if (code < 0x20 || code > 0x7e) throw malformed('non-printable character in string');
        out += ch;
      }
      if (out.length > SF_LIMITS.stringChars) throw malformed('string too long');
    }
    throw malformed('unterminated string');
  }

  #token(): SfToken {
    const start = this.#pos;
    this.#pos++;
    while (!this.#eof() && TOKEN_CHAR.test(this.#s[this.#pos] as string)) this.#pos++;
    return new SfToken(this.#s.slice(start, this.#pos));
  }

  #bytes(): Uint8Array {
    const end = this.#s.indexOf(':', this.#pos + 1);
    if (end < 0) throw malformed('unterminated byte sequence');
    const b64 = this.#s.slice(this.#pos + 1, end);
    this.#pos = end + 1;
    if (!BASE64_RE.test(b64) || b64.length % 4 !== 0) throw malformed('bad base64 in byte sequence');
    const bytes = Buffer.from(b64, 'base64');
    // Refuse non-canonical encodings (stray bits in the last character) so one value has one form.
    if (bytes.toString('base64') !== b64) throw malformed('non-canonical base64 in byte sequence');
    return new Uint8Array(bytes);
  }

  #boolean(): boolean {
    const v = this.#s.slice(this.#pos, this.#pos + 2);
    if (v !== '?0' && v !== '?1') throw malformed('bad boolean');
    this.#pos += 2;
    return v === '?1';
  }
}

/** Parse an RFC 8941 dictionary field value, strictly and within {@link SF_LIMITS}. */
export function parseSfDictionary(field: string): Map<string, SfMember> {
  if (field.length > SF_LIMITS.fieldChars) throw malformed('field too long');
  const dict = new SfParser(field.replace(/ +$/, '')).dictionary();
  if (dict.size === 0) throw malformed('empty dictionary');
  return dict;
}

/** RFC 8941 §4.1.6-style serialisation of one bare item. */
export function serializeSfBareItem(v: SfBareItem): string {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || Math.abs(v) > 999_999_999_999_999) throw malformed('integer out of range');
    return String(v);
  }
  if (typeof v === 'string') {
    if (!/^[\x20-\x7e]*$/.test(v)) throw malformed('string has non-printable characters');
    return `"${v.replace(/[\\"]/g, (m) => `\\${m}`)}"`;
  }
  if (typeof v === 'boolean') return v ? '?1' : '?0';
  if (v instanceof SfToken) return v.value;
  return `:${Buffer.from(v).toString('base64')}:`;
}

export function serializeSfParams(params: SfParams): string {
  let out = '';
  for (const [k, v] of params) out += v === true ? `;${k}` : `;${k}=${serializeSfBareItem(v)}`;
  return out;
}

export function serializeSfInnerList(list: SfInnerList): string {
  const items = list.items.map((i) => serializeSfBareItem(i.value) + serializeSfParams(i.params));
  return `(${items.join(' ')})${serializeSfParams(list.params)}`;
}


export function isInnerList(m: SfMember): m is SfInnerList {
  return 'items' in m;
}
