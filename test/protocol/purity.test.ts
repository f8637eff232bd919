import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// STYLE "Pure protocol core": protocol/ encodes, decodes, signs and verifies; no I/O, no transport.
const PROTOCOL_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'protocol');
const ALLOWED = new Set(['node:crypto']);

describe('protocol/ is pure', () => {
  const files = readdirSync(PROTOCOL_DIR).filter((n) => n.endsWith('.ts'));

  it('imports only its own modules and node:crypto', () => {
    assert.ok(files.includes('cbor.ts') && files.includes('index.ts'));
    for (const name of files) {
      const text = readFileSync(join(PROTOCOL_DIR, name), 'utf8');
      for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\s*\(\s*'([^']+)'\s*\)/g)) {
        const spec = m[1] ?? m[2] ?? '';
        assert.ok(spec.startsWith('./') || ALLOWED.has(spec), `${name} imports ${spec}`);
      }
    }
  });
});
