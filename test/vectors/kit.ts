/**
 * What the vector generators (generate.ts, generate-v2.ts) share: byte helpers, the key table
 * from fixed seeds, and writing the file when run as a script.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { CborMap, CborValue, Ed25519Signer } from '../../protocol/index.js';

/** A message vector: `hex` decodes with `decoder`, or is refused with `reason` and our stable `code`. */
export interface MessageVectorBase<Decoder extends string> {
  name: string;
  decoder: Decoder;
  hex: string;
  verdict: 'valid' | 'invalid';
  /** For invalid vectors: the protocol's reason and our stable error code. */
  reason?: string;
  code?: string;
  note: string;
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const fill = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v);
export const counting = (n: number, start: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export const map = (entries: [number | string, CborValue][]): CborMap => new Map(entries);

/** The `keys` entry of each named signer, made from a seed of 32 times `seedByte`. */
export function keyTable(seeds: readonly (readonly [string, Ed25519Signer, number])[]): Record<string, { kid: string; seed: string; publicKey: string }> {
  const keys: Record<string, { kid: string; seed: string; publicKey: string }> = {};
  for (const [name, signer, seedByte] of seeds) keys[name] = { kid: signer.kid, seed: hex(fill(32, seedByte)), publicKey: hex(signer.publicKeyRaw) };
  return keys;
}

/** For each name prefix (a message type), at least one valid and one invalid vector. */
export function assertValidAndInvalid(messages: readonly MessageVectorBase<string>[], prefixes: readonly string[]): void {
  for (const p of prefixes) {
    assert.ok(messages.some((v) => v.name.startsWith(p) && v.verdict === 'valid'), `${p} valid`);
    assert.ok(messages.some((v) => v.name.startsWith(p) && v.verdict === 'invalid'), `${p} invalid`);
  }
}

/** A vector file's exact text: stable key order, two-space indent, trailing newline. */
export function renderJson(file: unknown): string {
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** When the module at `moduleUrl` is the script node runs (`npm run vectors`), write `path` from `render`. */
export async function writeWhenRun(moduleUrl: string, path: string, render: () => Promise<string>): Promise<void> {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  writeFileSync(path, await render());
  console.log(`wrote ${path}`);
}
