import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// STYLE "Pure protocol core": protocol/ encodes, decodes, signs and verifies; no I/O, no transport.
const PROTOCOL_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'protocol');
const ALLOWED = new Set(['node:crypto']);

describe('protocol/ is pure', () => {
  // protocol/v2/ included: it may import the v1 modules one level up, never outside protocol/.
  const files = readdirSync(PROTOCOL_DIR, { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.ts'));

  it('imports only its own modules and node:crypto', () => {
    assert.ok(files.includes('cbor.ts') && files.includes('index.ts') && files.includes(join('v2', 'frame.ts')));
    for (const name of files) {
      const text = readFileSync(join(PROTOCOL_DIR, name), 'utf8');
      for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\s*\(\s*'([^']+)'\s*\)/g)) {
        const spec = m[1] ?? m[2] ?? '';
        const inside = spec.startsWith('./') || (name.includes('/') && spec.startsWith('../') && !spec.startsWith('../../'));
        assert.ok(inside || ALLOWED.has(spec), `${name} imports ${spec}`);
      }
    }
  });
});
